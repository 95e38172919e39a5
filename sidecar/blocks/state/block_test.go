package state

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/memory"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newMemory(t *testing.T) *memory.Store {
	t.Helper()
	s := memory.New()
	if err := s.Init(context.Background(), components.Metadata{Name: "statestore"}); err != nil {
		t.Fatal(err)
	}
	return s
}

// plainStore has only the base interface: no transactions, no query, and the features
// it is given.
type plainStore struct {
	inner    *memory.Store
	features []state.Feature
}

func (p *plainStore) Init(context.Context, components.Metadata) error { return nil }
func (p *plainStore) Close() error                                    { return nil }
func (p *plainStore) Features() []state.Feature                       { return p.features }
func (p *plainStore) Get(ctx context.Context, r *state.GetRequest) (*state.GetResponse, error) {
	return p.inner.Get(ctx, r)
}
func (p *plainStore) Set(ctx context.Context, r *state.SetRequest) error { return p.inner.Set(ctx, r) }
func (p *plainStore) Delete(ctx context.Context, r *state.DeleteRequest) error {
	return p.inner.Delete(ctx, r)
}

// failingStore fails every call with err, or, with failKey set, only calls on keys
// that contain it.
type failingStore struct {
	err     error
	failKey string
	inner   *memory.Store
}

func (f *failingStore) fails(key string) bool {
	return f.failKey == "" || strings.Contains(key, f.failKey)
}
func (f *failingStore) Init(context.Context, components.Metadata) error { return nil }
func (f *failingStore) Close() error                                    { return nil }
func (f *failingStore) Features() []state.Feature {
	return []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL, state.FeatureQueryAPI}
}
func (f *failingStore) Get(ctx context.Context, r *state.GetRequest) (*state.GetResponse, error) {
	if f.fails(r.Key) {
		return nil, f.err
	}
	return f.inner.Get(ctx, r)
}
func (f *failingStore) Set(ctx context.Context, r *state.SetRequest) error {
	if f.fails(r.Key) {
		return f.err
	}
	return f.inner.Set(ctx, r)
}
func (f *failingStore) Delete(ctx context.Context, r *state.DeleteRequest) error {
	if f.fails(r.Key) {
		return f.err
	}
	return f.inner.Delete(ctx, r)
}
func (f *failingStore) Multi(context.Context, []state.Operation, map[string]string) error {
	return f.err
}
func (f *failingStore) Query(context.Context, *state.Query, map[string]string) (*state.QueryResponse, error) {
	return nil, f.err
}

// countingStores checks that every acquired handle is released.
type countingStores struct {
	*StaticStores
	acquired, released atomic.Int32
}

func (c *countingStores) Acquire(name string) (Handle, func(), bool) {
	h, _, ok := c.StaticStores.Acquire(name)
	if !ok {
		return h, func() {}, false
	}
	c.acquired.Add(1)
	var once sync.Once
	return h, func() { once.Do(func() { c.released.Add(1) }) }, true
}

// recordingRunner records the targets of the calls it runs.
type recordingRunner struct {
	mu      sync.Mutex
	targets []resiliency.Target
	err     error
}

func (r *recordingRunner) Run(ctx context.Context, t resiliency.Target, op func(context.Context) error) error {
	r.mu.Lock()
	r.targets = append(r.targets, t)
	r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	return op(ctx)
}

func (r *recordingRunner) ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, t := range r.targets {
		out = append(out, t.Operation)
	}
	return out
}

type fixture struct {
	block  *Block
	stores *countingStores
	runner *recordingRunner
	mem    *memory.Store
}

// newFixture has "statestore" (in-memory, every feature), "plain" (no features),
// "ttl-less" (ETag only) and "broken" (every call fails).
func newFixture(t *testing.T, keyPrefix string) *fixture {
	t.Helper()
	mem := newMemory(t)
	f := &fixture{mem: mem, runner: &recordingRunner{}}
	f.stores = &countingStores{StaticStores: NewStaticStores(map[string]Handle{
		"statestore": {Store: mem, KeyPrefix: keyPrefix},
		"plain":      {Store: &plainStore{inner: newMemory(t)}},
		"ttl-less":   {Store: &plainStore{inner: newMemory(t), features: []state.Feature{state.FeatureETag}}},
		"broken":     {Store: &failingStore{err: errors.New("disk on fire"), inner: newMemory(t)}},
	})}
	f.block = &Block{AppID: "myapp", Namespace: "prod", Stores: f.stores, Runner: f.runner}
	t.Cleanup(func() {
		if a, r := f.stores.acquired.Load(), f.stores.released.Load(); a != r {
			t.Errorf("acquired %d store handles, released %d", a, r)
		}
	})
	return f
}

