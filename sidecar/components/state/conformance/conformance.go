// Package conformance is the behavioural suite every state store runs: one copy of the
// rules (ETags, TTL, transactions, queries, concurrency) instead of one per backend.
// A store's test only says how to build an initialised instance.
package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// testTimeout bounds every sub-test, so that a store that hangs fails rather than
// stalls the run.
const testTimeout = 60 * time.Second

// Run runs the suite. newStore returns an initialised store on a fresh namespace
// (table, key prefix or database) so that sub-tests never see each other's keys; the
// suite closes each store it gets.
func Run(t *testing.T, newStore func(t *testing.T) state.Store) {
	t.Helper()
	open := func(t *testing.T) (state.Store, context.Context) {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		t.Cleanup(cancel)
		return s, ctx
	}

	t.Run("CRUD", func(t *testing.T) {
		s, ctx := open(t)
		t.Run("missing key is nil", func(t *testing.T) {
			if resp := mustGet(ctx, t, s, "conf||missing"); resp != nil {
				t.Fatalf("get of a missing key = %+v, want nil", resp)
			}
		})
		t.Run("set get delete", func(t *testing.T) {
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||a", Value: []byte(`{"n":1}`)})
			expectValue(ctx, t, s, "conf||a", []byte(`{"n":1}`))
			if err := s.Delete(ctx, &state.DeleteRequest{Key: "conf||a"}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if resp := mustGet(ctx, t, s, "conf||a"); resp != nil {
				t.Fatalf("get after delete = %q, want nil", resp.Data)
			}
		})
		t.Run("delete missing key", func(t *testing.T) {
			if err := s.Delete(ctx, &state.DeleteRequest{Key: "conf||never"}); err != nil {
				t.Fatalf("delete of a missing key: %v", err)
			}
		})
		t.Run("overwrite", func(t *testing.T) {
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||o", Value: []byte("first")})
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||o", Value: []byte("second")})
			expectValue(ctx, t, s, "conf||o", []byte("second"))
		})
		t.Run("binary value", func(t *testing.T) {
			v := make([]byte, 256)
			for i := range v {
				v[i] = byte(i)
			}
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||bin", Value: v})
			expectValue(ctx, t, s, "conf||bin", v)
		})
		t.Run("large value", func(t *testing.T) {
			v := bytes.Repeat([]byte("0123456789abcdef"), 64*1024) // 1 MiB
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||large", Value: v})
			expectValue(ctx, t, s, "conf||large", v)
		})
		t.Run("keys with separators", func(t *testing.T) {
			key := "app||orders/42 é:x"
			mustSet(ctx, t, s, &state.SetRequest{Key: key, Value: []byte("v")})
			expectValue(ctx, t, s, key, []byte("v"))
		})
		t.Run("content type round trip", func(t *testing.T) {
			ct := "application/json"
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||ct", Value: []byte(`{}`), ContentType: &ct})
			resp := mustGet(ctx, t, s, "conf||ct")
			if resp == nil {
				t.Fatal("get = nil")
			}
			// A store may not keep content types; one that returns one must return ours.
			if resp.ContentType != nil && *resp.ContentType != ct {
				t.Fatalf("content type = %q, want %q", *resp.ContentType, ct)
			}
		})
		t.Run("bulk of distinct keys from many goroutines", func(t *testing.T) {
			const n = 64
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- s.Set(ctx, &state.SetRequest{Key: fmt.Sprintf("conf||par-%d", i), Value: fmt.Appendf(nil, "v%d", i)})
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("concurrent set: %v", err)
				}
			}
			for i := range n {
				expectValue(ctx, t, s, fmt.Sprintf("conf||par-%d", i), fmt.Appendf(nil, "v%d", i))
			}
		})
	})

	t.Run("ETag", func(t *testing.T) {
		s, ctx := open(t)
		if !state.Has(s, state.FeatureETag) {
			t.Skip("store does not declare ETAG")
		}
		mustSet(ctx, t, s, &state.SetRequest{Key: "conf||e", Value: []byte("v1")})
		first := etagOf(ctx, t, s, "conf||e")

		t.Run("set with the current etag", func(t *testing.T) {
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||e", Value: []byte("v2"), ETag: &first})
			if now := etagOf(ctx, t, s, "conf||e"); now == first {
				t.Fatalf("etag did not change on write: %q", now)
			}
		})
		t.Run("set with a stale etag", func(t *testing.T) {
			err := s.Set(ctx, &state.SetRequest{Key: "conf||e", Value: []byte("v3"), ETag: &first})
			expectETagError(t, err, state.ETagMismatch)
			expectValue(ctx, t, s, "conf||e", []byte("v2"))
		})
		t.Run("set a missing key with an etag", func(t *testing.T) {
			err := s.Set(ctx, &state.SetRequest{Key: "conf||absent", Value: []byte("v"), ETag: &first})
			expectETagError(t, err, state.ETagMismatch)
			if resp := mustGet(ctx, t, s, "conf||absent"); resp != nil {
				t.Fatalf("a failed etag write created the key: %q", resp.Data)
			}
		})
		t.Run("invalid etag", func(t *testing.T) {
			bad := "%%not-an-etag%%"
			expectETagError(t, s.Set(ctx, &state.SetRequest{Key: "conf||e", Value: []byte("x"), ETag: &bad}), -1)
			expectETagError(t, s.Delete(ctx, &state.DeleteRequest{Key: "conf||e", ETag: &bad}), -1)
			expectValue(ctx, t, s, "conf||e", []byte("v2"))
		})
		t.Run("delete with a stale etag", func(t *testing.T) {
			err := s.Delete(ctx, &state.DeleteRequest{Key: "conf||e", ETag: &first})
			expectETagError(t, err, state.ETagMismatch)
			expectValue(ctx, t, s, "conf||e", []byte("v2"))
		})
		t.Run("delete with the current etag", func(t *testing.T) {
			cur := etagOf(ctx, t, s, "conf||e")
			if err := s.Delete(ctx, &state.DeleteRequest{Key: "conf||e", ETag: &cur}); err != nil {
				t.Fatalf("delete with current etag: %v", err)
			}
			if resp := mustGet(ctx, t, s, "conf||e"); resp != nil {
				t.Fatalf("key survived its delete: %q", resp.Data)
			}
			err := s.Delete(ctx, &state.DeleteRequest{Key: "conf||e", ETag: &cur})
			expectETagError(t, err, state.ETagMismatch)
		})
		t.Run("first-write without etag", func(t *testing.T) {
			fw := state.Options{Concurrency: state.FirstWrite}
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||fw", Value: []byte("a"), Options: fw})
			err := s.Set(ctx, &state.SetRequest{Key: "conf||fw", Value: []byte("b"), Options: fw})
			expectETagError(t, err, state.ETagMismatch)
			expectValue(ctx, t, s, "conf||fw", []byte("a"))
		})
		t.Run("first-write with etag", func(t *testing.T) {
			fw := state.Options{Concurrency: state.FirstWrite}
			cur := etagOf(ctx, t, s, "conf||fw")
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||fw", Value: []byte("c"), ETag: &cur, Options: fw})
			err := s.Set(ctx, &state.SetRequest{Key: "conf||fw", Value: []byte("d"), ETag: &cur, Options: fw})
			expectETagError(t, err, state.ETagMismatch)
			expectValue(ctx, t, s, "conf||fw", []byte("c"))
		})
		t.Run("last-write without etag always wins", func(t *testing.T) {
			lw := state.Options{Concurrency: state.LastWrite}
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||fw", Value: []byte("e"), Options: lw})
			expectValue(ctx, t, s, "conf||fw", []byte("e"))
		})
		t.Run("racing etag updates, one wins", func(t *testing.T) {
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||race", Value: []byte("0")})
			etag := etagOf(ctx, t, s, "conf||race")
			const n = 16
			var wins, mismatches atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					err := s.Set(ctx, &state.SetRequest{Key: "conf||race", Value: fmt.Appendf(nil, "%d", i+1), ETag: &etag})
					var ee *state.ETagError
					switch {
					case err == nil:
						wins.Add(1)
					case errors.As(err, &ee) && ee.Kind == state.ETagMismatch:
						mismatches.Add(1)
					default:
						errs <- err
					}
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("racing set failed with a non-etag error: %v", err)
			}
			if wins.Load() != 1 || mismatches.Load() != n-1 {
				t.Fatalf("wins=%d mismatches=%d, want 1 and %d", wins.Load(), mismatches.Load(), n-1)
			}
		})
	})

	t.Run("TTL", func(t *testing.T) {
		s, ctx := open(t)
		if !state.Has(s, state.FeatureTTL) {
			t.Skip("store does not declare TTL")
		}
		// The two waiting sub-tests run in parallel (distinct keys), so the suite
		// waits for one TTL rather than two; the parent's cleanup closes the store
		// only after both finish.
		t.Run("expires", func(t *testing.T) {
			t.Parallel()
			ttl := time.Second
			before := time.Now()
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||ttl", Value: []byte("v"), TTL: &ttl})
			resp := mustGet(ctx, t, s, "conf||ttl")
			if resp == nil {
				// Only possible on a machine slow enough to take a second between
				// the two calls; the expiry check below covers the rule anyway.
				t.Log("item already expired on the first read")
			} else if resp.Expiry != nil {
				// Stores may keep whole seconds; allow that rounding either way.
				if resp.Expiry.Before(before.Add(-time.Second)) || resp.Expiry.After(time.Now().Add(ttl+time.Second)) {
					t.Errorf("expiry %v is not about %v after the write", resp.Expiry, ttl)
				}
			}
			waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				if resp := mustGet(ctx, t, s, "conf||ttl"); resp == nil {
					return
				}
				select {
				case <-waitCtx.Done():
					t.Fatal("item with a 1s TTL still readable after 10s")
				case <-tick.C:
				}
			}
		})
		t.Run("overwrite without TTL keeps the item", func(t *testing.T) {
			ttl := time.Hour
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||ttl2", Value: []byte("v"), TTL: &ttl})
			if resp := mustGet(ctx, t, s, "conf||ttl2"); resp == nil || resp.Expiry == nil {
				t.Fatalf("item with a TTL reports no expiry: %+v", resp)
			}
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||ttl2", Value: []byte("w")})
			resp := mustGet(ctx, t, s, "conf||ttl2")
			if resp == nil || resp.Expiry != nil {
				t.Fatalf("overwrite without TTL should clear the expiry, got %+v", resp)
			}
		})
		t.Run("expired key behaves as missing", func(t *testing.T) {
			t.Parallel()
			if !state.Has(s, state.FeatureETag) {
				t.Skip("store does not declare ETAG")
			}
			ttl := time.Second
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||ttl3", Value: []byte("v"), TTL: &ttl})
			waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			for mustGet(ctx, t, s, "conf||ttl3") != nil {
				select {
				case <-waitCtx.Done():
					t.Fatal("item with a 1s TTL still readable after 10s")
				case <-time.After(50 * time.Millisecond):
				}
			}
			fw := state.Options{Concurrency: state.FirstWrite}
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||ttl3", Value: []byte("again"), Options: fw})
			expectValue(ctx, t, s, "conf||ttl3", []byte("again"))
		})
	})

	t.Run("Transactions", func(t *testing.T) {
		s, ctx := open(t)
		tx, ok := s.(state.Transactional)
		if !ok || !state.Has(s, state.FeatureTransactional) {
			t.Skip("store is not transactional")
		}
		t.Run("upsert and delete", func(t *testing.T) {
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||t-del", Value: []byte("old")})
			err := tx.Multi(ctx, []state.Operation{
				{Set: &state.SetRequest{Key: "conf||t-a", Value: []byte("a")}},
				{Set: &state.SetRequest{Key: "conf||t-b", Value: []byte("b")}},
				{Delete: &state.DeleteRequest{Key: "conf||t-del"}},
				{Delete: &state.DeleteRequest{Key: "conf||t-never"}},
			}, nil)
			if err != nil {
				t.Fatalf("multi: %v", err)
			}
			expectValue(ctx, t, s, "conf||t-a", []byte("a"))
			expectValue(ctx, t, s, "conf||t-b", []byte("b"))
			if resp := mustGet(ctx, t, s, "conf||t-del"); resp != nil {
				t.Fatalf("deleted key survived the transaction: %q", resp.Data)
			}
		})
		t.Run("later operations see earlier ones", func(t *testing.T) {
			err := tx.Multi(ctx, []state.Operation{
				{Set: &state.SetRequest{Key: "conf||t-seq", Value: []byte("1")}},
				{Delete: &state.DeleteRequest{Key: "conf||t-seq"}},
				{Set: &state.SetRequest{Key: "conf||t-seq2", Value: []byte("1")}},
				{Set: &state.SetRequest{Key: "conf||t-seq2", Value: []byte("2")}},
			}, nil)
			if err != nil {
				t.Fatalf("multi: %v", err)
			}
			if resp := mustGet(ctx, t, s, "conf||t-seq"); resp != nil {
				t.Fatalf("set then delete left %q", resp.Data)
			}
			expectValue(ctx, t, s, "conf||t-seq2", []byte("2"))
		})
		if !state.Has(s, state.FeatureETag) {
			return
		}
		t.Run("a failing operation rolls back the others", func(t *testing.T) {
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||t-x", Value: []byte("x0")})
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||t-y", Value: []byte("y0")})
			stale := etagOf(ctx, t, s, "conf||t-y")
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||t-y", Value: []byte("y1")})
			err := tx.Multi(ctx, []state.Operation{
				{Set: &state.SetRequest{Key: "conf||t-x", Value: []byte("x1")}},
				{Delete: &state.DeleteRequest{Key: "conf||t-z"}},
				{Set: &state.SetRequest{Key: "conf||t-y", Value: []byte("y2"), ETag: &stale}},
				{Set: &state.SetRequest{Key: "conf||t-new", Value: []byte("n")}},
			}, nil)
			expectETagError(t, err, state.ETagMismatch)
			expectValue(ctx, t, s, "conf||t-x", []byte("x0"))
			expectValue(ctx, t, s, "conf||t-y", []byte("y1"))
			if resp := mustGet(ctx, t, s, "conf||t-new"); resp != nil {
				t.Fatalf("an operation after the failing one was applied: %q", resp.Data)
			}
		})
		t.Run("delete with a stale etag rolls back", func(t *testing.T) {
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||t-d", Value: []byte("d0")})
			stale := etagOf(ctx, t, s, "conf||t-d")
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||t-d", Value: []byte("d1")})
			err := tx.Multi(ctx, []state.Operation{
				{Set: &state.SetRequest{Key: "conf||t-e", Value: []byte("e")}},
				{Delete: &state.DeleteRequest{Key: "conf||t-d", ETag: &stale}},
			}, nil)
			expectETagError(t, err, state.ETagMismatch)
			expectValue(ctx, t, s, "conf||t-d", []byte("d1"))
			if resp := mustGet(ctx, t, s, "conf||t-e"); resp != nil {
				t.Fatalf("an operation before the failing one was applied: %q", resp.Data)
			}
		})
		t.Run("etags inside a transaction", func(t *testing.T) {
			mustSet(ctx, t, s, &state.SetRequest{Key: "conf||t-ok", Value: []byte("0")})
			cur := etagOf(ctx, t, s, "conf||t-ok")
			err := tx.Multi(ctx, []state.Operation{
				{Set: &state.SetRequest{Key: "conf||t-ok", Value: []byte("1"), ETag: &cur}},
			}, nil)
			if err != nil {
				t.Fatalf("multi with the current etag: %v", err)
			}
			expectValue(ctx, t, s, "conf||t-ok", []byte("1"))
		})
	})

	t.Run("Query", func(t *testing.T) {
		s, ctx := open(t)
		q, ok := s.(state.Querier)
		if !ok || !state.Has(s, state.FeatureQueryAPI) {
			t.Skip("store does not declare QUERY_API")
		}
		docs := map[string]string{
			"qa||1":    `{"name":"ann","state":"CA","age":30,"person":{"org":"dev"}}`,
			"qa||2":    `{"name":"bob","state":"WA","age":25,"person":{"org":"ops"}}`,
			"qa||3":    `{"name":"cat","state":"CA","age":41,"person":{"org":"ops"}}`,
			"qa||4":    `{"name":"dan","state":"NY","age":35,"person":{"org":"dev"}}`,
			"qa||5":    `{"name":"eve","state":"CA","age":22,"person":{"org":"sec"}}`,
			"other||1": `{"name":"zed","state":"CA","age":99}`,
		}
		for k, v := range docs {
			mustSet(ctx, t, s, &state.SetRequest{Key: k, Value: []byte(v)})
		}
		run := func(t *testing.T, query *state.Query) ([]string, string) {
			t.Helper()
			query.KeyPrefix = "qa||"
			resp, err := q.Query(ctx, query, nil)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			var keys []string
			for _, r := range resp.Results {
				keys = append(keys, r.Key)
			}
			return keys, resp.Token
		}
		sorted := func(keys []string) []string { c := slices.Clone(keys); slices.Sort(c); return c }
		cases := []struct {
			name  string
			q     state.Query
			want  []string
			order bool
		}{
			{name: "all", q: state.Query{}, want: []string{"qa||1", "qa||2", "qa||3", "qa||4", "qa||5"}},
			{name: "EQ", q: state.Query{Filter: &state.Filter{Op: "EQ", Key: "state", Value: "CA"}}, want: []string{"qa||1", "qa||3", "qa||5"}},
			{name: "EQ nested", q: state.Query{Filter: &state.Filter{Op: "EQ", Key: "person.org", Value: "ops"}}, want: []string{"qa||2", "qa||3"}},
			{name: "EQ number", q: state.Query{Filter: &state.Filter{Op: "EQ", Key: "age", Value: float64(25)}}, want: []string{"qa||2"}},
			{name: "IN", q: state.Query{Filter: &state.Filter{Op: "IN", Key: "state", Value: []any{"WA", "NY"}}}, want: []string{"qa||2", "qa||4"}},
			{name: "AND", q: state.Query{Filter: &state.Filter{Op: "AND", Children: []*state.Filter{
				{Op: "EQ", Key: "state", Value: "CA"},
				{Op: "EQ", Key: "person.org", Value: "ops"},
			}}}, want: []string{"qa||3"}},
			{name: "OR", q: state.Query{Filter: &state.Filter{Op: "OR", Children: []*state.Filter{
				{Op: "EQ", Key: "state", Value: "NY"},
				{Op: "EQ", Key: "person.org", Value: "sec"},
			}}}, want: []string{"qa||4", "qa||5"}},
			{name: "sort DESC", q: state.Query{Sort: []state.Sorting{{Key: "age", Order: "DESC"}}}, want: []string{"qa||3", "qa||4", "qa||1", "qa||2", "qa||5"}, order: true},
			{name: "filter and sort ASC", q: state.Query{
				Filter: &state.Filter{Op: "EQ", Key: "state", Value: "CA"},
				Sort:   []state.Sorting{{Key: "name", Order: "ASC"}},
			}, want: []string{"qa||1", "qa||3", "qa||5"}, order: true},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got, token := run(t, &tc.q)
				if token != "" {
					t.Errorf("token = %q on an unpaged query", token)
				}
				if !tc.order {
					got = sorted(got)
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("keys = %v, want %v", got, tc.want)
				}
			})
		}
		t.Run("paging", func(t *testing.T) {
			var all []string
			token := ""
			for page := 0; ; page++ {
				if page > 5 {
					t.Fatalf("paging did not end; so far %v", all)
				}
				keys, next := run(t, &state.Query{
					Sort: []state.Sorting{{Key: "age"}},
					Page: state.Pagination{Limit: 2, Token: token},
				})
				if len(keys) > 2 {
					t.Fatalf("page of %d items with limit 2", len(keys))
				}
				all = append(all, keys...)
				if next == "" {
					break
				}
				token = next
			}
			want := []string{"qa||5", "qa||2", "qa||1", "qa||4", "qa||3"}
			if !slices.Equal(all, want) {
				t.Fatalf("pages = %v, want %v", all, want)
			}
		})
		t.Run("results carry data and etag", func(t *testing.T) {
			resp, err := q.Query(ctx, &state.Query{KeyPrefix: "qa||", Filter: &state.Filter{Op: "EQ", Key: "name", Value: "dan"}}, nil)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			if len(resp.Results) != 1 || string(resp.Results[0].Data) != docs["qa||4"] {
				t.Fatalf("results = %+v", resp.Results)
			}
			if state.Has(s, state.FeatureETag) && resp.Results[0].ETag == nil {
				t.Fatal("result has no etag")
			}
		})
	})

	t.Run("ConcurrentTransactions", func(t *testing.T) {
		s, ctx := open(t)
		tx, ok := s.(state.Transactional)
		if !ok || !state.Has(s, state.FeatureTransactional) {
			t.Skip("store is not transactional")
		}
		// Each transaction writes the same pair of keys; atomicity means a reader
		// never sees the two halves from different transactions.
		const n = 16
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := fmt.Appendf(nil, "%d", i)
				errs <- tx.Multi(ctx, []state.Operation{
					{Set: &state.SetRequest{Key: "conf||pair-a", Value: v}},
					{Set: &state.SetRequest{Key: "conf||pair-b", Value: v}},
				}, nil)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent multi: %v", err)
			}
		}
		a, b := mustGet(ctx, t, s, "conf||pair-a"), mustGet(ctx, t, s, "conf||pair-b")
		if a == nil || b == nil || !bytes.Equal(a.Data, b.Data) {
			t.Fatalf("pair diverged: %+v %+v", a, b)
		}
	})
}

