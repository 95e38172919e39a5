package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/conformance"
)

// testAddr is the loopback server of the development machine; OUTRIGGER_TEST_REDIS
// overrides it.
var testAddr = func() string {
	if a := os.Getenv("OUTRIGGER_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}()

// needRedis skips the test when the loopback Redis is down, and fails it under CI so
// that CI cannot pass on skips.
func needRedis(tb testing.TB) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", testAddr, 2*time.Second)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("Redis at %s is unreachable and CI is set: %v", testAddr, err)
		}
		tb.Skipf("Redis at %s is unreachable, skipping (start it, or set CI to make this fail): %v", testAddr, err)
	}
	_ = c.Close()
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func newTestStore(tb testing.TB, props map[string]string) *Store {
	tb.Helper()
	needRedis(tb)
	p := map[string]string{"redisHost": testAddr}
	for k, v := range props {
		p[k] = v
	}
	s := New()
	if err := s.Init(testCtx(tb), components.Metadata{Name: "statestore", Type: TypeName, Properties: p}); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// rawClient is go-redis on the same server, to look under the store.
func rawClient(tb testing.TB) *goredis.Client {
	tb.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: testAddr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// uniqueKey returns a key no other test uses, and deletes it when the test ends.
func uniqueKey(tb testing.TB, c *goredis.Client, name string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	k := "outrigger-test||" + strings.ReplaceAll(tb.Name(), "/", "-") + "-" + hex.EncodeToString(b[:]) + "-" + name
	tb.Cleanup(func() { c.Del(context.Background(), k) })
	return k
}

func ptr[T any](v T) *T { return &v }

func isETagErr(err error, kind state.ETagErrorKind) bool {
	var e *state.ETagError
	return errors.As(err, &e) && e.Kind == kind
}

// TestInitErrors covers what state.redis refuses on its own; the shared client
// settings have their table in internal/redisopts. "missing host" shows those errors
// reach Init too.
func TestInitErrors(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"missing host", map[string]string{}, `"redisHost" is required`},
		{"cluster", map[string]string{"redisHost": testAddr, "redisType": "cluster"}, `"redisType": "cluster" is not supported by Outrigger's state.redis`},
		{"failover cluster", map[string]string{"redisHost": testAddr, "redisType": "cluster", "failover": "true", "sentinelMasterName": "m"}, `"redisType": "cluster" is not supported`},
		{"bad legacy maxRetries", map[string]string{"redisHost": testAddr, "maxRetries": "x"}, `"maxRetries": "x"`},
		{"bad legacy maxRetryBackoff", map[string]string{"redisHost": testAddr, "maxRetryBackoff": "3s"}, `"maxRetryBackoff": "3s"`},
		{"bad ttlInSeconds", map[string]string{"redisHost": testAddr, "ttlInSeconds": "1h"}, `"ttlInSeconds": "1h"`},
		{"bad actorStateStore", map[string]string{"redisHost": testAddr, "actorStateStore": "maybe"}, `"actorStateStore": "maybe"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New().Init(testCtx(t), components.Metadata{Name: "statestore", Properties: tt.props})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `state.redis "statestore"`) {
				t.Fatalf("Init error = %v, want one naming the component and containing %s", err, tt.want)
			}
		})
	}
}

func TestInitUnreachableNamesRedisHost(t *testing.T) {
	// Port 1 on loopback refuses at once: nothing listens there.
	s := New()
	err := s.Init(testCtx(t), components.Metadata{Properties: map[string]string{
		"redisHost": "127.0.0.1:1", "dialTimeout": "1s", "maxRetries": "-1",
	}})
	if err == nil || !strings.Contains(err.Error(), "redisHost") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Init error = %v, want one naming redisHost and the address", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after failed Init: %v", err)
	}
}

// TestRetryDefaults: Dapr gives state stores legacy retry defaults and keys that its
// pub/sub does not have.
func TestRetryDefaults(t *testing.T) {
	for _, tc := range []struct {
		name       string
		props      map[string]string
		maxRetries int
		minBackoff time.Duration
		maxBackoff time.Duration
	}{
		{"defaults", nil, 3, 2 * time.Second, 0},
		{"legacy keys", map[string]string{"maxRetries": "5", "maxRetryBackoff": "3000000000"}, 5, 3 * time.Second, 0},
		{"current keys win", map[string]string{"maxRetries": "5", "redisMaxRetries": "7", "maxRetryBackoff": "3000000000", "redisMinRetryInterval": "100", "redisMaxRetryInterval": "1s"}, 7, 100 * time.Millisecond, time.Second},
		{"disabled", map[string]string{"maxRetries": "-1", "maxRetryBackoff": "-1"}, -1, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			props := map[string]string{"redisHost": "h"}
			maps.Copy(props, tc.props)
			o, err := parseOptions(components.Metadata{Properties: props})
			if err != nil {
				t.Fatal(err)
			}
			u, err := o.Universal()
			if err != nil {
				t.Fatal(err)
			}
			if u.MaxRetries != tc.maxRetries || u.MinRetryBackoff != tc.minBackoff || u.MaxRetryBackoff != tc.maxBackoff {
				t.Fatalf("retries %d, backoff %v to %v; want %d, %v to %v", u.MaxRetries, u.MinRetryBackoff, u.MaxRetryBackoff, tc.maxRetries, tc.minBackoff, tc.maxBackoff)
			}
		})
	}
}

func TestStoreOptions(t *testing.T) {
	o, err := parseOptions(components.Metadata{Properties: map[string]string{"redisHost": "h"}})
	if err != nil || o.TTLInSeconds != nil || o.ActorStateStore || o.QueryIndexes != "" {
		t.Fatalf("defaults %+v, %v", o, err)
	}
	o, err = parseOptions(components.Metadata{Properties: map[string]string{
		"redisHost": "h", "ttlInSeconds": "60", "actorStateStore": "true", "queryIndexes": "[]",
	}})
	if err != nil || *o.TTLInSeconds != 60 || !o.ActorStateStore || o.QueryIndexes != "[]" {
		t.Fatalf("store options %+v, %v", o, err)
	}
}

func TestFeatures(t *testing.T) {
	s := newTestStore(t, nil)
	want := []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL}
	if !slices.Equal(s.Features(), want) {
		t.Fatalf("Features = %v, want %v", s.Features(), want)
	}
	if state.Has(s, state.FeatureQueryAPI) {
		t.Fatal("QUERY_API declared without RediSearch")
	}
	a := newTestStore(t, map[string]string{"actorStateStore": "true"})
	if !state.Has(a, state.FeatureActorStateStore) {
		t.Fatalf("Features = %v, want ACTOR with actorStateStore: true", a.Features())
	}
}

func TestRegister(t *testing.T) {
	r := &components.Registry[state.Store]{}
	Register(r)
	s, err := r.Create("state.redis", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*Store); !ok {
		t.Fatalf("Create returned %T", s)
	}
	if !components.IsImplemented("state.redis") {
		t.Fatal("state.redis not marked implemented")
	}
}

func TestSetGetETagAndLayout(t *testing.T) {
	s := newTestStore(t, nil)
	raw := rawClient(t)
	ctx := testCtx(t)
	key := uniqueKey(t, raw, "k")

	if got, err := s.Get(ctx, &state.GetRequest{Key: key}); err != nil || got != nil {
		t.Fatalf("Get missing = %+v, %v; want nil, nil", got, err)
	}
	value := []byte("{\"a\": 1,\n \"b\":[true]}\x00\xff")
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: value}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, &state.GetRequest{Key: key})
	if err != nil || got == nil || string(got.Data) != string(value) || got.ETag == nil || *got.ETag != "1" || got.Expiry != nil {
		t.Fatalf("Get = %+v, %v; want the exact bytes, ETag 1 and no expiry", got, err)
	}

	// Dapr's layout: a hash with data and version.
	h, err := raw.HGetAll(ctx, key).Result()
	if err != nil || h["data"] != string(value) || h["version"] != "1" {
		t.Fatalf("HGETALL = %v, %v", h, err)
	}

	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`2`), ETag: ptr("1")}); err != nil {
		t.Fatalf("Set with the current ETag: %v", err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`3`), ETag: ptr("1")}); !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("Set with a stale ETag = %v, want ETag mismatch", err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`3`), ETag: ptr("not-a-version")}); !isETagErr(err, state.ETagInvalid) {
		t.Fatalf("Set with a malformed ETag = %v, want ETag invalid", err)
	}
	got, _ = s.Get(ctx, &state.GetRequest{Key: key})
	if string(got.Data) != "2" || *got.ETag != "2" {
		t.Fatalf("after ETag writes: %q ETag %s", got.Data, *got.ETag)
	}

	// A value written by a Dapr sidecar (same layout) reads back with its version.
	if err := raw.HSet(ctx, key, "data", `"from dapr"`, "version", "41").Err(); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get(ctx, &state.GetRequest{Key: key})
	if string(got.Data) != `"from dapr"` || *got.ETag != "41" {
		t.Fatalf("Dapr-written value: %q ETag %s", got.Data, *got.ETag)
	}

	if err := s.Delete(ctx, &state.DeleteRequest{Key: key, ETag: ptr("40")}); !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("Delete with a stale ETag = %v", err)
	}
	if err := s.Delete(ctx, &state.DeleteRequest{Key: key, ETag: ptr("41")}); err != nil {
		t.Fatalf("Delete with the ETag: %v", err)
	}
	if got, _ := s.Get(ctx, &state.GetRequest{Key: key}); got != nil {
		t.Fatalf("Get after delete = %+v", got)
	}
	if err := s.Delete(ctx, &state.DeleteRequest{Key: key}); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if err := s.Delete(ctx, &state.DeleteRequest{Key: key, ETag: ptr("1")}); !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("Delete of a missing key with an ETag = %v, want mismatch", err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`1`), ETag: ptr("1")}); !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("Set of a missing key with an ETag = %v, want mismatch", err)
	}
}

func TestFirstWrite(t *testing.T) {
	s := newTestStore(t, nil)
	raw := rawClient(t)
	ctx := testCtx(t)
	key := uniqueKey(t, raw, "fw")
	fw := state.Options{Concurrency: state.FirstWrite}

	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`1`), Options: fw}); err != nil {
		t.Fatalf("first write: %v", err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`2`), Options: fw}); !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("second first-write = %v, want a conflict", err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`2`), Options: fw, ETag: ptr("1")}); err != nil {
		t.Fatalf("first-write with the current ETag: %v", err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`3`), Options: state.Options{Concurrency: state.LastWrite}}); err != nil {
		t.Fatalf("last-write: %v", err)
	}
}

func TestPlainStringValue(t *testing.T) {
	// Very old Dapr versions stored plain strings; they read back without an ETag and
	// a set replaces them with the hash layout.
	s := newTestStore(t, nil)
	raw := rawClient(t)
	ctx := testCtx(t)
	key := uniqueKey(t, raw, "plain")
	raw.Set(ctx, key, "legacy", 0)
	got, err := s.Get(ctx, &state.GetRequest{Key: key})
	if err != nil || got == nil || string(got.Data) != "legacy" || got.ETag != nil {
		t.Fatalf("Get plain = %+v, %v", got, err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte("new"), ETag: ptr("1")}); !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("ETag on a plain value = %v, want mismatch", err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get(ctx, &state.GetRequest{Key: key})
	if string(got.Data) != "new" || *got.ETag != "1" {
		t.Fatalf("after overwrite: %+v", got)
	}
}

func TestTTL(t *testing.T) {
	fixed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := newTestStore(t, nil)
	s.now = func() time.Time { return fixed }
	raw := rawClient(t)
	ctx := testCtx(t)
	key := uniqueKey(t, raw, "ttl")

	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`1`), TTL: ptr(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, &state.GetRequest{Key: key})
	if err != nil || got.Expiry == nil {
		t.Fatalf("Get = %+v, %v; want an expiry", got, err)
	}
	if d := got.Expiry.Sub(fixed); d <= 59*time.Minute || d > time.Hour {
		t.Fatalf("expiry %v is %v after now, want about an hour", got.Expiry, d)
	}

	// A write without TTL keeps the value until deleted.
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`2`)}); err != nil {
		t.Fatal(err)
	}
	if ttl := raw.PTTL(ctx, key).Val(); ttl != -1 {
		t.Fatalf("PTTL after a write without TTL = %v, want none", ttl)
	}

	// The value disappears once expired; poll, bounded by the test's context.
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`3`), TTL: ptr(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := s.Get(ctx, &state.GetRequest{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("value with a 1ms TTL never expired")
		case <-time.After(time.Millisecond):
		}
	}
}

func TestDefaultTTL(t *testing.T) {
	s := newTestStore(t, map[string]string{"ttlInSeconds": "600"})
	raw := rawClient(t)
	ctx := testCtx(t)
	key := uniqueKey(t, raw, "default-ttl")

	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	if ttl := raw.TTL(ctx, key).Val(); ttl <= 590*time.Second || ttl > 600*time.Second {
		t.Fatalf("TTL with the component default = %v, want about 600s", ttl)
	}
	// A request TTL wins; a non-positive one means "never expire" (Dapr's -1).
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`2`), TTL: ptr(30 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if ttl := raw.TTL(ctx, key).Val(); ttl <= 20*time.Second || ttl > 30*time.Second {
		t.Fatalf("TTL with a request TTL = %v, want about 30s", ttl)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`3`), TTL: ptr(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if ttl := raw.PTTL(ctx, key).Val(); ttl != -1 {
		t.Fatalf("PTTL with TTL -1 = %v, want none", ttl)
	}
}

func TestMultiIsAtomic(t *testing.T) {
	s := newTestStore(t, nil)
	raw := rawClient(t)
	ctx := testCtx(t)
	a, b, c := uniqueKey(t, raw, "a"), uniqueKey(t, raw, "b"), uniqueKey(t, raw, "c")

	if err := s.Set(ctx, &state.SetRequest{Key: b, Value: []byte(`"b0"`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: c, Value: []byte(`"c0"`)}); err != nil {
		t.Fatal(err)
	}

	// Operation 2's ETag is stale: operation 1 and 3 must not be applied.
	err := s.Multi(ctx, []state.Operation{
		{Set: &state.SetRequest{Key: a, Value: []byte(`"a1"`)}},
		{Set: &state.SetRequest{Key: b, Value: []byte(`"b1"`), ETag: ptr("7")}},
		{Delete: &state.DeleteRequest{Key: c}},
	}, nil)
	if !isETagErr(err, state.ETagMismatch) || !strings.Contains(err.Error(), "operation 2") {
		t.Fatalf("Multi = %v, want an ETag mismatch on operation 2", err)
	}
	if n := raw.Exists(ctx, a).Val(); n != 0 {
		t.Fatal("operation 1 was applied although operation 2 failed")
	}
	if got, _ := s.Get(ctx, &state.GetRequest{Key: c}); got == nil || string(got.Data) != `"c0"` {
		t.Fatalf("operation 3 was applied: %+v", got)
	}

	// Checks see the state earlier operations leave: the ETag after op 1 is 2.
	err = s.Multi(ctx, []state.Operation{
		{Set: &state.SetRequest{Key: b, Value: []byte(`"b1"`), ETag: ptr("1")}},
		{Set: &state.SetRequest{Key: b, Value: []byte(`"b2"`), ETag: ptr("2")}},
		{Set: &state.SetRequest{Key: a, Value: []byte(`"a1"`), Options: state.Options{Concurrency: state.FirstWrite}}},
		{Delete: &state.DeleteRequest{Key: c, ETag: ptr("1")}},
		{Set: &state.SetRequest{Key: c, Value: []byte(`"c1"`), Options: state.Options{Concurrency: state.FirstWrite}, TTL: ptr(time.Hour)}},
	}, nil)
	if err != nil {
		t.Fatalf("Multi: %v", err)
	}
	for key, want := range map[string]string{a: `"a1"`, b: `"b2"`, c: `"c1"`} {
		got, err := s.Get(ctx, &state.GetRequest{Key: key})
		if err != nil || got == nil || string(got.Data) != want {
			t.Fatalf("%s = %+v, %v; want %s", key, got, err, want)
		}
	}
	if got, _ := s.Get(ctx, &state.GetRequest{Key: b}); *got.ETag != "3" {
		t.Fatalf("b's ETag = %s, want 3", *got.ETag)
	}
	if got, _ := s.Get(ctx, &state.GetRequest{Key: c}); got.Expiry == nil {
		t.Fatal("c lost the TTL set in the transaction")
	}

	// First-write on a key an earlier operation created fails the whole list.
	err = s.Multi(ctx, []state.Operation{
		{Delete: &state.DeleteRequest{Key: a}},
		{Set: &state.SetRequest{Key: b, Value: []byte(`"x"`), Options: state.Options{Concurrency: state.FirstWrite}}},
	}, nil)
	if !isETagErr(err, state.ETagMismatch) {
		t.Fatalf("Multi first-write conflict = %v", err)
	}
	if n := raw.Exists(ctx, a).Val(); n != 1 {
		t.Fatal("the delete of operation 1 was applied although operation 2 failed")
	}

	if err := s.Multi(ctx, []state.Operation{{}}, nil); err == nil {
		t.Fatal("an empty operation was accepted")
	}
	if err := s.Multi(ctx, nil, nil); err != nil {
		t.Fatalf("empty Multi: %v", err)
	}
}

func TestEvalShaFallback(t *testing.T) {
	// Scripts the server has never seen make EVALSHA miss; the store falls back to
	// EVAL. (SCRIPT FLUSH would force the same on the real scripts, but the server is
	// shared with other tests.)
	s := newTestStore(t, nil)
	raw := rawClient(t)
	ctx := testCtx(t)
	key := uniqueKey(t, raw, "fallback")
	nonce := "\n-- " + t.Name() + " " + uniqueKey(t, raw, "nonce") + "\n"
	s.writeScript = goredis.NewScript(writeScriptSrc + nonce)
	s.getScript = goredis.NewScript(getScriptSrc + nonce)
	if ok, err := raw.ScriptExists(ctx, s.writeScript.Hash(), s.getScript.Hash()).Result(); err != nil || ok[0] || ok[1] {
		t.Fatalf("SCRIPT EXISTS = %v, %v; want unknown scripts", ok, err)
	}
	if err := s.Set(ctx, &state.SetRequest{Key: key, Value: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, &state.GetRequest{Key: key}); err != nil || got == nil || string(got.Data) != "1" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if ok, err := raw.ScriptExists(ctx, s.writeScript.Hash(), s.getScript.Hash()).Result(); err != nil || !ok[0] || !ok[1] {
		t.Fatalf("SCRIPT EXISTS after the fallback = %v, %v; want both cached", ok, err)
	}
}

func TestClose(t *testing.T) {
	s := newTestStore(t, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get(testCtx(t), &state.GetRequest{Key: "k"}); err == nil {
		t.Fatal("Get after Close succeeded")
	}
}

func TestContextDeadline(t *testing.T) {
	s := newTestStore(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Set(ctx, &state.SetRequest{Key: "outrigger-test||cancelled", Value: []byte(`1`)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Set with a cancelled context = %v", err)
	}
}

// prefixed namespaces a store's keys for one conformance sub-test: the suite reuses
// its key names in every sub-test and every run, and Redis has no tables to separate
// them.
type prefixed struct {
	*Store
	prefix string
}

func (p *prefixed) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	r := *req
	r.Key = p.prefix + r.Key
	return p.Store.Get(ctx, &r)
}

func (p *prefixed) Set(ctx context.Context, req *state.SetRequest) error {
	r := *req
	r.Key = p.prefix + r.Key
	return p.Store.Set(ctx, &r)
}

func (p *prefixed) Delete(ctx context.Context, req *state.DeleteRequest) error {
	r := *req
	r.Key = p.prefix + r.Key
	return p.Store.Delete(ctx, &r)
}

func (p *prefixed) Multi(ctx context.Context, ops []state.Operation, md map[string]string) error {
	out := make([]state.Operation, len(ops))
	for i, op := range ops {
		if op.Set != nil {
			r := *op.Set
			r.Key = p.prefix + r.Key
			out[i].Set = &r
		}
		if op.Delete != nil {
			r := *op.Delete
			r.Key = p.prefix + r.Key
			out[i].Delete = &r
		}
	}
	return p.Store.Multi(ctx, out, md)
}

func TestConformance(t *testing.T) {
	needRedis(t)
	raw := rawClient(t)
	conformance.Run(t, func(t *testing.T) state.Store {
		s := New()
		if err := s.Init(testCtx(t), components.Metadata{Name: "statestore", Type: TypeName, Properties: map[string]string{"redisHost": testAddr}}); err != nil {
			t.Fatalf("Init: %v", err)
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		prefix := "outrigger-conformance-" + hex.EncodeToString(b[:]) + ":"
		t.Cleanup(func() {
			ctx := context.Background()
			iter := raw.Scan(ctx, 0, prefix+"*", 500).Iterator()
			for iter.Next(ctx) {
				raw.Del(ctx, iter.Val())
			}
		})
		return &prefixed{Store: s, prefix: prefix}
	})
}

// The write script is not idempotent: its client must not re-send it after a lost reply.
func TestWriteClientNeverRetries(t *testing.T) {
	o, err := parseOptions(components.Metadata{Properties: map[string]string{"redisHost": "127.0.0.1:6379"}})
	if err != nil {
		t.Fatal(err)
	}
	reads, err := o.newClient(true)
	if err != nil {
		t.Fatal(err)
	}
	defer reads.Close()
	writes, err := o.newClient(false)
	if err != nil {
		t.Fatal(err)
	}
	defer writes.Close()
	if got := reads.Options().MaxRetries; got != 3 {
		t.Errorf("read client retries %d times, want Dapr's 3", got)
	}
	// go-redis turns the -1 it is given into 0 once it has applied its defaults.
	if got := writes.Options().MaxRetries; got > 0 {
		t.Errorf("write client retries %d times, want never", got)
	}
}