// expectAPIError checks code, statuses and message of an error.
func expectAPIError(t *testing.T, err error, name string, status int, grpc codes.Code, msgContains string) {
	t.Helper()
	var e *apierrors.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want an *apierrors.Error %s", err, err, name)
	}
	if e.Code.Name != name || e.Code.HTTPStatus != status || e.Code.GRPC != grpc {
		t.Fatalf("error %s/%d/%s (%q), want %s/%d/%s", e.Code.Name, e.Code.HTTPStatus, e.Code.GRPC, e.Message, name, status, grpc)
	}
	if !strings.Contains(e.Message, msgContains) {
		t.Fatalf("message %q does not contain %q", e.Message, msgContains)
	}
}

func sp(s string) *string { return &s }

func TestKeyPrefixes(t *testing.T) {
	for _, tc := range []struct {
		name, keyPrefix, appID, namespace, stored string
	}{
		{name: "default", keyPrefix: "", appID: "myapp", stored: "myapp||k"},
		{name: "appid", keyPrefix: "appid", appID: "myapp", stored: "myapp||k"},
		{name: "appid case-insensitive", keyPrefix: "AppID", appID: "myapp", stored: "myapp||k"},
		{name: "appid without app id", keyPrefix: "appid", appID: "", stored: "k"},
		{name: "name", keyPrefix: "name", appID: "myapp", stored: "statestore||k"},
		{name: "namespace", keyPrefix: "namespace", appID: "myapp", namespace: "prod", stored: "prod.myapp||k"},
		{name: "namespace without namespace", keyPrefix: "namespace", appID: "myapp", stored: "myapp||k"},
		{name: "namespace without app id", keyPrefix: "namespace", namespace: "prod", stored: "k"},
		{name: "none", keyPrefix: "none", appID: "myapp", stored: "k"},
		{name: "literal, lower-cased as Dapr does", keyPrefix: "Shared", appID: "myapp", stored: "shared||k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			f := newFixture(t, tc.keyPrefix)
			f.block.AppID, f.block.Namespace = tc.appID, tc.namespace
			if err := f.block.Save(ctx, "statestore", []SaveRequest{{Key: "k", Value: []byte(`"v"`)}}); err != nil {
				t.Fatal(err)
			}
			raw, err := f.mem.Get(ctx, &state.GetRequest{Key: tc.stored})
			if err != nil || raw == nil {
				t.Fatalf("store has no %q: %v", tc.stored, err)
			}
			item, err := f.block.Get(ctx, "statestore", GetRequest{Key: "k"})
			if err != nil || item == nil || item.Key != "k" || string(item.Value) != `"v"` {
				t.Fatalf("get = %+v, %v", item, err)
			}
			bulk, err := f.block.BulkGet(ctx, "statestore", BulkGetRequest{Keys: []string{"k"}})
			if err != nil || len(bulk) != 1 || bulk[0].Key != "k" || string(bulk[0].Value) != `"v"` {
				t.Fatalf("bulk get = %+v, %v", bulk, err)
			}
			if err := f.block.Delete(ctx, "statestore", DeleteRequest{Key: "k"}); err != nil {
				t.Fatal(err)
			}
			if raw, _ := f.mem.Get(ctx, &state.GetRequest{Key: tc.stored}); raw != nil {
				t.Fatalf("delete left %q", tc.stored)
			}
		})
	}
}

func TestKeyErrors(t *testing.T) {
	for _, key := range []string{"", "a||b"} {
		msg := `"key" is a required field`
		if key != "" {
			msg = "can't contain '||'"
		}
		calls := map[string]func(f *fixture, ctx context.Context) error{
			"get": func(f *fixture, ctx context.Context) error {
				_, err := f.block.Get(ctx, "statestore", GetRequest{Key: key})
				return err
			},
			"bulk get": func(f *fixture, ctx context.Context) error {
				_, err := f.block.BulkGet(ctx, "statestore", BulkGetRequest{Keys: []string{"ok", key}})
				return err
			},
			"save": func(f *fixture, ctx context.Context) error {
				return f.block.Save(ctx, "statestore", []SaveRequest{{Key: "ok", Value: []byte("1")}, {Key: key, Value: []byte("1")}})
			},
			"delete": func(f *fixture, ctx context.Context) error {
				return f.block.Delete(ctx, "statestore", DeleteRequest{Key: key})
			},
			"delete bulk": func(f *fixture, ctx context.Context) error {
				return f.block.DeleteBulk(ctx, "statestore", []DeleteRequest{{Key: key}})
			},
			"transaction": func(f *fixture, ctx context.Context) error {
				return f.block.Transact(ctx, "statestore", TransactionRequest{Operations: []TransactionOperation{
					{Operation: "upsert", Save: &SaveRequest{Key: "ok", Value: []byte("1")}},
					{Operation: "delete", Delete: &DeleteRequest{Key: key}},
				}})
			},
		}
		for name, call := range calls {
			t.Run(fmt.Sprintf("%s %q", name, key), func(t *testing.T) {
				ctx := ctxT(t)
				f := newFixture(t, "")
				expectAPIError(t, call(f, ctx), "ERR_MALFORMED_REQUEST", 400, codes.InvalidArgument, msg)
				// Nothing was written: validation runs before the first store call.
				if r, _ := f.mem.Get(ctx, &state.GetRequest{Key: "myapp||ok"}); r != nil {
					t.Fatal("a request with a bad key wrote its other items")
				}
			})
		}
	}
	t.Run("separator refused with keyPrefix none too", func(t *testing.T) {
		f := newFixture(t, "none")
		err := f.block.Save(ctxT(t), "statestore", []SaveRequest{{Key: "a||b", Value: []byte("1")}})
		expectAPIError(t, err, "ERR_MALFORMED_REQUEST", 400, codes.InvalidArgument, "input key/keyPrefix 'a||b' can't contain '||'")
	})
	t.Run("literal prefix with separator", func(t *testing.T) {
		f := newFixture(t, "x||y")
		_, err := f.block.Get(ctxT(t), "statestore", GetRequest{Key: "k"})
		expectAPIError(t, err, "ERR_MALFORMED_REQUEST", 400, codes.InvalidArgument, "'x||y'")
	})
}

