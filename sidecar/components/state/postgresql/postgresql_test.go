package postgresql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/conformance"
)

// testConnString is the loopback server of the development machine (trust auth,
// database test); OUTRIGGER_TEST_POSTGRES overrides it.
func testConnString() string {
	if s := os.Getenv("OUTRIGGER_TEST_POSTGRES"); s != "" {
		return s
	}
	return "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable"
}

// needPostgres skips the test when the server is unreachable, and fails it under CI
// so that CI cannot pass on skips.
func needPostgres(tb testing.TB) {
	tb.Helper()
	fail := func(err error) {
		if os.Getenv("CI") != "" {
			tb.Fatalf("PostgreSQL (%s) is unreachable and CI is set: %v", testConnString(), err)
		}
		tb.Skipf("PostgreSQL (%s) is unreachable, skipping (start it, or set CI to make this fail): %v", testConnString(), err)
	}
	cfg, err := pgx.ParseConfig(testConnString())
	if err != nil {
		tb.Fatalf("test connection string: %v", err)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), 2*time.Second)
	if err != nil {
		fail(err)
	}
	_ = c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		fail(err)
	}
	_ = conn.Close(ctx)
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// rawConn is a plain connection to look under the store.
func rawConn(tb testing.TB) *pgx.Conn {
	tb.Helper()
	c, err := pgx.Connect(testCtx(tb), testConnString())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// uniqueTables returns a state and a metadata table name no other test uses, and
// drops them when the test ends.
func uniqueTables(tb testing.TB) (table, meta string) {
	sfx := randomSuffix()
	table, meta = "outrigger_test_state_"+sfx, "outrigger_test_meta_"+sfx
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, testConnString())
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, `DROP TABLE IF EXISTS `+table+`, `+meta)
	})
	return table, meta
}

func initStore(tb testing.TB, s *Store, props map[string]string) {
	tb.Helper()
	if err := s.Init(testCtx(tb), components.Metadata{Name: "statestore", Type: TypeName, Properties: props}); err != nil {
		tb.Fatalf("Init: %v", err)
	}
}

// newTestStore initialises a store on fresh tables; the caller may adjust props.
func newTestStore(tb testing.TB, props map[string]string) (*Store, string) {
	tb.Helper()
	needPostgres(tb)
	table, meta := uniqueTables(tb)
	p := map[string]string{"connectionString": testConnString(), "tableName": table, "metadataTableName": meta}
	for k, v := range props {
		p[k] = v
	}
	s := New()
	initStore(tb, s, p)
	tb.Cleanup(func() { _ = s.Close() })
	return s, table
}

func ptr[T any](v T) *T { return &v }

func TestConformance(t *testing.T) {
	needPostgres(t)
	conformance.Run(t, func(t *testing.T) state.Store {
		table, meta := uniqueTables(t)
		s := New()
		initStore(t, s, map[string]string{"connectionString": testConnString(), "tableName": table, "metadataTableName": meta})
		return s
	})
}

