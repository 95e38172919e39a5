package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub/conformance"
)

// dbEnv carries the conformance suite's database path to the child process of its
// SIGKILL test, which must open the same file as the parent.
const dbEnv = "OUTRIGGER_PUBSUB_SQLITE_TEST_DB"

const (
	testVisibility = 2 * time.Second
	testPoll       = 20 * time.Millisecond
)

func testProps(path, group string) map[string]string {
	return map[string]string{
		"connectionString":  path,
		"consumerID":        group,
		"visibilityTimeout": testVisibility.String(),
		"redeliverInterval": "100ms",
		"pollInterval":      testPoll.String(),
		// -race slows every goroutine; give writers time to queue for the lock.
		"busyTimeout": "30s",
		"timeout":     "60s",
	}
}

func initPubSub(t testing.TB, p *PubSub, props map[string]string) *PubSub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Init(ctx, components.Metadata{Name: "pubsub", Type: TypeName, AppID: "app", Properties: props}); err != nil {
		t.Fatalf("init: %v", err)
	}
	return p
}

// open returns an initialised instance that the test closes when it ends.
func open(t testing.TB, path, group string) *PubSub {
	t.Helper()
	p := initPubSub(t, New(), testProps(path, group))
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	path := os.Getenv(dbEnv)
	if path == "" {
		path = filepath.Join(t.TempDir(), "pubsub.db")
		t.Setenv(dbEnv, path)
	}
	conformance.Run(t, conformance.Config{
		New: func(t *testing.T, group string) pubsub.PubSub {
			return initPubSub(t, New(), testProps(path, group))
		},
		Redelivery: testVisibility + testPoll + time.Second,
	})
}

// recorder counts deliveries by payload.
type recorder struct {
	mu      sync.Mutex
	counts  map[string]int
	last    map[string]*pubsub.Message
	changed chan struct{}
}

func newRecorder() *recorder {
	return &recorder{counts: map[string]int{}, last: map[string]*pubsub.Message{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) handler(_ context.Context, m *pubsub.Message) error {
	r.mu.Lock()
	r.counts[string(m.Data)]++
	r.last[string(m.Data)] = m
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) waitAll(ctx context.Context, t *testing.T, want []string) {
	t.Helper()
	for {
		r.mu.Lock()
		missing := 0
		for _, w := range want {
			if r.counts[w] == 0 {
				missing++
			}
		}
		r.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-r.changed:
		case <-ctx.Done():
			t.Fatalf("%d of %d messages not delivered: %v", missing, len(want), ctx.Err())
		}
	}
}

// join creates a consumer group of a topic the way a sidecar does, by subscribing, and
// leaves it with no consumer running.
func join(t *testing.T, path, group, topic string) {
	t.Helper()
	p := initPubSub(t, New(), testProps(path, group))
	if err := p.Subscribe(testCtx(t), pubsub.SubscribeRequest{Topic: topic}, newRecorder().handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestMessagesSurviveReopening(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "pubsub.db")
	join(t, path, "orders", "t")

	// Published while no consumer of the group runs, by an instance that then closes.
	pub := initPubSub(t, New(), testProps(path, "publisher"))
	var want []string
	for i := range 5 {
		want = append(want, fmt.Sprintf("m%d", i))
		if err := pub.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte(want[i]), ContentType: "text/plain",
			Metadata: map[string]string{"k": "v"}}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if err := pub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	sub := open(t, path, "orders")
	rec := newRecorder()
	if err := sub.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, rec.handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	rec.waitAll(ctx, t, want)
	rec.mu.Lock()
	m := rec.last["m0"]
	rec.mu.Unlock()
	if m.Topic != "t" || m.ContentType != "text/plain" || m.Metadata["k"] != "v" {
		t.Errorf("delivered %+v, want topic t, content type text/plain and metadata k=v", m)
	}
}

// Two instances with a pool each, as two sidecar processes would have, compete for one
// group's messages while both also publish.
func TestCompetingInstancesDeliverOnce(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "pubsub.db")
	const perPublisher = 100
	instances := []*PubSub{open(t, path, "workers"), open(t, path, "workers")}
	rec := newRecorder()
	var handled [2]atomic.Int64
	for i, p := range instances {
		if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "jobs", MaxConcurrency: 4}, func(ctx context.Context, m *pubsub.Message) error {
			handled[i].Add(1)
			return rec.handler(ctx, m)
		}); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	var want []string
	var publishers sync.WaitGroup
	errs := make(chan error, len(instances))
	for i, p := range instances {
		for j := range perPublisher {
			want = append(want, fmt.Sprintf("p%d-%03d", i, j))
		}
		publishers.Add(1)
		go func() {
			defer publishers.Done()
			for j := range perPublisher {
				if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: "jobs", Data: fmt.Appendf(nil, "p%d-%03d", i, j)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	publishers.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	rec.waitAll(ctx, t, want)
	// Closing waits for every handler call, so the counts are final.
	for _, p := range instances {
		if err := p.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for data, n := range rec.counts {
		if n != 1 {
			t.Errorf("%q was delivered %d times", data, n)
		}
	}
	t.Logf("split between the instances: %d and %d", handled[0].Load(), handled[1].Load())
}

func TestCloseFreesMessagesInFlight(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "pubsub.db")
	props := testProps(path, "g")
	// Far beyond the test's deadline: the second consumer gets the message only if
	// the first one's Close freed it.
	props["visibilityTimeout"] = "1h"
	first := initPubSub(t, New(), props)
	t.Cleanup(func() { _ = first.Close() })
	got := make(chan struct{})
	var once sync.Once
	if err := first.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, func(hctx context.Context, _ *pubsub.Message) error {
		once.Do(func() { close(got) })
		<-hctx.Done()
		return hctx.Err()
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := first.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte("m")}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("the first consumer never got the message")
	}
	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	second := initPubSub(t, New(), props)
	t.Cleanup(func() { _ = second.Close() })
	rec := newRecorder()
	if err := second.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, rec.handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	rec.waitAll(ctx, t, []string{"m"})
}

func TestSubscriptionConsumerIDOverridesComponent(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "pubsub.db")
	p := open(t, path, "component-group")
	// Each subscription is its own group, so each gets the message.
	recA, recB := newRecorder(), newRecorder()
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t", Metadata: map[string]string{"consumerID": "a"}}, recA.handler); err != nil {
		t.Fatal(err)
	}
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t", Metadata: map[string]string{"consumerid": "b"}}, recB.handler); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	recA.waitAll(ctx, t, []string{"m"})
	recB.waitAll(ctx, t, []string{"m"})
}

