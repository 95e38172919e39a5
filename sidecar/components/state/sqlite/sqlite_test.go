package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/conformance"
)

func open(t *testing.T, props map[string]string) *Store {
	t.Helper()
	s := New()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Init(ctx, components.Metadata{Name: "statestore", Type: TypeName, Properties: props}); err != nil {
		t.Fatalf("init: %v", err)
	}
	return s
}

func fileProps(t *testing.T) map[string]string {
	return map[string]string{
		"connectionString": filepath.Join(t.TempDir(), "state.db"),
		// -race slows every goroutine; give writers time to queue for the lock.
		"busyTimeout": "30s",
	}
}

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) state.Store { return open(t, fileProps(t)) })
}

func TestConformanceInMemory(t *testing.T) {
	conformance.Run(t, func(t *testing.T) state.Store {
		return open(t, map[string]string{"connectionString": ":memory:"})
	})
}

func TestConformanceWALDisabled(t *testing.T) {
	conformance.Run(t, func(t *testing.T) state.Store {
		p := fileProps(t)
		p["disableWAL"] = "true"
		return open(t, p)
	})
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		props   map[string]string
		check   func(t *testing.T, o Options)
		wantErr string
	}{
		{name: "defaults", props: map[string]string{"connectionString": "data.db"}, check: func(t *testing.T, o Options) {
			if o.TableName != "state" || o.MetadataTableName != "metadata" || o.Timeout != 20*time.Second ||
				o.CleanupInterval != time.Hour || o.BusyTimeout != 2*time.Second || o.DisableWAL {
				t.Fatalf("defaults = %+v", o)
			}
		}},
		{name: "url alias", props: map[string]string{"url": "x.db"}, check: func(t *testing.T, o Options) {
			if o.ConnectionString != "x.db" {
				t.Fatalf("connection string = %q", o.ConnectionString)
			}
		}},
		{name: "old second-based names", props: map[string]string{"connectionString": "d", "timeoutInSeconds": "5", "cleanupIntervalInSeconds": "0"}, check: func(t *testing.T, o Options) {
			if o.Timeout != 5*time.Second || o.CleanupInterval != 0 {
				t.Fatalf("timeout %v cleanup %v", o.Timeout, o.CleanupInterval)
			}
		}},
		{name: "cleanup disabled by a negative", props: map[string]string{"connectionString": "d", "cleanupInterval": "-1s"}, check: func(t *testing.T, o Options) {
			if o.CleanupInterval > 0 {
				t.Fatalf("cleanup %v", o.CleanupInterval)
			}
		}},
		{name: "missing connection string", props: map[string]string{}, wantErr: `"connectionString" is required`},
		{name: "bad table name", props: map[string]string{"connectionString": "d", "tableName": "state; DROP"}, wantErr: `"tableName"`},
		{name: "same tables", props: map[string]string{"connectionString": "d", "tableName": "t", "metadataTableName": "T"}, wantErr: `are both`},
		{name: "short timeout", props: map[string]string{"connectionString": "d", "timeout": "10ms"}, wantErr: `"timeout"`},
		{name: "bad duration", props: map[string]string{"connectionString": "d", "busyTimeout": "soon"}, wantErr: `"busyTimeout"`},
		{name: "bad bool", props: map[string]string{"connectionString": "d", "disableWAL": "perhaps"}, wantErr: `"disableWAL"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(tc.props)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

func TestDSN(t *testing.T) {
	for _, tc := range []struct {
		name, conn string
		disableWAL bool
		want       []string
		wantErr    string
	}{
		{name: "path", conn: "/var/lib/state.db", want: []string{"file:/var/lib/state.db?", "_txlock=immediate", "busy_timeout%282000%29", "journal_mode%28WAL%29"}},
		{name: "uri keeps parameters", conn: "file:data.db?mode=rwc", want: []string{"file:data.db?", "mode=rwc", "journal_mode%28WAL%29"}},
		{name: "no WAL", conn: "data.db", disableWAL: true, want: []string{"journal_mode%28DELETE%29"}},
		{name: "memory", conn: ":memory:", want: []string{"file::memory:?", "journal_mode%28MEMORY%29"}},
		{name: "busy pragma refused", conn: "file:d.db?_pragma=busy_timeout(10)", wantErr: "busyTimeout"},
		{name: "journal pragma refused", conn: "d.db?_pragma=journal_mode(DELETE)", wantErr: "disableWAL"},
		{name: "deferred txlock refused", conn: "d.db?_txlock=deferred", wantErr: "_txlock=deferred"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{ConnectionString: tc.conn, BusyTimeout: 2 * time.Second, DisableWAL: tc.disableWAL}
			dsn, err := o.dsn()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(dsn, w) {
					t.Errorf("dsn %q lacks %q", dsn, w)
				}
			}
		})
	}
}

func TestInitErrorsNameComponentAndField(t *testing.T) {
	err := New().Init(context.Background(), components.Metadata{Name: "orders", Properties: map[string]string{"tableName": "x y"}})
	if err == nil {
		t.Fatal("init succeeded")
	}
	for _, w := range []string{"state.sqlite", `"orders"`, "connectionString", "tableName"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
}

func TestRefusesForeignTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dapr.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	// A table of the same name with another layout, such as Dapr's.
	if _, err := db.Exec(`CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT, is_binary BOOLEAN, etag TEXT)`); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	err = New().Init(context.Background(), components.Metadata{Name: "s", Properties: map[string]string{"connectionString": path}})
	if err == nil || !strings.Contains(err.Error(), `without column`) {
		t.Fatalf("init on a foreign table: %v", err)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func countRows(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM "` + s.opts.TableName + `"`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestExpiryAndCleanupWithClock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	props := fileProps(t)
	props["cleanupInterval"] = "0" // driven by hand below
	s := open(t, props)
	defer s.Close()
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	s.Clock = clock.Now

	short, long := 10*time.Second, time.Hour
	for _, r := range []*state.SetRequest{
		{Key: "short", Value: []byte("s"), TTL: &short},
		{Key: "long", Value: []byte("l"), TTL: &long},
		{Key: "forever", Value: []byte("f")},
	} {
		if err := s.Set(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.Get(ctx, &state.GetRequest{Key: "short"})
	if err != nil || resp == nil || resp.Expiry == nil || !resp.Expiry.Equal(clock.Now().Add(short)) {
		t.Fatalf("get before expiry = %+v, %v", resp, err)
	}

	clock.Advance(short)
	if resp, err := s.Get(ctx, &state.GetRequest{Key: "short"}); err != nil || resp != nil {
		t.Fatalf("expired row readable: %+v, %v", resp, err)
	}
	etag := *resp.ETag
	if err := s.Delete(ctx, &state.DeleteRequest{Key: "short", ETag: &etag}); !isMismatch(err) {
		t.Fatalf("etag delete of an expired row: %v, want a mismatch", err)
	}
	if got := countRows(t, s); got != 3 {
		t.Fatalf("rows before cleanup = %d, want 3 (expired rows stay until cleaned)", got)
	}
	n, err := s.cleanupExpired(ctx)
	if err != nil || n != 1 {
		t.Fatalf("cleanup = %d, %v; want 1", n, err)
	}
	if got := countRows(t, s); got != 2 {
		t.Fatalf("rows after cleanup = %d, want 2", got)
	}
}

func TestPeriodicCleanupIsSharedBetweenSidecars(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	props := fileProps(t)
	props["cleanupInterval"] = "0"
	a, b := open(t, props), open(t, props)
	defer a.Close()
	defer b.Close()
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	a.Clock, b.Clock = clock.Now, clock.Now
	// The interval is what maybeCleanup compares against; the loop itself is off.
	a.opts.CleanupInterval, b.opts.CleanupInterval = time.Hour, time.Hour

	ttl := time.Minute
	set := func(key string) {
		t.Helper()
		if err := a.Set(ctx, &state.SetRequest{Key: key, Value: []byte("v"), TTL: &ttl}); err != nil {
			t.Fatal(err)
		}
	}
	set("k1")
	clock.Advance(2 * time.Minute)
	if n, err := a.maybeCleanup(ctx); err != nil || n != 1 {
		t.Fatalf("first cleanup = %d, %v; want 1", n, err)
	}
	set("k2")
	clock.Advance(2 * time.Minute)
	if n, err := b.maybeCleanup(ctx); err != nil || n != 0 {
		t.Fatalf("cleanup by the second sidecar within the interval = %d, %v; want a skip", n, err)
	}
	clock.Advance(time.Hour)
	if n, err := b.maybeCleanup(ctx); err != nil || n != 1 {
		t.Fatalf("cleanup after the interval = %d, %v; want 1", n, err)
	}
}

func TestCleanupLoopStopsOnClose(t *testing.T) {
	props := fileProps(t)
	props["cleanupInterval"] = "1ms"
	s := open(t, props)
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop the cleanup loop")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func isMismatch(err error) bool {
	var ee *state.ETagError
	return errors.As(err, &ee) && ee.Kind == state.ETagMismatch
}

// Two stores on one file stand in for two sidecar processes: each has its own
// connection pool, so they only coordinate through SQLite's file locks.
func TestTwoInstancesShareOneFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	props := fileProps(t)
	a, b := open(t, props), open(t, props)
	defer a.Close()
	defer b.Close()

	t.Run("concurrent writes", func(t *testing.T) {
		const n = 40
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range n {
			for j, s := range []*Store{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Sprintf("k-%d-%d", j, i)
					if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(key)}); err != nil {
						errs <- err
						return
					}
					errs <- s.Multi(ctx, []state.Operation{
						{Set: &state.SetRequest{Key: key + "-tx", Value: []byte(key)}},
						{Delete: &state.DeleteRequest{Key: key}},
					}, nil)
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent write: %v", err)
			}
		}
		for i := range n {
			for j := range 2 {
				key := fmt.Sprintf("k-%d-%d", j, i)
				for _, s := range []*Store{a, b} {
					if r, err := s.Get(ctx, &state.GetRequest{Key: key + "-tx"}); err != nil || r == nil || string(r.Data) != key {
						t.Fatalf("get %s-tx = %+v, %v", key, r, err)
					}
					if r, err := s.Get(ctx, &state.GetRequest{Key: key}); err != nil || r != nil {
						t.Fatalf("get %s after its delete = %+v, %v", key, r, err)
					}
				}
			}
		}
	})

	t.Run("one etag, two writers, one wins", func(t *testing.T) {
		for round := range 20 {
			key := fmt.Sprintf("race-%d", round)
			if err := a.Set(ctx, &state.SetRequest{Key: key, Value: []byte("0")}); err != nil {
				t.Fatal(err)
			}
			r, err := b.Get(ctx, &state.GetRequest{Key: key})
			if err != nil || r == nil {
				t.Fatalf("get = %+v, %v", r, err)
			}
			etag := *r.ETag
			start := make(chan struct{})
			results := make(chan error, 2)
			for _, s := range []*Store{a, b} {
				go func() {
					<-start
					results <- s.Multi(ctx, []state.Operation{{Set: &state.SetRequest{Key: key, Value: []byte("1"), ETag: &etag}}}, nil)
				}()
			}
			close(start)
			e1, e2 := <-results, <-results
			wins := 0
			for _, e := range []error{e1, e2} {
				switch {
				case e == nil:
					wins++
				case !isMismatch(e):
					t.Fatalf("round %d: unexpected error %v", round, e)
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d writers won with the same etag", round, wins)
			}
		}
	})
}

func TestFeaturesAndRegister(t *testing.T) {
	p := fileProps(t)
	p["actorStateStore"] = "true"
	s := open(t, p)
	defer s.Close()
	for _, f := range []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL, state.FeatureActorStateStore} {
		if !state.Has(s, f) {
			t.Errorf("missing %s", f)
		}
	}
	if state.Has(s, state.FeatureQueryAPI) {
		t.Error("declares QUERY_API")
	}
	r := &components.Registry[state.Store]{}
	Register(r)
	if _, err := r.Create("state.sqlite", "v1"); err != nil {
		t.Fatal(err)
	}
}

// Dapr's sqlite component reads a bare number of its durations as seconds.
func TestBareDurationsAreSeconds(t *testing.T) {
	o, err := parseOptions(map[string]string{"connectionString": "x.db", "timeout": "30", "cleanupInterval": "300"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Timeout != 30*time.Second || o.CleanupInterval != 300*time.Second {
		t.Errorf("timeout %s, cleanupInterval %s; want 30s and 5m0s", o.Timeout, o.CleanupInterval)
	}
}