func TestOptions(t *testing.T) {
	md := func(kv ...string) components.Metadata {
		p := map[string]string{"connectionString": "host=x"}
		for i := 0; i < len(kv); i += 2 {
			p[kv[i]] = kv[i+1]
		}
		return components.Metadata{Properties: p}
	}
	o, err := parseOptions(md())
	if err != nil {
		t.Fatal(err)
	}
	if o.table != `"state"` || o.metaTable != `"dapr_metadata"` || o.Timeout != 20*time.Second || o.CleanupInterval != time.Hour || o.indexName != `"state_expiredate_idx"` {
		t.Fatalf("defaults: %+v", o)
	}

	durations := []struct {
		name            string
		md              components.Metadata
		timeout, clean  time.Duration
		idle            time.Duration
		table, metaName string
	}{
		// dapr/kit reads a bare number as seconds.
		{name: "bare numbers are seconds", md: md("timeout", "30", "cleanupInterval", "300", "connectionMaxIdleTime", "60"), timeout: 30 * time.Second, clean: 300 * time.Second, idle: time.Minute},
		{name: "go durations", md: md("timeout", "1m", "cleanupInterval", "10m"), timeout: time.Minute, clean: 10 * time.Minute},
		{name: "older names", md: md("timeoutInSeconds", "7", "cleanupIntervalInSeconds", "0"), timeout: 7 * time.Second, clean: 0},
		{name: "new names win", md: md("timeout", "9s", "timeoutInSeconds", "7", "cleanupInterval", "-1", "cleanupIntervalInSeconds", "5"), timeout: 9 * time.Second, clean: -time.Second},
	}
	for _, tt := range durations {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.md)
			if err != nil {
				t.Fatal(err)
			}
			if o.Timeout != tt.timeout || o.CleanupInterval != tt.clean || o.ConnectionMaxIdleTime != tt.idle {
				t.Fatalf("timeout %v cleanup %v idle %v, want %v %v %v", o.Timeout, o.CleanupInterval, o.ConnectionMaxIdleTime, tt.timeout, tt.clean, tt.idle)
			}
		})
	}

	o, err = parseOptions(md("tableName", "Public.MyState", "metadataTableName", "meta", "queryExecMode", "simple_protocol"))
	if err != nil {
		t.Fatal(err)
	}
	if o.table != `"public"."mystate"` || o.metaTable != `"meta"` || o.indexName != `"mystate_expiredate_idx"` || o.execMode != pgx.QueryExecModeSimpleProtocol {
		t.Fatalf("table %s meta %s index %s mode %v", o.table, o.metaTable, o.indexName, o.execMode)
	}

	bad := []struct {
		name string
		md   components.Metadata
		want string
	}{
		{"missing connection string", components.Metadata{Properties: map[string]string{}}, `"connectionString" is required`},
		{"injection in table name", md("tableName", `state"; DROP TABLE x; --`), `"tableName"`},
		{"three-part table name", md("tableName", "a.b.c"), `"tableName"`},
		{"empty schema", md("metadataTableName", ".meta"), `"metadataTableName"`},
		{"same tables", md("tableName", "x", "metadataTableName", "X"), `both`},
		{"short timeout", md("timeout", "500ms"), `"timeout"`},
		{"bad duration", md("cleanupInterval", "often"), `"cleanupInterval"`},
		{"bad exec mode", md("queryExecMode", "fast"), `"queryExecMode"`},
		{"bad max conns", md("maxConns", "many"), `"maxConns"`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(tt.md)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %s", err, tt.want)
			}
		})
	}
}

