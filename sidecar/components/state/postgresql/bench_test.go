package postgresql

import (
	"context"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// BenchmarkSetGet measures one save and one read of a small JSON value through the
// store against pgx directly (INSERT ... ON CONFLICT DO UPDATE of a key and a jsonb
// value, then SELECT of the value) on the same server in the same run.
//
// "store" and "pgx" give ns/op and allocs of each alone. "ratio" alternates the two
// pairs in one loop, so that load from other processes hits both alike, and reports
// each one's mean and store/pgx.
func BenchmarkSetGet(b *testing.B) {
	s, _ := newTestStore(b, nil)
	raw := rawConn(b)
	ctx := context.Background()
	rawTable, _ := uniqueTables(b)
	if _, err := raw.Exec(ctx, `CREATE TABLE `+rawTable+` (key text PRIMARY KEY, value jsonb NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	upsert := `INSERT INTO ` + rawTable + ` (key, value) VALUES ($1, $2::text::jsonb) ON CONFLICT (key) DO UPDATE SET value = excluded.value`
	sel := `SELECT value::text FROM ` + rawTable + ` WHERE key = $1`
	value := []byte(`{"orderId":42,"item":"paddle","qty":2}`)
	text := string(value)

	storePair := func(b *testing.B, req *state.SetRequest, get *state.GetRequest) {
		if err := s.Set(ctx, req); err != nil {
			b.Fatal(err)
		}
		if resp, err := s.Get(ctx, get); err != nil || resp == nil {
			b.Fatalf("get: %v %v", resp, err)
		}
	}
	var out []byte
	rawPair := func(b *testing.B, key string) {
		if _, err := raw.Exec(ctx, upsert, key, text); err != nil {
			b.Fatal(err)
		}
		if err := raw.QueryRow(ctx, sel, key).Scan(&out); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("store", func(b *testing.B) {
		req, get := &state.SetRequest{Key: "bench||store", Value: value}, &state.GetRequest{Key: "bench||store"}
		b.ReportAllocs()
		for b.Loop() {
			storePair(b, req, get)
		}
	})
	b.Run("pgx", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rawPair(b, "bench||pgx")
		}
	})
	b.Run("ratio", func(b *testing.B) {
		req, get := &state.SetRequest{Key: "bench||ratio", Value: value}, &state.GetRequest{Key: "bench||ratio"}
		var inStore, inRaw time.Duration
		for b.Loop() {
			t0 := time.Now()
			storePair(b, req, get)
			t1 := time.Now()
			rawPair(b, "bench||ratio")
			inStore += t1.Sub(t0)
			inRaw += time.Since(t1)
		}
		b.ReportMetric(float64(inStore.Nanoseconds())/float64(b.N), "store-ns/pair")
		b.ReportMetric(float64(inRaw.Nanoseconds())/float64(b.N), "pgx-ns/pair")
		b.ReportMetric(float64(inStore)/float64(inRaw), "store/pgx")
	})
}
