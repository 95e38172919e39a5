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
// sidecar's resident memory idle and under load. Run with -benchtime=1x.
func BenchmarkStateSaveGet(b *testing.B) {
	testproc.RequireServer(b, "Redis", "127.0.0.1:6379")
	ctx := context.Background()
	d := benchDuration()
	value := []byte(`{"orderId":12345,"item":"widget","quantity":3}`)

	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", PoolSize: workers})
	defer rdb.Close()

	s := testproc.Start(b, "bench", testproc.WriteResources(b, map[string]string{"statestore.yaml": testproc.RedisStateStore}), nil)
	s.WaitHealthy(b)
	time.Sleep(time.Second) // let the idle process settle before reading its memory
	idle, err := rssBytes(s.Cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}

	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers}}
	saveURL := s.URL("/v1.0/state/statestore")
	sdk, err := dapr.NewClientWithAddress(fmt.Sprintf("127.0.0.1:%d", s.GRPCPort))
	if err != nil {
		b.Fatal(err)
	}
	defer sdk.Close()

	for i := 0; i < b.N; i++ {
		direct := runLoad(ctx, workers, d, func(ctx context.Context, w, i int) error {
			key := "bench-direct-" + strconv.Itoa(w) + "-" + strconv.Itoa(i%100)
			if err := rdb.Set(ctx, key, value, 0).Err(); err != nil {
				return err
			}
			return rdb.Get(ctx, key).Err()
		})

		var loadRSS int64
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			time.Sleep(d / 2)
			loadRSS, _ = rssBytes(s.Cmd.Process.Pid)
		}()
		viaHTTP := runLoad(ctx, workers, d, func(ctx context.Context, w, i int) error {
			key := "bench-http-" + strconv.Itoa(w) + "-" + strconv.Itoa(i%100)
			body := append(append([]byte(`[{"key":"`+key+`","value":`), value...), []byte(`}]`)...)
			if err := call(ctx, httpClient, http.MethodPost, saveURL, body, http.StatusNoContent); err != nil {
				return err
			}
			return call(ctx, httpClient, http.MethodGet, saveURL+"/"+key, nil, http.StatusOK)
		})
		<-sampled

		viaGRPC := runLoad(ctx, workers, d, func(ctx context.Context, w, i int) error {
			key := "bench-grpc-" + strconv.Itoa(w) + "-" + strconv.Itoa(i%100)
			if err := sdk.SaveState(ctx, "statestore", key, value, nil); err != nil {
				return err
			}
			_, err := sdk.GetState(ctx, "statestore", key, nil)
			return err
		})

		report(b, "direct", direct)
		report(b, "http", viaHTTP)
		report(b, "grpc", viaGRPC)
		b.ReportMetric(viaHTTP.perSecond()/direct.perSecond(), "http_ratio")
		b.ReportMetric(viaGRPC.perSecond()/direct.perSecond(), "grpc_ratio")
		b.ReportMetric(float64(idle)/(1<<20), "idle_rss_MB")
		b.ReportMetric(float64(loadRSS)/(1<<20), "load_rss_MB")
	}
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
