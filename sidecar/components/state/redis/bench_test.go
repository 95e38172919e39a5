package redis

import (
	"context"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// BenchmarkSetGet measures one save and one read of a small JSON value through the
// store (ETag-checked Lua write, Lua read of data, version and TTL) against plain
// go-redis SET + GET on the same server in the same run.
//
// "store" and "go-redis" give ns/op and allocs of each alone. "ratio" alternates the
// two pairs in one loop, so that load from other processes hits both alike, and
// reports each one's mean and store/go-redis.
func BenchmarkSetGet(b *testing.B) {
	s := newTestStore(b, nil)
	raw := rawClient(b)
	ctx := context.Background()
	value := []byte(`{"orderId":42,"item":"paddle","qty":2}`)

	storePair := func(b *testing.B, req *state.SetRequest, get *state.GetRequest) {
		if err := s.Set(ctx, req); err != nil {
			b.Fatal(err)
		}
		if resp, err := s.Get(ctx, get); err != nil || resp == nil {
			b.Fatalf("get: %v %v", resp, err)
		}
	}
	rawPair := func(b *testing.B, key string) {
		if err := raw.Set(ctx, key, value, 0).Err(); err != nil {
			b.Fatal(err)
		}
		if _, err := raw.Get(ctx, key).Bytes(); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("store", func(b *testing.B) {
		key := uniqueKey(b, raw, "bench-store")
		req, get := &state.SetRequest{Key: key, Value: value}, &state.GetRequest{Key: key}
		b.ReportAllocs()
		for b.Loop() {
			storePair(b, req, get)
		}
	})
	b.Run("go-redis", func(b *testing.B) {
		key := uniqueKey(b, raw, "bench-raw")
		b.ReportAllocs()
		for b.Loop() {
			rawPair(b, key)
		}
	})
	b.Run("ratio", func(b *testing.B) {
		key, rawKey := uniqueKey(b, raw, "bench-ratio"), uniqueKey(b, raw, "bench-ratio-raw")
		req, get := &state.SetRequest{Key: key, Value: value}, &state.GetRequest{Key: key}
		var inStore, inRaw time.Duration
		for b.Loop() {
			t0 := time.Now()
			storePair(b, req, get)
			t1 := time.Now()
			rawPair(b, rawKey)
			inStore += t1.Sub(t0)
			inRaw += time.Since(t1)
		}
		b.ReportMetric(float64(inStore.Nanoseconds())/float64(b.N), "store-ns/pair")
		b.ReportMetric(float64(inRaw.Nanoseconds())/float64(b.N), "go-redis-ns/pair")
		b.ReportMetric(float64(inStore)/float64(inRaw), "store/go-redis")
	})
}
