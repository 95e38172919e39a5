package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// loadResult is one measured run of a closed-loop load.
type loadResult struct {
	ops       int
	errors    int
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
					if ctx.Err() == nil {
						errs++
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

// rssBytes reads a process's resident set size from /proc.
func rssBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(b *testing.B, name string, r loadResult) {
	b.ReportMetric(r.perSecond(), name+"_pairs/s")
	b.ReportMetric(ms(r.percentile(0.50)), name+"_p50_ms")
	b.ReportMetric(ms(r.percentile(0.99)), name+"_p99_ms")
	if r.errors > 0 {
		b.Errorf("%s: %d errors", name, r.errors)
	}
}