func TestStoreLookupErrors(t *testing.T) {
	ctx := ctxT(t)
	f := newFixture(t, "")
	_, err := f.block.Get(ctx, "nope", GetRequest{Key: "k"})
	expectAPIError(t, err, "ERR_STATE_STORE_NOT_FOUND", 400, codes.InvalidArgument, "state store nope is not found")
	if e := apierrors.As(err); e.Reason != "DAPR_STATE_NOT_FOUND" || e.Metadata["appID"] != "myapp" {
		t.Errorf("error info = %q %v", e.Reason, e.Metadata)
	}
	for name, b := range map[string]*Block{
		"no stores":  {AppID: "a", Stores: NewStaticStores(nil)},
		"nil Stores": {AppID: "a"},
	} {
		t.Run(name, func(t *testing.T) {
			for _, err := range []error{
				func() error { _, err := b.Get(ctx, "s", GetRequest{Key: "k"}); return err }(),
				b.Save(ctx, "s", []SaveRequest{{Key: "k"}}),
				b.Transact(ctx, "s", TransactionRequest{}),
				func() error { _, err := b.Query(ctx, "s", QueryRequest{Query: []byte("{}")}); return err }(),
			} {
				expectAPIError(t, err, "ERR_STATE_STORE_NOT_CONFIGURED", 500, codes.FailedPrecondition, "state store s is not configured")
			}
		})
	}
}

