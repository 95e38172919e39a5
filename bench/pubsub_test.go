package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

const (
	// pubsubRounds is how many rounds of each path run, alternating, so that a slow
	// spell of the machine falls on both.
	pubsubRounds = 3
	// pubsubBody is the size of the app's payload, the same on both paths (the
	// sidecar adds its CloudEvent envelope around it).
	pubsubBody       = 1024
	pubsubPublishers = 16
	pubsubRoute      = "/deliver"
	pubsubAppID      = "bench-sub"
)

// pubsubMessages is the number of messages of one round: OUTRIGGER_BENCH_PUBSUB_MESSAGES
// or 5000.
func pubsubMessages() int {
	if n, err := strconv.Atoi(os.Getenv("OUTRIGGER_BENCH_PUBSUB_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 5000
}

// pubsubRate is the pace of the latency rounds: OUTRIGGER_BENCH_PUBSUB_RATE messages a
// second, or 1000, below what both paths sustain on the 2-core machine.
func pubsubRate() int {
	if n, err := strconv.Atoi(os.Getenv("OUTRIGGER_BENCH_PUBSUB_RATE")); err == nil && n > 0 {
		return n
	}
	return 1000
}

// pubsubPayload is what a publisher sends: the publish time, for the receiver to
// measure the latency, and a sequence number, padded to pubsubBody bytes.
type pubsubPayload struct {
	TS  int64  `json:"ts"`
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

func pubsubBodyOf(seq int, at time.Time) []byte {
	head, _ := json.Marshal(pubsubPayload{TS: at.UnixNano(), Seq: seq})
	// head ends with `"pad":""}`; fill the pad so that the body is pubsubBody bytes.
	pad := strings.Repeat("p", max(pubsubBody-len(head), 0))
	return append(head[:len(head)-2:len(head)-2], append([]byte(pad), '"', '}')...)
}

// collector gathers one path's deliveries round by round: the end-to-end latency of
// each message's first delivery, and when the round's last message arrived.
type collector struct {
	mu         sync.Mutex
	base, want int
	seen       map[int]bool
	latencies  []time.Duration
	last       time.Time
	dups, bad  int
	done       chan struct{}
}

func newCollector() *collector { return &collector{done: make(chan struct{})} }

// expect starts a round of the sequence numbers base..base+want-1.
func (c *collector) expect(base, want int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.want = base, want
	c.seen = make(map[int]bool, want)
	c.latencies = make([]time.Duration, 0, want)
	c.done = make(chan struct{})
}

// got records a delivery of a payload (JSON of pubsubPayload) at now.
func (c *collector) got(now time.Time, payload []byte) {
	var p pubsubPayload
	if err := json.Unmarshal(payload, &p); err != nil || p.TS == 0 {
		c.mu.Lock()
		c.bad++
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.Seq < c.base || p.Seq >= c.base+c.want || c.seen[p.Seq] {
		// A message of an earlier round, delivered again.
		c.dups++
		return
	}
	c.seen[p.Seq] = true
	c.latencies = append(c.latencies, now.Sub(time.Unix(0, p.TS)))
	c.last = now
	if len(c.seen) == c.want {
		close(c.done)
	}
}

// pubsubPath is one way from the publishing app to the subscribing app.
type pubsubPath struct {
	name    string
	publish func(ctx context.Context, body []byte) error
	recv    *collector
}

// round publishes n messages from pubsubPublishers goroutines and waits until each has
// arrived; throughput is n over the time from the first publish to the last arrival.
// With rate 0 the publishers go as fast as the path lets them (a closed loop); else
// they follow a fixed schedule of rate messages a second, and each message carries
// the time it was scheduled, not sent, so that a publish held up by a slow one before
// it counts its wait (no coordinated omission).
func (p *pubsubPath) round(ctx context.Context, base, n, rate int) (loadResult, error) {
	p.recv.expect(base, n)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var failed atomic.Int64
	var firstErr atomic.Value
	jobs := make(chan time.Time, pubsubPublishers)
	var wg sync.WaitGroup
	var next atomic.Int64
	start := time.Now()
	for range pubsubPublishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range jobs {
				i := int(next.Add(1) - 1)
				if ctx.Err() != nil {
					continue
				}
				if rate == 0 {
					at = time.Now()
				}
				if err := p.publish(ctx, pubsubBodyOf(base+i, at)); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		var at time.Time
		if rate > 0 {
			at = start.Add(time.Duration(i) * time.Second / time.Duration(rate))
			if wait := time.Until(at); wait > 0 {
				time.Sleep(wait)
			}
		}
		jobs <- at
	}
	close(jobs)
	wg.Wait()
	res := loadResult{errors: int(failed.Load())}
	if res.errors > 0 {
		return res, fmt.Errorf("%s: %d publishes failed, the first: %v", p.name, res.errors, firstErr.Load())
	}
	select {
	case <-p.recv.done:
	case <-ctx.Done():
	}
	p.recv.mu.Lock()
	defer p.recv.mu.Unlock()
	res.ops = len(p.recv.latencies)
	res.latencies = append([]time.Duration(nil), p.recv.latencies...)
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	res.elapsed = p.recv.last.Sub(start)
	if res.ops < n {
		return res, fmt.Errorf("%s: %d of %d messages arrived within the deadline", p.name, res.ops, n)
	}
	return res, nil
}

// subscriberApp is the subscribing app behind the sidecar: it subscribes to topic and
// hands each delivery's data to recv.
func pubsubSubscriberApp(b *testing.B, topic string, recv *collector) int {
	subscribe, _ := json.Marshal([]map[string]string{{"pubsubname": "pubsub", "topic": topic, "route": pubsubRoute}})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/dapr/subscribe":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(subscribe)
		case pubsubRoute:
			body, _ := io.ReadAll(r.Body)
			now := time.Now()
			var ev struct {
				Data json.RawMessage `json:"data"`
			}
			_ = json.Unmarshal(body, &ev)
			recv.got(now, ev.Data)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"SUCCESS"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	b.Cleanup(app.Close)
	return app.Listener.Addr().(*net.TCPAddr).Port
}

// sidecarPath starts a publisher sidecar (no app) and a subscriber sidecar in front of
// an app in this process, both with manifest, and publishes through the first one's
// HTTP API.
func sidecarPath(b *testing.B, manifest, topic string) *pubsubPath {
	recv := newCollector()
	port := pubsubSubscriberApp(b, topic, recv)
	env := []string{"OUTRIGGER_REGISTRY_DIR=" + b.TempDir()}
	sub := testproc.Start(b, pubsubAppID, testproc.WriteResources(b, map[string]string{"pubsub.yaml": manifest}), env, "--app-port", strconv.Itoa(port))
	pub := testproc.Start(b, "bench-pub", testproc.WriteResources(b, map[string]string{"pubsub.yaml": manifest}), env)
	sub.WaitHealthy(b)
	pub.WaitHealthy(b)
	sub.WaitSubscribed(b, "pubsub", topic)

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: pubsubPublishers, MaxIdleConnsPerHost: pubsubPublishers}}
	url := pub.URL("/v1.0/publish/pubsub/" + topic)
	return &pubsubPath{name: "sidecar", recv: recv, publish: func(ctx context.Context, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		out, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, out)
		}
		return nil
	}}
}