func TestInitErrors(t *testing.T) {
	// Port 1 on loopback refuses at once: nothing listens there.
	s := New()
	err := s.Init(testCtx(t), components.Metadata{Name: "pg", Properties: map[string]string{
		"connectionString": "host=127.0.0.1 port=1 user=u password=hunter2 dbname=d connect_timeout=2",
	}})
	if err == nil || !strings.Contains(err.Error(), "connectionString") || !strings.Contains(err.Error(), `"pg"`) {
		t.Fatalf("Init = %v, want an error naming the component and connectionString", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err = New().Init(testCtx(t), components.Metadata{Properties: map[string]string{"connectionString": "postgres://u:hunter2@[::1"}})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "connectionString") {
		t.Fatalf("Init with a malformed URL = %v", err)
	}
}

func TestPoolParamsInConnectionString(t *testing.T) {
	// Dapr hands the connection string to pgxpool, which reads pool_* parameters; pgx
	// alone would send them to the server, which refuses unknown settings.
	s, _ := newTestStore(t, map[string]string{"connectionString": testConnString() + " pool_max_conns=3 pool_max_conn_idle_time=2m pool_health_check_period=1m"})
	cfg := s.pool.Config()
	if cfg.MaxConns != 3 || cfg.MaxConnIdleTime != 2*time.Minute || cfg.HealthCheckPeriod != time.Minute {
		t.Fatalf("MaxConns %d, MaxConnIdleTime %v, HealthCheckPeriod %v; want pool_max_conns 3, pool_max_conn_idle_time 2m, pool_health_check_period 1m",
			cfg.MaxConns, cfg.MaxConnIdleTime, cfg.HealthCheckPeriod)
	}
	for k := range cfg.ConnConfig.RuntimeParams {
		if strings.HasPrefix(k, "pool_") {
			t.Fatalf("%s would be sent to the server", k)
		}
	}
	if got := s.pool.Stat().MaxConns(); got != 3 {
		t.Fatalf("pool size %d, want pool_max_conns 3", got)
	}
	if _, err := s.Get(testCtx(t), &state.GetRequest{Key: "k"}); err != nil {
		t.Fatal(err)
	}

	// The metadata wins over the connection string.
	s2, _ := newTestStore(t, map[string]string{
		"connectionString":      testConnString() + " pool_max_conns=3 pool_max_conn_idle_time=2m default_query_exec_mode=exec",
		"maxConns":              "5",
		"connectionMaxIdleTime": "90",
		"queryExecMode":         "simple_protocol",
	})
	cfg = s2.pool.Config()
	if cfg.MaxConns != 5 || cfg.MaxConnIdleTime != 90*time.Second || cfg.ConnConfig.DefaultQueryExecMode != pgx.QueryExecModeSimpleProtocol {
		t.Fatalf("MaxConns %d, MaxConnIdleTime %v, DefaultQueryExecMode %v; want maxConns 5, connectionMaxIdleTime 90s, queryExecMode simple_protocol",
			cfg.MaxConns, cfg.MaxConnIdleTime, cfg.ConnConfig.DefaultQueryExecMode)
	}
	if got := s2.pool.Stat().MaxConns(); got != 5 {
		t.Fatalf("pool size %d, want maxConns 5 over pool_max_conns", got)
	}
	ctx := testCtx(t)
	if err := s2.Set(ctx, &state.SetRequest{Key: "k", Value: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s2.Get(ctx, &state.GetRequest{Key: "k"}); err != nil || resp == nil || string(resp.Data) != `{"a":1}` {
		t.Fatalf("Get under simple_protocol = %v, %v", resp, err)
	}

	// Without the metadata, the connection string's default_query_exec_mode holds.
	s3, _ := newTestStore(t, map[string]string{"connectionString": testConnString() + " default_query_exec_mode=exec"})
	if got := s3.pool.Config().ConnConfig.DefaultQueryExecMode; got != pgx.QueryExecModeExec {
		t.Fatalf("DefaultQueryExecMode %v, want the connection string's exec", got)
	}

	// A bad pool_* value is reported without the connection string.
	for _, bad := range []string{"pool_max_conns=0", "pool_max_conns=many", "pool_max_conn_idle_time=soon"} {
		err := New().Init(testCtx(t), components.Metadata{Name: "pg", Properties: map[string]string{
			"connectionString": "host=127.0.0.1 port=1 user=u password=hunter2 dbname=d " + bad,
		}})
		if err == nil || !strings.Contains(err.Error(), "connectionString") || !strings.Contains(err.Error(), "pool_") {
			t.Fatalf("Init with %s = %v, want an error naming connectionString and pool_*", bad, err)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "host=") {
			t.Fatalf("Init with %s: error echoes the connection string: %v", bad, err)
		}
	}
}

func TestFeaturesAndRegister(t *testing.T) {
	s, _ := newTestStore(t, nil)
	want := []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL, state.FeatureQueryAPI}
	if !slices.Equal(s.Features(), want) {
		t.Fatalf("Features = %v", s.Features())
	}
	a, _ := newTestStore(t, map[string]string{"actorStateStore": "true"})
	if !state.Has(a, state.FeatureActorStateStore) {
		t.Fatalf("Features = %v, want ACTOR", a.Features())
	}
	r := &components.Registry[state.Store]{}
	Register(r)
	if st, err := r.Create("state.postgresql", "v1"); err != nil {
		t.Fatal(err)
	} else if _, ok := st.(*Store); !ok {
		t.Fatalf("Create returned %T", st)
	}
}

func TestStorageLayoutIsDapr(t *testing.T) {
	s, table := newTestStore(t, nil)
	raw := rawConn(t)
	ctx := testCtx(t)

	cases := []struct {
		name     string
		value    []byte
		isBinary bool
	}{
		{"json object", []byte(`{"b":1,  "a":[true,null]}`), false},
		{"json string", []byte(`"hello"`), false},
		{"json number", []byte(`1.50`), false},
		{"text", []byte("hello world"), true},
		{"binary", []byte{0, 1, 2, 0xff}, true},
		{"json with NUL escape", []byte(`"a\u0000b"`), true},
		{"empty", []byte{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := "app||" + tc.name
			if err := s.Set(ctx, &state.SetRequest{Key: key, Value: tc.value}); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, &state.GetRequest{Key: key})
			if err != nil || got == nil || string(got.Data) != string(tc.value) {
				t.Fatalf("Get = %+v, %v; want %q exactly", got, err, tc.value)
			}
			var isBinary bool
			var xmin string
			if err := raw.QueryRow(ctx, `SELECT isbinary, xmin::text FROM `+table+` WHERE key = $1`, key).Scan(&isBinary, &xmin); err != nil {
				t.Fatal(err)
			}
			if isBinary != tc.isBinary {
				t.Fatalf("isbinary = %v, want %v", isBinary, tc.isBinary)
			}
			if *got.ETag != xmin {
				t.Fatalf("ETag %s is not the row's xmin %s", *got.ETag, xmin)
			}
		})
	}

	// A write by a Dapr sidecar (value only, as Dapr's v1 upsert does) is what reads
	// return from then on, not the bytes Outrigger kept.
	key := "app||json object"
	if _, err := raw.Exec(ctx, `UPDATE `+table+` SET value = '{"from":"dapr"}'::jsonb, isbinary = false, updatedate = now() WHERE key = $1`, key); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, &state.GetRequest{Key: key})
	if err != nil || string(got.Data) != `{"from": "dapr"}` {
		t.Fatalf("after a Dapr write Get = %q, %v", got.Data, err)
	}
	// And a binary value as Dapr stores it (base64 in a JSON string) reads back as bytes.
	if _, err := raw.Exec(ctx, `INSERT INTO `+table+` (key, value, isbinary) VALUES ('app||dapr-bin', '"AAEC"', true)`); err != nil {
		t.Fatal(err)
	}
	got, err = s.Get(ctx, &state.GetRequest{Key: "app||dapr-bin"})
	if err != nil || string(got.Data) != "\x00\x01\x02" {
		t.Fatalf("Dapr binary value = %q, %v", got.Data, err)
	}

	var level string
	if err := raw.QueryRow(ctx, `SELECT value FROM `+s.opts.metaTable+` WHERE key = 'migrations'`).Scan(&level); err != nil || level != "2" {
		t.Fatalf("Dapr migration level = %q, %v; want 2", level, err)
	}
}

