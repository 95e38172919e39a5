package bench

import (
	"context"
	"os"
	"sort"
	"sync"
	"testing"
	"time"
)

// loadResult is one measured run of a closed-loop load.
type loadResult struct {
	ops       int
	errors    int
	firstErr  error
	elapsed   time.Duration
	latencies []time.Duration
}

func (r loadResult) perSecond() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func (r loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(p * float64(len(r.latencies)-1))
	return r.latencies[i]
}

// runLoad runs op from workers goroutines for d, each calling it back to back, and
// records every latency. A worker stops at its first error after counting it.
func runLoad(ctx context.Context, workers int, d time.Duration, op func(ctx context.Context, worker, i int) error) loadResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var mu sync.Mutex
	res := loadResult{}
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			errs := 0
			for i := 0; ctx.Err() == nil; i++ {
				t0 := time.Now()
				if err := op(ctx, w, i); err != nil {
					// A call cut by the load's deadline is not an error; gRPC may end
					// one on its own timer a moment before ctx reports it.
					if ctx.Err() == nil && time.Now().Before(deadline) {
						errs++
						mu.Lock()
						if res.firstErr == nil {
							res.firstErr = err
						}
						mu.Unlock()
					}
					break
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ops = len(res.latencies)
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	return res
}

// benchDuration is how long each load phase runs: OUTRIGGER_BENCH_DURATION or 5s.
func benchDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("OUTRIGGER_BENCH_DURATION")); err == nil && d > 0 {
		return d
	}
	return 5 * time.Second
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(b *testing.B, name string, r loadResult) {
	b.ReportMetric(r.perSecond(), name+"_pairs/s")
	b.ReportMetric(ms(r.percentile(0.50)), name+"_p50_ms")
	b.ReportMetric(ms(r.percentile(0.99)), name+"_p99_ms")
	if r.errors > 0 {
		b.Errorf("%s: %d errors, the first: %v", name, r.errors, r.firstErr)
	}
}