// runPubsub warms both paths up, then runs rounds of each path alternately, first as
// fast as they go and then at pubsubRate messages a second, and reports each path's
// throughput (from the first kind) and end-to-end latencies (from the second), and
// the sidecars' share of the direct throughput.
//
// Latencies are measured below saturation because at full speed the publishers
// outrun the subscriber and a message's latency is mostly its wait behind the rest of
// its round, which says more about the round's size than about the path.
func runPubsub(b *testing.B, direct, via *pubsubPath) {
	ctx := context.Background()
	n := pubsubMessages()
	rate := pubsubRate()
	seq := 0
	paths := []*pubsubPath{direct, via}
	for _, p := range paths {
		if _, err := p.round(ctx, seq, 500, 0); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
		seq += 500
	}
	// alternate runs the rounds of both paths in turn and returns each path's merged
	// results, direct first.
	alternate := func(rate int) [2]loadResult {
		var out [2]loadResult
		for r := 0; r < pubsubRounds; r++ {
			for i, p := range paths {
				res, err := p.round(ctx, seq, n, rate)
				seq += n
				if err != nil {
					b.Fatal(err)
				}
				out[i] = out[i].merge(res)
			}
		}
		return out
	}
	for i := 0; i < b.N; i++ {
		full := alternate(0)
		paced := alternate(rate)
		for j, name := range []string{"direct", "sidecar"} {
			b.ReportMetric(full[j].perSecond(), name+"_msgs/s")
			b.ReportMetric(ms(paced[j].percentile(0.50)), name+"_p50_ms")
			b.ReportMetric(ms(paced[j].percentile(0.99)), name+"_p99_ms")
		}
		b.ReportMetric(full[1].perSecond()/full[0].perSecond(), "throughput_ratio")
		b.ReportMetric(ms(paced[1].percentile(0.50)-paced[0].percentile(0.50)), "added_p50_ms")
		b.ReportMetric(ms(paced[1].percentile(0.99)-paced[0].percentile(0.99)), "added_p99_ms")
		for _, p := range paths {
			p.recv.mu.Lock()
			if p.recv.dups > 0 || p.recv.bad > 0 {
				b.Logf("%s: %d duplicate deliveries, %d unreadable", p.name, p.recv.dups, p.recv.bad)
			}
			p.recv.mu.Unlock()
		}
	}
}

