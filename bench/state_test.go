package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/redis/go-redis/v9"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

const workers = 16

// BenchmarkStateSaveGet measures save+get pairs from 16 concurrent clients: go-redis
// SET+GET directly on Redis (the baseline), then the same through the sidecar over HTTP
// and over gRPC (the official Dapr Go SDK), all in one run; it reports each
// throughput, the sidecar's share of the baseline, latencies of a pair, and the
// sidecar's resident memory idle (once it has given back its start-up memory) and
// under load. The same clients then drive the null sidecar (ceiling_test.go), which
// does nothing: its share of the baseline, *_ceiling_ratio, is the most any sidecar
// on these transports reaches on this machine. Run with -benchtime=1x.
func BenchmarkStateSaveGet(b *testing.B) {
	testproc.RequireServer(b, "Redis", "127.0.0.1:6379")
	ctx := context.Background()
	d := benchDuration()
	value := []byte(`{"orderId":12345,"item":"widget","quantity":3}`)

	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", PoolSize: workers})
	defer rdb.Close()

	s := testproc.Start(b, "bench", testproc.WriteResources(b, map[string]string{"statestore.yaml": testproc.RedisStateStore}), nil)
	s.WaitHealthy(b)
	s.WaitOutput(b, testproc.MemoryReleased)
	idle, err := testproc.ProcStatus(s.Cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	nullHTTP, nullGRPC := startNullSidecar(b)

	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers}}
	sdk := sdkClient(b, fmt.Sprintf("127.0.0.1:%d", s.GRPCPort))
	nullSDK := sdkClient(b, nullGRPC)
	// overHTTP and overGRPC are the same save+get pairs, against any server.
	overHTTP := func(base, prefix string) func(ctx context.Context, w, i int) error {
		return func(ctx context.Context, w, i int) error {
			key := prefix + strconv.Itoa(w) + "-" + strconv.Itoa(i%100)
			body := append(append([]byte(`[{"key":"`+key+`","value":`), value...), []byte(`}]`)...)
			if err := call(ctx, httpClient, http.MethodPost, base, body, http.StatusNoContent); err != nil {
				return err
			}
			return call(ctx, httpClient, http.MethodGet, base+"/"+key, nil, http.StatusOK)
		}
	}
	overGRPC := func(c dapr.Client, prefix string) func(ctx context.Context, w, i int) error {
		return func(ctx context.Context, w, i int) error {
			key := prefix + strconv.Itoa(w) + "-" + strconv.Itoa(i%100)
			if err := c.SaveState(ctx, "statestore", key, value, nil); err != nil {
				return err
			}
			_, err := c.GetState(ctx, "statestore", key, nil)
			return err
		}
	}

	for i := 0; i < b.N; i++ {
		direct := runLoad(ctx, workers, d, func(ctx context.Context, w, i int) error {
			key := "bench-direct-" + strconv.Itoa(w) + "-" + strconv.Itoa(i%100)
			if err := rdb.Set(ctx, key, value, 0).Err(); err != nil {
				return err
			}
			return rdb.Get(ctx, key).Err()
		})

		var load map[string]int64
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			time.Sleep(d / 2)
			load, _ = testproc.ProcStatus(s.Cmd.Process.Pid)
		}()
		viaHTTP := runLoad(ctx, workers, d, overHTTP(s.URL("/v1.0/state/statestore"), "bench-http-"))
		<-sampled
		viaGRPC := runLoad(ctx, workers, d, overGRPC(sdk, "bench-grpc-"))
		nullViaHTTP := runLoad(ctx, workers, d, overHTTP("http://"+nullHTTP+"/v1.0/state/statestore", "bench-null-"))
		nullViaGRPC := runLoad(ctx, workers, d, overGRPC(nullSDK, "bench-null-"))

		report(b, "direct", direct)
		report(b, "http", viaHTTP)
		report(b, "grpc", viaGRPC)
		b.ReportMetric(viaHTTP.perSecond()/direct.perSecond(), "http_ratio")
		b.ReportMetric(viaGRPC.perSecond()/direct.perSecond(), "grpc_ratio")
		// The ceiling: the same clients against a server that does nothing.
		report(b, "null_http", nullViaHTTP)
		report(b, "null_grpc", nullViaGRPC)
		b.ReportMetric(nullViaHTTP.perSecond()/direct.perSecond(), "http_ceiling_ratio")
		b.ReportMetric(nullViaGRPC.perSecond()/direct.perSecond(), "grpc_ceiling_ratio")
		b.ReportMetric(float64(idle["VmRSS"])/1024, "idle_rss_MB")
		b.ReportMetric(float64(idle["RssAnon"])/1024, "idle_anon_MB")
		b.ReportMetric(float64(load["VmRSS"])/1024, "load_rss_MB")
	}
}

// sdkClient connects the Dapr Go SDK to addr, closed when the benchmark ends.
func sdkClient(b *testing.B, addr string) dapr.Client {
	c, err := dapr.NewClientWithAddress(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

func call(ctx context.Context, c *http.Client, method, url string, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d", method, url, resp.StatusCode)
	}
	return nil
}

// BenchmarkStartupToHealthy measures process start to the first 204 from
// /v1.0/healthz/outbound, over 20 starts with the embedded state store, and reports the
// median and the slowest.
func BenchmarkStartupToHealthy(b *testing.B) {
	sqlite := `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: %q
`
	testproc.Binary(b) // build outside the timing
	for i := 0; i < b.N; i++ {
		var times []time.Duration
		for j := 0; j < 20; j++ {
			dir := b.TempDir()
			res := testproc.WriteResources(b, map[string]string{"s.yaml": fmt.Sprintf(sqlite, dir+"/state.db")})
			s := testproc.Start(b, "startup", res, nil)
			times = append(times, s.WaitHealthy(b))
			_ = s.Cmd.Process.Kill()
			<-s.Done()
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		b.ReportMetric(ms(times[len(times)/2]), "p50_ms")
		b.ReportMetric(ms(times[len(times)-1]), "max_ms")
	}
}