func TestStoreFailures(t *testing.T) {
	for _, tc := range []struct {
		name, code, msg string
		call            func(b *Block, ctx context.Context) error
	}{
		{"get", "ERR_STATE_GET", "fail to get k from state store broken: disk on fire", func(b *Block, ctx context.Context) error {
			_, err := b.Get(ctx, "broken", GetRequest{Key: "k"})
			return err
		}},
		{"save", "ERR_STATE_SAVE", "failed saving state in state store broken: disk on fire", func(b *Block, ctx context.Context) error {
			return b.Save(ctx, "broken", []SaveRequest{{Key: "k", Value: []byte("1")}})
		}},
		{"delete", "ERR_STATE_DELETE", "failed deleting state with key k: disk on fire", func(b *Block, ctx context.Context) error {
			return b.Delete(ctx, "broken", DeleteRequest{Key: "k"})
		}},
		{"delete bulk", "ERR_STATE_DELETE", "failed deleting state in state store broken: disk on fire", func(b *Block, ctx context.Context) error {
			return b.DeleteBulk(ctx, "broken", []DeleteRequest{{Key: "k"}, {Key: "j"}})
		}},
		{"transaction", "ERR_STATE_TRANSACTION", "error while executing state transaction: disk on fire", func(b *Block, ctx context.Context) error {
			return b.Transact(ctx, "broken", TransactionRequest{Operations: []TransactionOperation{{Operation: "upsert", Save: &SaveRequest{Key: "k"}}}})
		}},
		{"query", "ERR_STATE_QUERY", "state store broken query failed: disk on fire", func(b *Block, ctx context.Context) error {
			_, err := b.Query(ctx, "broken", QueryRequest{Query: []byte(`{}`)})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			expectAPIError(t, tc.call(f.block, ctxT(t)), tc.code, 500, codes.Internal, tc.msg)
		})
	}
	t.Run("bulk get reports per key", func(t *testing.T) {
		ctx := ctxT(t)
		f := newFixture(t, "")
		broken := &failingStore{err: errors.New("shard down"), failKey: "bad", inner: newMemory(t)}
		f.stores.Set("half", Handle{Store: broken})
		if err := f.block.Save(ctx, "half", []SaveRequest{{Key: "good", Value: []byte("1")}}); err != nil {
			t.Fatal(err)
		}
		items, err := f.block.BulkGet(ctx, "half", BulkGetRequest{Keys: []string{"good", "bad", "missing"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 3 ||
			items[0].Key != "good" || string(items[0].Value) != "1" || items[0].ETag == nil || items[0].Error != "" ||
			items[1].Key != "bad" || items[1].Error != "shard down" || items[1].Value != nil ||
			items[2].Key != "missing" || items[2].Value != nil || items[2].Error != "" {
			t.Fatalf("items = %+v", items)
		}
	})
	t.Run("save of several: first failure in request order wins", func(t *testing.T) {
		ctx := ctxT(t)
		f := newFixture(t, "")
		if err := f.block.Save(ctx, "statestore", []SaveRequest{{Key: "b", Value: []byte("0")}}); err != nil {
			t.Fatal(err)
		}
		err := f.block.Save(ctx, "statestore", []SaveRequest{
			{Key: "a", Value: []byte("1")},
			{Key: "b", Value: []byte("1"), ETag: sp("999999")},
			{Key: "c", Value: []byte("1")},
		})
		expectAPIError(t, err, "ERR_STATE_SAVE", 409, codes.Aborted, "possible etag mismatch")
		// As in Dapr, the other items were still written.
		for _, k := range []string{"a", "c"} {
			if it, _ := f.block.Get(ctx, "statestore", GetRequest{Key: k}); it == nil {
				t.Errorf("item %s not written", k)
			}
		}
	})
}

func TestETagStatuses(t *testing.T) {
	ctx := ctxT(t)
	f := newFixture(t, "")
	b := f.block
	if err := b.Save(ctx, "statestore", []SaveRequest{{Key: "k", Value: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	it, err := b.Get(ctx, "statestore", GetRequest{Key: "k"})
	if err != nil || it.ETag == nil {
		t.Fatalf("get = %+v, %v", it, err)
	}
	cur := *it.ETag
	stale := "12345678"
	expectAPIError(t, b.Save(ctx, "statestore", []SaveRequest{{Key: "k", Value: []byte("2"), ETag: &stale}}),
		"ERR_STATE_SAVE", http.StatusConflict, codes.Aborted, "failed saving state in state store statestore: possible etag mismatch")
	expectAPIError(t, b.Delete(ctx, "statestore", DeleteRequest{Key: "k", ETag: &stale}),
		"ERR_STATE_DELETE", http.StatusConflict, codes.Aborted, "failed deleting state with key k: possible etag mismatch")
	expectAPIError(t, b.DeleteBulk(ctx, "statestore", []DeleteRequest{{Key: "k", ETag: &stale}}),
		"ERR_STATE_DELETE", http.StatusConflict, codes.Aborted, "etag mismatch")
	expectAPIError(t, b.Save(ctx, "statestore", []SaveRequest{{Key: "k", Value: []byte("2"), ETag: sp("not-a-number")}}),
		"ERR_STATE_SAVE", http.StatusBadRequest, codes.InvalidArgument, "invalid etag value")
	expectAPIError(t, b.Delete(ctx, "statestore", DeleteRequest{Key: "k", ETag: sp("not-a-number")}),
		"ERR_STATE_DELETE", http.StatusBadRequest, codes.InvalidArgument, "invalid etag value")
	// Dapr answers a failed transaction 500 even for an ETag mismatch.
	expectAPIError(t, b.Transact(ctx, "statestore", TransactionRequest{Operations: []TransactionOperation{
		{Operation: "upsert", Save: &SaveRequest{Key: "k", Value: []byte("3"), ETag: &stale}},
	}}), "ERR_STATE_TRANSACTION", 500, codes.Internal, "error while executing state transaction: possible etag mismatch")
	expectAPIError(t, b.Save(ctx, "statestore", []SaveRequest{{Key: "k", Value: []byte("x"), Options: state.Options{Concurrency: state.FirstWrite}}}),
		"ERR_STATE_SAVE", http.StatusConflict, codes.Aborted, "etag mismatch")

	// An empty ETag is no ETag.
	if err := b.Save(ctx, "statestore", []SaveRequest{{Key: "k", Value: []byte("4"), ETag: sp("")}}); err != nil {
		t.Fatalf("save with an empty etag: %v", err)
	}
	it, _ = b.Get(ctx, "statestore", GetRequest{Key: "k"})
	if *it.ETag == cur {
		t.Fatal("etag unchanged by a write")
	}
	if err := b.Delete(ctx, "statestore", DeleteRequest{Key: "k", ETag: it.ETag}); err != nil {
		t.Fatalf("delete with the current etag: %v", err)
	}
}

func TestTTLAndContentType(t *testing.T) {
	t.Run("ttl on a store without TTL is refused", func(t *testing.T) {
		ctx := ctxT(t)
		f := newFixture(t, "")
		err := f.block.Save(ctx, "ttl-less", []SaveRequest{{Key: "k", Value: []byte("1"), Metadata: map[string]string{"ttlInSeconds": "60"}}})
		expectAPIError(t, err, "ERR_STATE_STORE_NOT_SUPPORTED", 400, codes.InvalidArgument, "state store ttl-less doesn't support TTL")
		if it, _ := f.block.Get(ctx, "ttl-less", GetRequest{Key: "k"}); it != nil {
			t.Fatal("refused item was written")
		}
		for _, v := range []string{"-1", "0", ""} {
			if err := f.block.Save(ctx, "ttl-less", []SaveRequest{{Key: "k", Value: []byte("1"), Metadata: map[string]string{"ttlInSeconds": v}}}); err != nil {
				t.Errorf("ttlInSeconds %q (no expiry) refused: %v", v, err)
			}
		}
	})
	t.Run("ttl in a transaction on a store without TTL", func(t *testing.T) {
		f := newFixture(t, "")
		plainTx := &plainTxStore{plainStore: plainStore{inner: newMemory(t), features: []state.Feature{state.FeatureTransactional}}}
		f.stores.Set("tx-no-ttl", Handle{Store: plainTx})
		err := f.block.Transact(ctxT(t), "tx-no-ttl", TransactionRequest{Operations: []TransactionOperation{
			{Operation: "upsert", Save: &SaveRequest{Key: "k", Metadata: map[string]string{"ttlInSeconds": "5"}}},
		}})
		expectAPIError(t, err, "ERR_STATE_STORE_NOT_SUPPORTED", 400, codes.InvalidArgument, "doesn't support TTL")
	})
	for _, bad := range []string{"abc", "1.5", "-2", "99999999999"} {
		t.Run("bad ttl "+bad, func(t *testing.T) {
			f := newFixture(t, "")
			err := f.block.Save(ctxT(t), "statestore", []SaveRequest{{Key: "k", Metadata: map[string]string{"ttlInSeconds": bad}}})
			expectAPIError(t, err, "ERR_STATE_SAVE", 400, codes.InvalidArgument, "ttlInSeconds")
		})
	}
	t.Run("ttl reaches the store and comes back as ttlExpireTime", func(t *testing.T) {
		ctx := ctxT(t)
		f := newFixture(t, "")
		now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		f.mem.Clock = func() time.Time { return now }
		err := f.block.Save(ctx, "statestore", []SaveRequest{{Key: "k", Value: []byte(`{}`),
			Metadata: map[string]string{"ttlInSeconds": "60", "contentType": "application/json"}}})
		if err != nil {
			t.Fatal(err)
		}
		it, err := f.block.Get(ctx, "statestore", GetRequest{Key: "k"})
		if err != nil || it == nil {
			t.Fatalf("get = %+v, %v", it, err)
		}
		if got := it.Metadata["ttlExpireTime"]; got != "2025-01-02T03:05:05Z" {
			t.Errorf("ttlExpireTime = %q", got)
		}
		if it.ContentType == nil || *it.ContentType != "application/json" {
			t.Errorf("content type = %v", it.ContentType)
		}
		bulk, _ := f.block.BulkGet(ctx, "statestore", BulkGetRequest{Keys: []string{"k"}})
		if bulk[0].Metadata["ttlExpireTime"] == "" {
			t.Errorf("bulk item metadata = %v", bulk[0].Metadata)
		}
		now = now.Add(time.Minute)
		if it, _ := f.block.Get(ctx, "statestore", GetRequest{Key: "k"}); it != nil {
			t.Fatal("item readable after its TTL")
		}
	})
}

// plainTxStore is transactional but declares no TTL.
type plainTxStore struct{ plainStore }

func (p *plainTxStore) Multi(ctx context.Context, ops []state.Operation, md map[string]string) error {
	return p.inner.Multi(ctx, ops, md)
}

func TestOptionValidation(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		call       func(b *Block, ctx context.Context) error
	}{
		{"save concurrency", "ERR_STATE_SAVE", func(b *Block, ctx context.Context) error {
			return b.Save(ctx, "statestore", []SaveRequest{{Key: "k", Options: state.Options{Concurrency: "first"}}})
		}},
		{"save consistency", "ERR_STATE_SAVE", func(b *Block, ctx context.Context) error {
			return b.Save(ctx, "statestore", []SaveRequest{{Key: "k", Options: state.Options{Consistency: "STRONG"}}})
		}},
		{"get consistency", "ERR_STATE_GET", func(b *Block, ctx context.Context) error {
			_, err := b.Get(ctx, "statestore", GetRequest{Key: "k", Consistency: "linearizable"})
			return err
		}},
		{"delete concurrency", "ERR_STATE_DELETE", func(b *Block, ctx context.Context) error {
			return b.Delete(ctx, "statestore", DeleteRequest{Key: "k", Options: state.Options{Concurrency: "whatever"}})
		}},
		{"transaction op options", "ERR_STATE_TRANSACTION", func(b *Block, ctx context.Context) error {
			return b.Transact(ctx, "statestore", TransactionRequest{Operations: []TransactionOperation{
				{Operation: "delete", Delete: &DeleteRequest{Key: "k", Options: state.Options{Consistency: "eventually"}}},
			}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			expectAPIError(t, tc.call(f.block, ctxT(t)), tc.code, 400, codes.InvalidArgument, "")
			if n := len(f.runner.ops()); n != 0 {
				t.Fatalf("%d store calls for an invalid request", n)
			}
		})
	}
	t.Run("valid values pass", func(t *testing.T) {
		f := newFixture(t, "")
		for _, o := range []state.Options{
			{Concurrency: state.FirstWrite, Consistency: state.Strong},
			{Concurrency: state.LastWrite, Consistency: state.Eventual},
		} {
			if err := f.block.Save(ctxT(t), "statestore", []SaveRequest{{Key: "k" + o.Concurrency, Value: []byte("1"), Options: o}}); err != nil {
				t.Errorf("%+v: %v", o, err)
			}
		}
	})
}

func TestTransactions(t *testing.T) {
	t.Run("refused on a store without transactions", func(t *testing.T) {
		f := newFixture(t, "")
		err := f.block.Transact(ctxT(t), "plain", TransactionRequest{Operations: []TransactionOperation{{Operation: "upsert", Save: &SaveRequest{Key: "k"}}}})
		expectAPIError(t, err, "ERR_STATE_STORE_NOT_SUPPORTED", 500, codes.Unimplemented, "state store plain doesn't support transactions")
	})
	t.Run("unknown operation", func(t *testing.T) {
		f := newFixture(t, "")
		err := f.block.Transact(ctxT(t), "statestore", TransactionRequest{Operations: []TransactionOperation{{Operation: "merge"}}})
		expectAPIError(t, err, "ERR_NOT_SUPPORTED_STATE_OPERATION", 400, codes.Unimplemented, "operation type merge not supported")
	})
	t.Run("operation without its request", func(t *testing.T) {
		f := newFixture(t, "")
		err := f.block.Transact(ctxT(t), "statestore", TransactionRequest{Operations: []TransactionOperation{{Operation: "upsert"}}})
		expectAPIError(t, err, "ERR_MALFORMED_REQUEST", 400, codes.InvalidArgument, "upsert has no request")
	})
	t.Run("empty transaction calls nothing", func(t *testing.T) {
		f := newFixture(t, "")
		if err := f.block.Transact(ctxT(t), "statestore", TransactionRequest{}); err != nil {
			t.Fatal(err)
		}
		if ops := f.runner.ops(); len(ops) != 0 {
			t.Fatalf("store calls: %v", ops)
		}
	})
	t.Run("upsert and delete with prefixed keys", func(t *testing.T) {
		ctx := ctxT(t)
		f := newFixture(t, "")
		if err := f.block.Save(ctx, "statestore", []SaveRequest{{Key: "old", Value: []byte("1")}}); err != nil {
			t.Fatal(err)
		}
		err := f.block.Transact(ctx, "statestore", TransactionRequest{Operations: []TransactionOperation{
			{Operation: "upsert", Save: &SaveRequest{Key: "new", Value: []byte("2")}},
			{Operation: "delete", Delete: &DeleteRequest{Key: "old"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := f.mem.Get(ctx, &state.GetRequest{Key: "myapp||new"}); r == nil || string(r.Data) != "2" {
			t.Fatalf("new = %+v", r)
		}
		if r, _ := f.mem.Get(ctx, &state.GetRequest{Key: "myapp||old"}); r != nil {
			t.Fatal("old survived")
		}
	})
}

func TestQuery(t *testing.T) {
	seed := func(t *testing.T, f *fixture) {
		t.Helper()
		ctx := ctxT(t)
		for k, v := range map[string]string{
			"myapp||1":    `{"state":"CA","n":1}`,
			"myapp||2":    `{"state":"WA","n":2}`,
			"myapp||3":    `{"state":"CA","n":3}`,
			"otherapp||4": `{"state":"CA","n":4}`,
			"5":           `{"state":"CA","n":5}`,
		} {
			if err := f.mem.Set(ctx, &state.SetRequest{Key: k, Value: []byte(v)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	keys := func(r *QueryResult) []string {
		var out []string
		for _, it := range r.Results {
			out = append(out, it.Key)
		}
		return out
	}
	t.Run("only the app's keys, unprefixed", func(t *testing.T) {
		f := newFixture(t, "")
		seed(t, f)
		res, err := f.block.Query(ctxT(t), "statestore", QueryRequest{Query: []byte(`{"filter":{"EQ":{"state":"CA"}},"sort":[{"key":"n","order":"DESC"}]}`)})
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(res); !slices.Equal(got, []string{"3", "1"}) {
			t.Fatalf("keys = %v", got)
		}
	})
	t.Run("keyPrefix none sees only unprefixed keys", func(t *testing.T) {
		f := newFixture(t, "none")
		seed(t, f)
		res, err := f.block.Query(ctxT(t), "statestore", QueryRequest{Query: []byte(`{"filter":{"EQ":{"state":"CA"}}}`)})
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(res); !slices.Equal(got, []string{"5"}) {
			t.Fatalf("keys = %v", got)
		}
	})
	t.Run("paging", func(t *testing.T) {
		f := newFixture(t, "")
		seed(t, f)
		res, err := f.block.Query(ctxT(t), "statestore", QueryRequest{Query: []byte(`{"sort":[{"key":"n"}],"page":{"limit":2}}`)})
		if err != nil || !slices.Equal(keys(res), []string{"1", "2"}) || res.Token == "" {
			t.Fatalf("page 1 = %+v, %v", res, err)
		}
		q := fmt.Sprintf(`{"sort":[{"key":"n"}],"page":{"limit":2,"token":%q}}`, res.Token)
		res, err = f.block.Query(ctxT(t), "statestore", QueryRequest{Query: []byte(q)})
		if err != nil || !slices.Equal(keys(res), []string{"3"}) || res.Token != "" {
			t.Fatalf("page 2 = %+v, %v", res, err)
		}
	})
	t.Run("store without query", func(t *testing.T) {
		f := newFixture(t, "")
		_, err := f.block.Query(ctxT(t), "plain", QueryRequest{Query: []byte(`{}`)})
		expectAPIError(t, err, "ERR_STATE_STORE_NOT_SUPPORTED", 500, codes.Internal, "state store does not support querying")
	})
	t.Run("malformed queries", func(t *testing.T) {
		for _, tc := range []struct{ q, msg string }{
			{``, "empty"},
			{`[1]`, "not a JSON object"},
			{`{"filter":`, "not a JSON object"},
			{`{"filters":{}}`, `unknown field "filters"`},
			{`{"filter":{"XOR":{"a":1}}}`, `unknown operator "XOR"`},
			{`{"filter":{"EQ":{"a":1},"IN":{"b":[1]}}}`, "exactly one operator"},
			{`{"filter":{"EQ":{"a":1,"b":2}}}`, "filter.EQ: must be an object with exactly one key"},
			{`{"filter":{"IN":{"a":1}}}`, "filter.IN.a: IN needs an array"},
			{`{"filter":{"AND":{"EQ":{"a":1}}}}`, "filter.AND: must be an array"},
			{`{"filter":{"OR":[{"EQ":{"a":1}}]}}`, "at least two filters"},
			{`{"filter":{"AND":[{"EQ":{"a":1}},{"GT":{"b":true}}]}}`, "filter.AND[1].GT.b"},
			{`{"filter":"EQ"}`, "filter: must be an object"},
			{`{"sort":{"key":"a"}}`, "sort: must be an array"},
			{`{"sort":[{"order":"DESC"}]}`, "sort[0].key: is required"},
			{`{"sort":[{"key":"a","order":"UP"}]}`, `sort[0].order: "UP"`},
			{`{"page":{"limit":-1}}`, "page.limit"},
			{`{"page":{"limit":2.5}}`, "page.limit"},
			{`{"page":{"size":2}}`, "page:"},
			{`{"page":{"token":"zzz"}}`, "page token"},
		} {
			t.Run(tc.q, func(t *testing.T) {
				f := newFixture(t, "")
				_, err := f.block.Query(ctxT(t), "statestore", QueryRequest{Query: []byte(tc.q)})
				expectAPIError(t, err, "ERR_STATE_QUERY", 400, codes.InvalidArgument, tc.msg)
			})
		}
	})
}

func TestParseQuery(t *testing.T) {
	q, err := ParseQuery([]byte(`{
		"filter": {"OR": [
			{"EQ": {"person.org": "Dev Ops"}},
			{"AND": [{"IN": {"state": ["CA", "WA"]}}, {"GTE": {"age": 21}}]}
		]},
		"sort": [{"key": "state", "order": "desc"}, {"key": "age"}],
		"page": {"limit": 3, "token": "6"}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	f := q.Filter
	if f.Op != "OR" || len(f.Children) != 2 ||
		f.Children[0].Op != "EQ" || f.Children[0].Key != "person.org" || f.Children[0].Value != "Dev Ops" ||
		f.Children[1].Op != "AND" || f.Children[1].Children[0].Op != "IN" ||
		!slices.Equal(f.Children[1].Children[0].Value.([]any), []any{"CA", "WA"}) ||
		f.Children[1].Children[1].Value != float64(21) {
		t.Fatalf("filter = %+v", f)
	}
	if !slices.Equal(q.Sort, []state.Sorting{{Key: "state", Order: "DESC"}, {Key: "age", Order: "ASC"}}) {
		t.Fatalf("sort = %+v", q.Sort)
	}
	if q.Page.Limit != 3 || q.Page.Token != "6" {
		t.Fatalf("page = %+v", q.Page)
	}
	if q, err := ParseQuery([]byte(`{"filter":null}`)); err != nil || q.Filter != nil {
		t.Fatalf("null filter = %+v, %v", q, err)
	}
}

func TestEveryStoreCallGoesThroughTheRunner(t *testing.T) {
	ctx := ctxT(t)
	f := newFixture(t, "")
	b := f.block
	_ = b.Save(ctx, "statestore", []SaveRequest{{Key: "a", Value: []byte(`{"x":1}`)}, {Key: "b", Value: []byte("1")}})
	_, _ = b.Get(ctx, "statestore", GetRequest{Key: "a"})
	_, _ = b.BulkGet(ctx, "statestore", BulkGetRequest{Keys: []string{"a", "b"}})
	_ = b.Delete(ctx, "statestore", DeleteRequest{Key: "a"})
	_ = b.DeleteBulk(ctx, "statestore", []DeleteRequest{{Key: "b"}})
	_ = b.Transact(ctx, "statestore", TransactionRequest{Operations: []TransactionOperation{{Operation: "upsert", Save: &SaveRequest{Key: "c"}}}})
	_, _ = b.Query(ctx, "statestore", QueryRequest{Query: []byte(`{}`)})
	got := f.runner.ops()
	slices.Sort(got)
	want := []string{OpBulkGet, OpBulkGet, OpDelete, OpDelete, OpGet, OpQuery, OpSet, OpSet, OpTransaction}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("runner ops = %v, want %v", got, want)
	}
	for _, tg := range f.runner.targets {
		if tg.Kind != "component" || tg.Name != "statestore" || tg.Direction != resiliency.Outbound {
			t.Fatalf("target = %+v", tg)
		}
	}

	f.runner.err = errors.New("circuit open")
	_, err := b.Get(ctx, "statestore", GetRequest{Key: "a"})
	expectAPIError(t, err, "ERR_STATE_GET", 500, codes.Internal, "circuit open")
	items, err := b.BulkGet(ctx, "statestore", BulkGetRequest{Keys: []string{"a"}})
	if err != nil || items[0].Error != "circuit open" {
		t.Fatalf("bulk get under a failing runner = %+v, %v", items, err)
	}
}

// gateStore counts concurrent Gets.
type gateStore struct {
	plainStore
	active, peak atomic.Int32
}

func (g *gateStore) Get(ctx context.Context, r *state.GetRequest) (*state.GetResponse, error) {
	n := g.active.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	defer g.active.Add(-1)
	return g.plainStore.Get(ctx, r)
}

func TestBulkParallelismIsBounded(t *testing.T) {
	for _, tc := range []struct{ block, request, want int }{
		{0, 3, 3},
		{2, 0, 2},
		{0, 0, DefaultBulkParallelism},
	} {
		t.Run(fmt.Sprintf("block %d request %d", tc.block, tc.request), func(t *testing.T) {
			g := &gateStore{plainStore: plainStore{inner: newMemory(t)}}
			b := &Block{AppID: "a", Stores: NewStaticStores(map[string]Handle{"s": {Store: g}}), BulkParallelism: tc.block}
			keys := make([]string, 300)
			for i := range keys {
				keys[i] = fmt.Sprint(i)
			}
			items, err := b.BulkGet(ctxT(t), "s", BulkGetRequest{Keys: keys, Parallelism: tc.request})
			if err != nil || len(items) != len(keys) {
				t.Fatalf("bulk get: %d items, %v", len(items), err)
			}
			for i, it := range items {
				if it.Key != keys[i] {
					t.Fatalf("item %d is %q, want %q: order must follow the request", i, it.Key, keys[i])
				}
			}
			if p := int(g.peak.Load()); p > tc.want {
				t.Fatalf("%d concurrent gets, bound %d", p, tc.want)
			}
		})
	}
}

func TestEmptyRequests(t *testing.T) {
	ctx := ctxT(t)
	f := newFixture(t, "")
	if err := f.block.Save(ctx, "statestore", nil); err != nil {
		t.Fatal(err)
	}
	items, err := f.block.BulkGet(ctx, "statestore", BulkGetRequest{})
	if err != nil || len(items) != 0 {
		t.Fatalf("bulk get of nothing = %v, %v", items, err)
	}
	if it, err := f.block.Get(ctx, "statestore", GetRequest{Key: "missing"}); it != nil || err != nil {
		t.Fatalf("get missing = %+v, %v", it, err)
	}
	if ops := f.runner.ops(); !slices.Equal(ops, []string{OpGet}) {
		t.Fatalf("store calls = %v", ops)
	}
}