func benchTopic(prefix string) string {
	return prefix + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// BenchmarkPubsub measures messages a second and end-to-end latency (publish call in
// the publishing app to arrival in the subscribing app) of 1 KB messages published by
// 16 concurrent publishers: through a publisher sidecar's HTTP API, the broker and a
// subscriber sidecar delivering over HTTP, against the same broker driven directly by
// its Go client in this process, in alternating rounds of 5,000 messages
// (OUTRIGGER_BENCH_PUBSUB_MESSAGES) in one run: throughput with the publishers going
// flat out, latencies at 1,000 messages a second (OUTRIGGER_BENCH_PUBSUB_RATE). Both
// apps run in this process, on both paths. Run with -benchtime=1x.
func BenchmarkPubsub(b *testing.B) {
	b.Run("redis", benchPubsubRedis)
	b.Run("jetstream", benchPubsubJetStream)
}

// benchPubsubRedis: the baseline publishes with XADD and consumes with one
// XREADGROUP loop of a consumer group, acknowledging each batch with one XACK.
func benchPubsubRedis(b *testing.B) {
	testproc.RequireServer(b, "Redis", "127.0.0.1:6379")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", PoolSize: pubsubPublishers + 2})
	b.Cleanup(func() { _ = rdb.Close() })
	directStream, viaTopic := benchTopic("bench-pubsub-direct"), benchTopic("bench-pubsub-sidecar")
	// Registered before the sidecars start, so that it runs after they stopped (and
	// before the client closes).
	b.Cleanup(func() {
		if err := rdb.Del(context.Background(), directStream, viaTopic).Err(); err != nil {
			b.Errorf("delete streams %s, %s: %v", directStream, viaTopic, err)
		}
	})

	const group = "bench"
	if err := rdb.XGroupCreateMkStream(ctx, directStream, group, "$").Err(); err != nil {
		b.Fatal(err)
	}
	direct := &pubsubPath{name: "direct", recv: newCollector(), publish: func(ctx context.Context, body []byte) error {
		return rdb.XAdd(ctx, &redis.XAddArgs{Stream: directStream, Values: []any{"data", body}}).Err()
	}}
	reader := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", PoolSize: 1})
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		defer reader.Close()
		for ctx.Err() == nil {
			streams, err := reader.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group: group, Consumer: "c1", Streams: []string{directStream, ">"}, Count: 100, Block: time.Second,
			}).Result()
			if err != nil {
				if !errors.Is(err, redis.Nil) && ctx.Err() == nil {
					b.Logf("XREADGROUP: %v", err)
					time.Sleep(10 * time.Millisecond)
				}
				continue
			}
			var ids []string
			for _, st := range streams {
				for _, m := range st.Messages {
					data, _ := m.Values["data"].(string)
					direct.recv.got(time.Now(), []byte(data))
					ids = append(ids, m.ID)
				}
			}
			if len(ids) > 0 {
				if err := rdb.XAck(ctx, directStream, group, ids...).Err(); err != nil && ctx.Err() == nil {
					b.Logf("XACK: %v", err)
				}
			}
		}
	}()
	defer func() { cancel(); <-consumed }()

	via := sidecarPath(b, `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:6379
`, viaTopic)
	runPubsub(b, direct, via)
}

// benchPubsubJetStream: the baseline publishes with the jetstream package (waiting for
// the server's ack) and consumes with a durable pull consumer, acknowledging each
// message.
func benchPubsubJetStream(b *testing.B) {
	testproc.RequireServer(b, "NATS JetStream", "127.0.0.1:4222")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	directSubject, viaTopic := benchTopic("bench-pubsub-direct"), benchTopic("bench-pubsub-sidecar")
	directStream := directSubject
	// Registered before the sidecars start, so that it runs after they stopped (and
	// before the connection closes); the sidecars made a stream for their topic.
	b.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if err := js.DeleteStream(cctx, directStream); err != nil {
			b.Errorf("delete stream %s: %v", directStream, err)
		}
		name, err := js.StreamNameBySubject(cctx, viaTopic)
		if err == nil {
			err = js.DeleteStream(cctx, name)
		}
		if err != nil {
			b.Errorf("delete the stream of topic %s: %v", viaTopic, err)
		}
	})

	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: directStream, Subjects: []string{directSubject}, Retention: jetstream.InterestPolicy})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	direct := &pubsubPath{name: "direct", recv: newCollector(), publish: func(ctx context.Context, body []byte) error {
		_, err := js.Publish(ctx, directSubject, body)
		return err
	}}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		direct.recv.got(time.Now(), msg.Data())
		_ = msg.Ack()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	via := sidecarPath(b, `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.jetstream
  version: v1
  metadata:
  - name: natsURL
    value: nats://127.0.0.1:4222
`, viaTopic)
	runPubsub(b, direct, via)
}
