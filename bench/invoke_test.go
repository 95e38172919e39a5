package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

const (
	invokeRate  = 1000 // requests a second, scheduled whatever the answers' pace
	invokeConns = 16
	invokeBody  = 1024
	// invokeRounds is how many times each load runs, alternating, within its duration.
	invokeRounds = 5
)

// merge adds o's calls to r, keeping the latencies sorted.
func (r loadResult) merge(o loadResult) loadResult {
	r.ops += o.ops
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.latencies = append(r.latencies, o.latencies...)
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	return r
}

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

// envAppB makes the test binary serve as app B instead of running tests (TestMain).
const envAppB = "OUTRIGGER_BENCH_APP_B"

// TestMain lets the benchmarks run their peers as processes of their own: the test
// binary, started again with envAppB set, is app B, which answers POST /echo with 1 KB
// and prints its address; with envNullSidecar set it is the null sidecar
// (ceiling_test.go).
func TestMain(m *testing.M) {
	if os.Getenv(envNullSidecar) != "" {
		if err := serveNullSidecar(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if target := os.Getenv(envNullProxy); target != "" {
		if err := serveNullProxy(target); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if os.Getenv(envAppB) == "" {
		os.Exit(m.Run())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	answer := bytes.Repeat([]byte("b"), invokeBody)
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(answer)
	}))
}

// startAppB runs app B as its own process and returns its address.
func startAppB(b *testing.B) string { return startPeer(b, envAppB) }

// startPeer runs this test binary again as a process of its own with env set to 1
// and extraEnv (TestMain), and returns the first line it prints.
func startPeer(b *testing.B, env string, extraEnv ...string) string {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), env+"=1"), extraEnv...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case l := <-line:
		if l == "" {
			b.Fatalf("%s: the process printed nothing", env)
		}
		return l
	case <-time.After(30 * time.Second):
		b.Fatalf("%s: the process did not start", env)
		return ""
	}
}

// BenchmarkInvoke measures app A calling app B's POST /echo with a 1 KB body (and a
// 1 KB answer) at a fixed 1,000 requests a second over 16 connections: directly (the
// baseline; app B runs as a separate process), then through A's sidecar and B's sidecar (HTTP in, the internal gRPC
// stream between the sidecars, HTTP to B), both in one run. It reports p50, p90 and
// p99 of each and the latency the sidecars add at each percentile. A third load goes
// through two null proxies (net/http reverse proxies, each a process) in the sidecars'
// places: null_added_* is the least two hops can add on this machine. Run with
// -benchtime=1x; OUTRIGGER_BENCH_DURATION sets each phase's length (5s).
func BenchmarkInvoke(b *testing.B) {
	ctx := context.Background()
	d := benchDuration()
	// App A is this process; app B is a process of its own, as apps are.
	appB := "http://" + startAppB(b)
	u, _ := url.Parse(appB)

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
	directOp := post(appB + "/echo")
	sidecarOp := post(sidecarA.URL("/v1.0/invoke/b/method/echo"))
	// The floor: two reverse proxies that do nothing else, each a process, in the
	// sidecars' places.
	proxyB := startPeer(b, envNullProxy, envNullProxy+"="+appB)
	proxyA := startPeer(b, envNullProxy, envNullProxy+"=http://"+proxyB)
	proxiesOp := post("http://" + proxyA + "/echo")

	// Warm both paths up: connections, the sidecars' gRPC connection, the runtimes.
	warm := time.Second
	openLoad(ctx, invokeRate, invokeConns, warm, directOp)
	openLoad(ctx, invokeRate, invokeConns, warm, sidecarOp)
	openLoad(ctx, invokeRate, invokeConns, warm, proxiesOp)

	for i := 0; i < b.N; i++ {
		// The two loads alternate in rounds, so that a slow spell of the machine falls
		// on both rather than on one.
		var direct, via, proxies loadResult
		for r := 0; r < invokeRounds; r++ {
			direct = direct.merge(openLoad(ctx, invokeRate, invokeConns, d/invokeRounds, directOp))
			via = via.merge(openLoad(ctx, invokeRate, invokeConns, d/invokeRounds, sidecarOp))
			proxies = proxies.merge(openLoad(ctx, invokeRate, invokeConns, d/invokeRounds, proxiesOp))
		}
		for _, r := range []struct {
			name string
			res  loadResult
		}{{"direct", direct}, {"sidecars", via}, {"null_proxies", proxies}} {
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
			b.ReportMetric(ms(proxies.percentile(p.q)-direct.percentile(p.q)), "null_added_"+p.name+"_ms")
		}
	}
}