func TestUpgradesDaprTable(t *testing.T) {
	needPostgres(t)
	raw := rawConn(t)
	ctx := testCtx(t)
	table, meta := uniqueTables(t)
	// A table as Dapr's first migration left it, before expiredate, with a row.
	for _, q := range []string{
		`CREATE TABLE ` + table + ` (key text NOT NULL PRIMARY KEY, value jsonb NOT NULL, isbinary boolean NOT NULL,
			insertdate TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(), updatedate TIMESTAMP WITH TIME ZONE NULL)`,
		`CREATE TABLE ` + meta + ` (key text NOT NULL PRIMARY KEY, value text NOT NULL)`,
		`INSERT INTO ` + meta + ` VALUES ('migrations', '1')`,
		`INSERT INTO ` + table + ` (key, value, isbinary) VALUES ('old||k', '{"a": 1}', false)`,
	} {
		if _, err := raw.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	s := New()
	initStore(t, s, map[string]string{"connectionString": testConnString(), "tableName": table, "metadataTableName": meta})
	defer s.Close()
	got, err := s.Get(ctx, &state.GetRequest{Key: "old||k"})
	if err != nil || got == nil || string(got.Data) != `{"a": 1}` {
		t.Fatalf("old row = %+v, %v", got, err)
	}
	ttl := time.Hour
	if err := s.Set(ctx, &state.SetRequest{Key: "old||k", Value: []byte(`2`), TTL: &ttl, ETag: got.ETag}); err != nil {
		t.Fatal(err)
	}
	var level string
	if err := raw.QueryRow(ctx, `SELECT value FROM `+meta+` WHERE key = 'migrations'`).Scan(&level); err != nil || level != "2" {
		t.Fatalf("migration level = %q, %v", level, err)
	}

	// A second sidecar on the same, now current, table changes nothing.
	s2 := New()
	initStore(t, s2, map[string]string{"connectionString": testConnString(), "tableName": table, "metadataTableName": meta})
	defer s2.Close()
	if got, _ := s2.Get(ctx, &state.GetRequest{Key: "old||k"}); got == nil || string(got.Data) != "2" || got.Expiry == nil {
		t.Fatalf("second instance reads %+v", got)
	}
}

func TestRefusesForeignTable(t *testing.T) {
	needPostgres(t)
	raw := rawConn(t)
	ctx := testCtx(t)
	table, meta := uniqueTables(t)
	if _, err := raw.Exec(ctx, `CREATE TABLE `+table+` (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	err := New().Init(ctx, components.Metadata{Properties: map[string]string{"connectionString": testConnString(), "tableName": table, "metadataTableName": meta}})
	if err == nil || !strings.Contains(err.Error(), "not a state table") {
		t.Fatalf("Init on a foreign table = %v", err)
	}
}

func TestConcurrentInitOfOneTable(t *testing.T) {
	needPostgres(t)
	table, meta := uniqueTables(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := New()
			err := s.Init(testCtx(t), components.Metadata{Properties: map[string]string{"connectionString": testConnString(), "tableName": table, "metadataTableName": meta}})
			_ = s.Close()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Init: %v", err)
		}
	}
}

func TestTTLAndCleanup(t *testing.T) {
	s, table := newTestStore(t, map[string]string{"cleanupInterval": "0"})
	raw := rawConn(t)
	ctx := testCtx(t)
	ttl := time.Hour
	before := time.Now()
	for _, k := range []string{"t||expired", "t||live"} {
		if err := s.Set(ctx, &state.SetRequest{Key: k, Value: []byte(`1`), TTL: &ttl}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, &state.SetRequest{Key: "t||forever", Value: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, &state.GetRequest{Key: "t||live"})
	if got.Expiry == nil || got.Expiry.Before(before.Add(ttl-time.Minute)) || got.Expiry.After(time.Now().Add(ttl+time.Minute)) {
		t.Fatalf("expiry = %v, want about an hour from now", got.Expiry)
	}
	// Expire one row without waiting: move its deadline into the past.
	if _, err := raw.Exec(ctx, `UPDATE `+table+` SET expiredate = now() - interval '1 second' WHERE key = 't||expired'`); err != nil {
		t.Fatal(err)
	}
	expiredETag := "0"
	if err := raw.QueryRow(ctx, `SELECT xmin::text FROM `+table+` WHERE key = 't||expired'`).Scan(&expiredETag); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, &state.GetRequest{Key: "t||expired"}); got != nil {
		t.Fatalf("expired row is visible: %+v", got)
	}
	if err := s.Delete(ctx, &state.DeleteRequest{Key: "t||expired", ETag: &expiredETag}); !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("delete of an expired row by ETag = %v, want mismatch", err)
	}
	if resp, err := s.Query(ctx, &state.Query{KeyPrefix: "t||"}, nil); err != nil || len(resp.Results) != 2 {
		t.Fatalf("query sees %+v, %v; want the 2 live rows", resp, err)
	}
	n, err := s.CleanupExpired(ctx)
	if err != nil || n != 1 {
		t.Fatalf("CleanupExpired = %d, %v; want 1", n, err)
	}
	var rows int
	if err := raw.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("rows left = %d, %v", rows, err)
	}
}

func TestCleanupLoop(t *testing.T) {
	needPostgres(t)
	raw := rawConn(t)
	ctx := testCtx(t)
	table, meta := uniqueTables(t)
	ticks := make(chan time.Time)
	stopped := make(chan struct{})
	s := New()
	s.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
		if d != 10*time.Minute {
			t.Errorf("ticker interval %v, want 10m", d)
		}
		return ticks, func() { close(stopped) }
	}
	initStore(t, s, map[string]string{"connectionString": testConnString(), "tableName": table, "metadataTableName": meta, "cleanupInterval": "10m"})
	ttl := time.Hour
	if err := s.Set(ctx, &state.SetRequest{Key: "c||1", Value: []byte(`1`), TTL: &ttl}); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(ctx, `UPDATE `+table+` SET expiredate = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	select {
	case ticks <- time.Now():
	case <-ctx.Done():
		t.Fatal("cleanup loop is not listening")
	}
	for {
		var n int
		if err := raw.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the tick did not clean up the expired row")
		case <-time.After(10 * time.Millisecond):
		}
	}
	var stamp string
	if err := raw.QueryRow(ctx, `SELECT value FROM `+meta+` WHERE key = 'last-cleanup'`).Scan(&stamp); err != nil {
		t.Fatalf("last-cleanup stamp: %v", err)
	}

	// Another sidecar on the same tables skips its round: the stamp is fresh.
	s2, err := func() (*Store, error) {
		s2 := New()
		s2.newTicker = func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }
		return s2, s2.Init(ctx, components.Metadata{Properties: map[string]string{"connectionString": testConnString(), "tableName": table, "metadataTableName": meta, "cleanupInterval": "10m"}})
	}()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if ran, _, err := s2.cleanupIfDue(ctx); err != nil || ran {
		t.Fatalf("second sidecar's round: ran=%v err=%v; want skipped", ran, err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Close did not stop the cleanup ticker")
	}
}

func isETagErr(err error, kind state.ETagErrorKind) bool {
	var e *state.ETagError
	return errors.As(err, &e) && e.Kind == kind
}

func TestETagsAndFirstWrite(t *testing.T) {
	s, _ := newTestStore(t, nil)
	ctx := testCtx(t)
	if err := s.Set(ctx, &state.SetRequest{Key: "e||k", Value: []byte(`1`), ETag: ptr("12345")}); !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("ETag on a missing key = %v", err)
	}
	for _, bad := range []string{"abc", "-1", "4294967296", "1.5"} {
		if err := s.Set(ctx, &state.SetRequest{Key: "e||k", Value: []byte(`1`), ETag: ptr(bad)}); !isETagErr(err, state.ETagInvalid) {
			t.Fatalf("ETag %q = %v, want invalid", bad, err)
		}
	}
	fw := state.Options{Concurrency: state.FirstWrite}
	if err := s.Set(ctx, &state.SetRequest{Key: "e||k", Value: []byte(`1`), Options: fw}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: "e||k", Value: []byte(`2`), Options: fw}); !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("second first-write = %v", err)
	}
	// An ETag read inside... a transaction that rewrote the key twice sees the newest.
	got, _ := s.Get(ctx, &state.GetRequest{Key: "e||k"})
	err := s.Multi(ctx, []state.Operation{
		{Set: &state.SetRequest{Key: "e||k", Value: []byte(`3`), ETag: got.ETag}},
		{Set: &state.SetRequest{Key: "e||k", Value: []byte(`4`), ETag: got.ETag}},
	}, nil)
	if !isETagErr(err, state.ETagMismatch) || !strings.Contains(err.Error(), "operation 2") {
		t.Fatalf("stale ETag in operation 2 = %v", err)
	}
	if now, _ := s.Get(ctx, &state.GetRequest{Key: "e||k"}); string(now.Data) != "1" || *now.ETag != *got.ETag {
		t.Fatalf("rolled-back transaction left %q (ETag %s)", now.Data, *now.ETag)
	}
	if err := s.Multi(ctx, []state.Operation{{}}, nil); err == nil {
		t.Fatal("an empty operation was accepted")
	}
}

