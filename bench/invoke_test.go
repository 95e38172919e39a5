package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

const (
	invokeRate  = 1000 // requests a second, scheduled whatever the answers' pace
	invokeConns = 16
	invokeBody  = 1024
)

// openLoad sends rate requests a second for d from a fixed schedule, over conns
// workers (one connection each), and measures each latency from the time the request
// was scheduled, not sent: a slow answer delays the requests queued behind it, and that
// delay counts, as it would for the callers (no coordinated omission).
func openLoad(ctx context.Context, rate, conns int, d time.Duration, op func(ctx context.Context) error) loadResult {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	jobs := make(chan time.Time, n)
	var mu sync.Mutex
	res := loadResult{latencies: make([]time.Duration, 0, n)}
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range jobs {
				err := op(ctx)
				lat := time.Since(at)
				mu.Lock()
				if err != nil {
					res.errors++
				} else {
					res.latencies = append(res.latencies, lat)
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		jobs <- at
	}
	close(jobs)
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ops = len(res.latencies)
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	return res
}

// BenchmarkInvoke measures app A calling app B's POST /echo with a 1 KB body (and a
// 1 KB answer) at a fixed 1,000 requests a second over 16 connections: directly (the
// baseline), then through A's sidecar and B's sidecar (HTTP in, the internal gRPC
// stream between the sidecars, HTTP to B), both in one run. It reports p50, p90 and
// p99 of each and the latency the sidecars add at each percentile. Run with
// -benchtime=1x; OUTRIGGER_BENCH_DURATION sets each phase's length (5s).
func BenchmarkInvoke(b *testing.B) {
	ctx := context.Background()
	d := benchDuration()
	answer := bytes.Repeat([]byte("b"), invokeBody)
	appB := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(answer)
	}))
	defer appB.Close()
	u, _ := url.Parse(appB.URL)

	env := []string{"OUTRIGGER_REGISTRY_DIR=" + b.TempDir()}
	sidecarB := testproc.Start(b, "b", testproc.WriteResources(b, nil), env, "--app-port", u.Port())
	sidecarA := testproc.Start(b, "a", testproc.WriteResources(b, nil), env)
	sidecarB.WaitHealthy(b)
	sidecarA.WaitHealthy(b)

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: invokeConns, MaxIdleConnsPerHost: invokeConns}}
	body := bytes.Repeat([]byte("a"), invokeBody)
	post := func(url string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n != invokeBody {
				return fmt.Errorf("POST %s: %d, %d bytes", url, resp.StatusCode, n)
			}
			return nil
		}
	}
	directOp := post(appB.URL + "/echo")
	sidecarOp := post(sidecarA.URL("/v1.0/invoke/b/method/echo"))

	// Warm both paths up: connections, the sidecars' gRPC connection, the runtimes.
	warm := time.Second
	openLoad(ctx, invokeRate, invokeConns, warm, directOp)
	openLoad(ctx, invokeRate, invokeConns, warm, sidecarOp)

	for i := 0; i < b.N; i++ {
		direct := openLoad(ctx, invokeRate, invokeConns, d, directOp)
		via := openLoad(ctx, invokeRate, invokeConns, d, sidecarOp)
		for _, r := range []struct {
			name string
			res  loadResult
		}{{"direct", direct}, {"sidecars", via}} {
			b.ReportMetric(ms(r.res.percentile(0.50)), r.name+"_p50_ms")
			b.ReportMetric(ms(r.res.percentile(0.90)), r.name+"_p90_ms")
			b.ReportMetric(ms(r.res.percentile(0.99)), r.name+"_p99_ms")
			b.ReportMetric(r.res.perSecond(), r.name+"_req/s")
			if r.res.errors > 0 {
				b.Errorf("%s: %d errors", r.name, r.res.errors)
			}
		}
		for _, p := range []struct {
			name string
			q    float64
		}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}} {
			b.ReportMetric(ms(via.percentile(p.q)-direct.percentile(p.q)), "added_"+p.name+"_ms")
		}
	}
}