func mustGet(ctx context.Context, t *testing.T, s state.Store, key string) *state.GetResponse {
	t.Helper()
	resp, err := s.Get(ctx, &state.GetRequest{Key: key})
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return resp
}

func mustSet(ctx context.Context, t *testing.T, s state.Store, req *state.SetRequest) {
	t.Helper()
	if err := s.Set(ctx, req); err != nil {
		t.Fatalf("set %q: %v", req.Key, err)
	}
}

func expectValue(ctx context.Context, t *testing.T, s state.Store, key string, want []byte) {
	t.Helper()
	resp := mustGet(ctx, t, s, key)
	if resp == nil {
		t.Fatalf("get %q = nil, want %d bytes", key, len(want))
	}
	if !bytes.Equal(resp.Data, want) {
		if len(want) > 64 {
			t.Fatalf("get %q: %d bytes differ from the %d written", key, len(resp.Data), len(want))
		}
		t.Fatalf("get %q = %q, want %q", key, resp.Data, want)
	}
}

func etagOf(ctx context.Context, t *testing.T, s state.Store, key string) string {
	t.Helper()
	resp := mustGet(ctx, t, s, key)
	if resp == nil || resp.ETag == nil || *resp.ETag == "" {
		t.Fatalf("get %q returned no etag: %+v", key, resp)
	}
	return *resp.ETag
}

// expectETagError checks err is a *state.ETagError of the kind (-1: either kind).
func expectETagError(t *testing.T, err error, kind state.ETagErrorKind) {
	t.Helper()
	var ee *state.ETagError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want an etag error", err)
	}
	if kind >= 0 && ee.Kind != kind {
		t.Fatalf("etag error kind = %d (%v), want %d", ee.Kind, ee, kind)
	}
}