func TestQueryBeyondConformance(t *testing.T) {
	s, _ := newTestStore(t, nil)
	ctx := testCtx(t)
	docs := map[string]string{
		"q||1": `{"n":1,"s":"b","tags":["x"],"o":{"it's":"quoted"}}`,
		"q||2": `{"n":2.5,"s":"a","flag":true}`,
		"q||3": `{"n":"10","s":"B"}`,
		"q||4": `{"s":null}`,
		"q||5": `[1,2,3]`,
	}
	for k, v := range docs {
		if err := s.Set(ctx, &state.SetRequest{Key: k, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	// Neither a binary value, nor an item of another prefix, nor an expired one shows.
	if err := s.Set(ctx, &state.SetRequest{Key: "q||bin", Value: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: "q_||x", Value: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}

	f := func(op, key string, v any) *state.Filter { return &state.Filter{Op: op, Key: key, Value: v} }
	cases := []struct {
		name string
		q    state.Query
		want []string
	}{
		{"all JSON under the prefix, in key order", state.Query{}, []string{"q||1", "q||2", "q||3", "q||4", "q||5"}},
		{"GT numbers only", state.Query{Filter: f("GT", "n", float64(1))}, []string{"q||2"}},
		{"LTE numbers", state.Query{Filter: f("LTE", "n", float64(2.5))}, []string{"q||1", "q||2"}},
		{"GT strings in byte order", state.Query{Filter: f("GT", "s", "B")}, []string{"q||1", "q||2"}},
		{"GT on a bool never holds", state.Query{Filter: f("GT", "flag", false)}, nil},
		{"NEQ skips missing fields", state.Query{Filter: f("NEQ", "s", "a")}, []string{"q||1", "q||3", "q||4"}},
		{"EQ null", state.Query{Filter: f("EQ", "s", nil)}, []string{"q||4"}},
		{"EQ array", state.Query{Filter: f("EQ", "tags", []any{"x"})}, []string{"q||1"}},
		{"quotes in a path are data", state.Query{Filter: f("EQ", "o.it's", "quoted")}, []string{"q||1"}},
		{"injection in a path matches nothing", state.Query{Filter: f("EQ", "s') OR TRUE --", "a")}, nil},
		{"injection in a value matches nothing", state.Query{Filter: f("EQ", "s", "a' OR '1'='1")}, nil},
		{"IN empty", state.Query{Filter: f("IN", "s", []any{})}, nil},
		{"IN mixed", state.Query{Filter: f("IN", "n", []any{float64(1), "10"})}, []string{"q||1", "q||3"}},
		{"sort by type then value", state.Query{Sort: []state.Sorting{{Key: "n"}}}, []string{"q||4", "q||5", "q||1", "q||2", "q||3"}},
		{"sort DESC, ties by key", state.Query{Sort: []state.Sorting{{Key: "flag", Order: "desc"}}}, []string{"q||2", "q||1", "q||3", "q||4", "q||5"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.KeyPrefix = "q||"
			resp, err := s.Query(ctx, &q, nil)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, r := range resp.Results {
				keys = append(keys, r.Key)
				if string(r.Data) != docs[r.Key] {
					t.Errorf("%s: data %s, want %s", r.Key, r.Data, docs[r.Key])
				}
			}
			if !slices.Equal(keys, tc.want) {
				t.Fatalf("keys = %v, want %v", keys, tc.want)
			}
			// The shared evaluator gives the same answer.
			var items []state.QueryCandidate
			for k, v := range docs {
				items = append(items, state.QueryCandidate{Key: k, Data: []byte(v)})
			}
			ref, err := state.EvaluateQuery(&q, items)
			if err != nil {
				t.Fatal(err)
			}
			var refKeys []string
			for _, r := range ref.Results {
				refKeys = append(refKeys, r.Key)
			}
			if !slices.Equal(keys, refKeys) {
				t.Fatalf("keys = %v, the shared evaluator says %v", keys, refKeys)
			}
		})
	}

	for _, q := range []state.Query{
		{Page: state.Pagination{Token: "x"}},
		{Page: state.Pagination{Token: "-1"}},
		{Page: state.Pagination{Limit: -1}},
		{Sort: []state.Sorting{{Key: "n", Order: "sideways"}}},
		{Sort: []state.Sorting{{Key: ""}}},
		{Filter: &state.Filter{Op: "LIKE", Key: "s", Value: "a"}},
	} {
		if _, err := s.Query(ctx, &q, nil); !errors.Is(err, state.ErrInvalidQuery) {
			t.Errorf("query %+v = %v, want ErrInvalidQuery", q, err)
		}
	}
}

func TestBuildQueryKeepsValuesOutOfSQL(t *testing.T) {
	q := &state.Query{
		KeyPrefix: "app'||",
		Filter: &state.Filter{Op: "OR", Children: []*state.Filter{
			{Op: "EQ", Key: `a"b.c'd`, Value: "v'; DROP TABLE state; --"},
			{Op: "GT", Key: "n", Value: float64(3)},
			{Op: "IN", Key: "s", Value: []any{"x'y"}},
		}},
		Sort: []state.Sorting{{Key: "z'z", Order: "DESC"}},
		Page: state.Pagination{Limit: 2, Token: "4"},
	}
	bq, err := buildQuery(`"state"`, q)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"app'", `a"b`, "c'd", "DROP", "x'y", "z'z"} {
		if strings.Contains(bq.sql, s) {
			t.Fatalf("SQL contains %q from the query:\n%s", s, bq.sql)
		}
	}
	if bq.limit != 2 || bq.offset != 4 || len(bq.args) < 7 {
		t.Fatalf("limit %d offset %d args %v", bq.limit, bq.offset, bq.args)
	}
}

func TestPoolBoundsConnections(t *testing.T) {
	s, _ := newTestStore(t, map[string]string{"maxConns": "2"})
	ctx := testCtx(t)
	// Watch the pool's size while the writes run.
	var peak atomic.Int32
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for {
			if n := s.pool.Stat().TotalConns(); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Set(ctx, &state.SetRequest{Key: fmt.Sprintf("p||%d", i), Value: []byte(`1`)})
		}()
	}
	wg.Wait()
	close(stop)
	<-watched
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := s.pool.Stat()
	if st.MaxConns() != 2 || peak.Load() > 2 || st.TotalConns() > 2 || st.IdleConns() > 2 {
		t.Fatalf("maxConns 2: pool max %d, peak %d connections, now %d with %d idle", st.MaxConns(), peak.Load(), st.TotalConns(), st.IdleConns())
	}
	if st.AcquiredConns() != 0 {
		t.Fatalf("%d connections still acquired after the writes", st.AcquiredConns())
	}
}

func TestClose(t *testing.T) {
	s, _ := newTestStore(t, nil)
	pool := s.pool
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := pool.Stat().TotalConns(); n != 0 {
		t.Fatalf("%d connections open after Close", n)
	}
	if err := pool.Ping(testCtx(t)); err == nil {
		t.Fatal("the pool still serves after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(testCtx(t), &state.GetRequest{Key: "k"}); err == nil {
		t.Fatal("Get after Close succeeded")
	}
}