// clock is a settable time for the tests that move time instead of waiting.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestExpiredMessageIsNotDelivered(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "pubsub.db")
	join(t, path, "g", "t")
	clk := &clock{now: time.Now()}
	p := newAt(t, path, clk, nil)
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte("expires"), Metadata: map[string]string{"ttlInSeconds": "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte("stays")}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	rec := newRecorder()
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, rec.handler); err != nil {
		t.Fatal(err)
	}
	// Both were published before the subscription; a claim takes the live ones in id
	// order, so "stays" arriving means "expires" was passed over.
	rec.waitAll(ctx, t, []string{"stays"})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.counts["expires"] != 0 {
		t.Error("a message past its ttlInSeconds was delivered")
	}
}

// newAt returns an initialised instance on the clock, with no subscription running,
// for the tests that drive claims by hand.
func newAt(t *testing.T, path string, clk *clock, props map[string]string) *PubSub {
	t.Helper()
	p := New()
	p.Clock = clk.Now
	if props == nil {
		props = testProps(path, "g")
	}
	initPubSub(t, p, props)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func claimIDs(ctx context.Context, t *testing.T, p *PubSub, s *subscription, max int) []int64 {
	t.Helper()
	ds, err := p.claim(ctx, s, max)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	ids := make([]int64, len(ds))
	for i, d := range ds {
		ids[i] = d.id
	}
	return ids
}

func TestLeases(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "pubsub.db")
	clk := &clock{now: time.Now()}
	a, b := newAt(t, path, clk, nil), newAt(t, path, clk, nil)
	sa := &subscription{topic: "t", group: "g", owner: "a"}
	sb := &subscription{topic: "t", group: "g", owner: "b"}
	if _, err := a.exec(ctx, a.q.join, "t", "g", clk.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	step := func(name string, got []int64, want int) {
		t.Helper()
		if len(got) != want {
			t.Fatalf("%s: claimed %v, want %d message(s)", name, got, want)
		}
	}
	ids := claimIDs(ctx, t, a, sa, 10)
	step("first claim", ids, 1)
	id := ids[0]
	step("another consumer while the lease runs", claimIDs(ctx, t, b, sb, 10), 0)

	clk.Advance(testVisibility / 2)
	if err := a.renew(ctx, sa, []int64{id}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(testVisibility/2 + time.Millisecond)
	step("another consumer after a renewal", claimIDs(ctx, t, b, sb, 10), 0)

	clk.Advance(testVisibility)
	step("another consumer once the lease ran out", claimIDs(ctx, t, b, sb, 10), 1)
	// a's late acknowledgement must not end b's lease: b's outcome decides.
	if err := a.settle(ctx, sa, id, true, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if err := a.renew(ctx, sa, []int64{id}); err != nil {
		t.Fatal(err)
	}
	if err := b.settle(ctx, sb, id, false, clk.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	step("before the redelivery time", claimIDs(ctx, t, a, sa, 10), 0)
	clk.Advance(time.Second)
	step("at the redelivery time", claimIDs(ctx, t, a, sa, 10), 1)
	if err := a.settle(ctx, sa, id, true, clk.Now()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * testVisibility)
	step("after the acknowledgement", claimIDs(ctx, t, b, sb, 10), 0)

	if n := count(ctx, t, a, "leases"); n != 0 {
		t.Fatalf("%d leases left after the acknowledgement", n)
	}
}

func count(ctx context.Context, t *testing.T, p *PubSub, table string) int {
	t.Helper()
	var n int
	if err := p.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM "pubsub_`+table+`"`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCleanup(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "pubsub.db")
	clk := &clock{now: time.Now()}
	props := testProps(path, "g")
	props["retention"] = "1h"
	props["cleanupInterval"] = "10m"
	p := newAt(t, path, clk, props)
	s := &subscription{topic: "t", group: "g", owner: "o"}
	if _, err := p.exec(ctx, p.q.join, "t", "g", clk.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	publish := func(topic, data string) {
		t.Helper()
		if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	publish("nobody-listens", "dropped")
	publish("t", "acked")
	publish("t", "leased")
	ds, err := p.claim(ctx, s, 2)
	if err != nil || len(ds) != 2 {
		t.Fatalf("claim: %v, %v", ds, err)
	}
	if err := p.settle(ctx, s, ds[0].id, true, clk.Now()); err != nil {
		t.Fatal(err)
	}
	publish("t", "pending")

	if err := p.maybeCleanup(ctx); err != nil {
		t.Fatal(err)
	}
	// Left: "leased" (a lease holds it) and "pending" (the group has yet to take it).
	if n := count(ctx, t, p, "messages"); n != 2 {
		t.Fatalf("%d messages after the first cleanup, want 2", n)
	}

	// Within the interval, a second cleanup (another sidecar's, say) does nothing.
	publish("nobody-listens", "kept for now")
	if err := p.maybeCleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(ctx, t, p, "messages"); n != 3 {
		t.Fatalf("%d messages after a cleanup within the interval, want 3", n)
	}

	// Past retention, even what the group never took goes, and with it the lease.
	clk.Advance(2 * time.Hour)
	if err := p.maybeCleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if m, l := count(ctx, t, p, "messages"), count(ctx, t, p, "leases"); m != 0 || l != 0 {
		t.Fatalf("%d messages and %d leases left past retention, want none", m, l)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		props   map[string]string
		check   func(t *testing.T, o options)
		wantErr string
	}{
		{name: "defaults", props: map[string]string{"connectionString": "pubsub.db"}, check: func(t *testing.T, o options) {
			want := options{ConnectionString: "pubsub.db", TablePrefix: "pubsub_", PollInterval: 50 * time.Millisecond,
				VisibilityTimeout: 30 * time.Second, RedeliverInterval: time.Second, Retention: 24 * time.Hour,
				CleanupInterval: time.Minute, Timeout: 20 * time.Second, BusyTimeout: 5 * time.Second}
			if o != want {
				t.Fatalf("defaults = %+v, want %+v", o, want)
			}
		}},
		{name: "processingTimeout is an alias", props: map[string]string{"connectionString": "d", "processingTimeout": "7s"}, check: func(t *testing.T, o options) {
			if o.VisibilityTimeout != 7*time.Second {
				t.Fatalf("visibility timeout = %v", o.VisibilityTimeout)
			}
		}},
		{name: "visibilityTimeout wins over the alias", props: map[string]string{"connectionString": "d", "processingTimeout": "7s", "visibilityTimeout": "9s"}, check: func(t *testing.T, o options) {
			if o.VisibilityTimeout != 9*time.Second {
				t.Fatalf("visibility timeout = %v", o.VisibilityTimeout)
			}
		}},
		{name: "bare numbers are milliseconds", props: map[string]string{"connectionString": "d", "pollInterval": "250"}, check: func(t *testing.T, o options) {
			if o.PollInterval != 250*time.Millisecond {
				t.Fatalf("poll interval = %v", o.PollInterval)
			}
		}},
		{name: "connection string required", props: map[string]string{}, wantErr: `"connectionString" is required`},
		{name: "in-memory refused", props: map[string]string{"connectionString": ":memory:"}, wantErr: "in-memory"},
		{name: "in-memory URI refused", props: map[string]string{"connectionString": "file:x?mode=memory&cache=shared"}, wantErr: "in-memory"},
		{name: "bad duration", props: map[string]string{"connectionString": "d", "redeliverInterval": "soon"}, wantErr: `"redeliverInterval"`},
		{name: "zero poll interval", props: map[string]string{"connectionString": "d", "pollInterval": "0"}, wantErr: `"pollInterval"`},
		{name: "short visibility timeout", props: map[string]string{"connectionString": "d", "visibilityTimeout": "10ms"}, wantErr: `"visibilityTimeout"`},
		{name: "negative redeliver interval", props: map[string]string{"connectionString": "d", "redeliverInterval": "-1s"}, wantErr: `"redeliverInterval"`},
		{name: "bad table prefix", props: map[string]string{"connectionString": "d", "tablePrefix": `x"; DROP`}, wantErr: `"tablePrefix"`},
		{name: "bad boolean", props: map[string]string{"connectionString": "d", "disableWAL": "maybe"}, wantErr: `"disableWAL"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(tc.props)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %s", err, tc.wantErr)
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
		{name: "path", conn: "/tmp/p.db", want: []string{"file:/tmp/p.db?", "_txlock=immediate", "busy_timeout%285000%29", "journal_mode%28WAL%29", "synchronous%28NORMAL%29"}},
		{name: "uri keeps its parameters", conn: "file:p.db?_pragma=synchronous(FULL)", want: []string{"file:p.db?", "synchronous%28FULL%29"}},
		{name: "no WAL", conn: "p.db", disableWAL: true, want: []string{"journal_mode%28DELETE%29"}},
		{name: "busy_timeout pragma", conn: "p.db?_pragma=busy_timeout(1)", wantErr: "busyTimeout"},
		{name: "journal_mode pragma", conn: "p.db?_pragma=journal_mode(DELETE)", wantErr: "disableWAL"},
		{name: "deferred transactions", conn: "p.db?_txlock=deferred", wantErr: "_txlock"},
		{name: "read only", conn: "file:p.db?mode=ro", wantErr: "writable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(map[string]string{"connectionString": tc.conn, "disableWAL": fmt.Sprint(tc.disableWAL)})
			if err != nil {
				t.Fatal(err)
			}
			dsn, err := o.dsn()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %s", err, tc.wantErr)
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
			if tc.name == "uri keeps its parameters" && strings.Contains(dsn, "NORMAL") {
				t.Errorf("dsn %q overrides the user's synchronous pragma", dsn)
			}
		})
	}
}

func TestInitFailures(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	conflicting := filepath.Join(dir, "other.db")
	other := initPubSub(t, New(), testProps(filepath.Join(dir, "seed.db"), "g"))
	if _, err := other.db.ExecContext(ctx, `ATTACH DATABASE ? AS o`, conflicting); err != nil {
		t.Fatal(err)
	}
	if _, err := other.db.ExecContext(ctx, `CREATE TABLE o.pubsub_messages (k TEXT)`); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		props   map[string]string
		wantErr string
	}{
		{name: "bad metadata", props: map[string]string{"connectionString": "x.db", "pollInterval": "often"}, wantErr: `"pollInterval"`},
		{name: "missing directory", props: map[string]string{"connectionString": filepath.Join(dir, "no", "such", "dir", "p.db")}, wantErr: "open"},
		{name: "foreign table", props: map[string]string{"connectionString": conflicting}, wantErr: "tablePrefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New()
			err := p.Init(ctx, components.Metadata{Name: "pubsub", Type: TypeName, Properties: tc.props})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("init error = %v, want one containing %s", err, tc.wantErr)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("close after a failed init: %v", err)
			}
			if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: "t"}); err == nil {
				t.Fatal("publish after a failed init succeeded")
			}
		})
	}
}

func TestCallErrors(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "pubsub.db")
	noop := func(context.Context, *pubsub.Message) error { return nil }

	if err := New().Publish(ctx, &pubsub.PublishRequest{Topic: "t"}); err == nil {
		t.Error("publish before init succeeded")
	}
	props := testProps(path, "")
	delete(props, "consumerID")
	anon := New()
	if err := anon.Init(ctx, components.Metadata{Name: "pubsub", Properties: props}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = anon.Close() })
	if err := anon.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, noop); err == nil || !strings.Contains(err.Error(), "consumerID") {
		t.Errorf("subscribe with no consumer group: %v", err)
	}

	p := open(t, path, "g")
	for name, err := range map[string]error{
		"publish without topic":     p.Publish(ctx, &pubsub.PublishRequest{}),
		"subscribe without topic":   p.Subscribe(ctx, pubsub.SubscribeRequest{}, noop),
		"subscribe without handler": p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, nil),
		"bad ttlInSeconds":          p.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Metadata: map[string]string{"ttlInSeconds": "soon"}}),
	} {
		if err == nil {
			t.Errorf("%s succeeded", name)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: "t"}); err == nil {
		t.Error("publish after close succeeded")
	}
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, noop); err == nil {
		t.Error("subscribe after close succeeded")
	}
}

func TestRegister(t *testing.T) {
	r := &components.Registry[pubsub.PubSub]{}
	Register(r)
	p, err := r.Create(TypeName, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if !pubsub.Has(p, pubsub.FeatureMessageTTL) {
		t.Errorf("features = %v, want MESSAGE_TTL", p.Features())
	}
}
