// Package soak pushes many messages through the pub/sub building block on real brokers
// and checks that none is lost: one publisher sidecar, and two subscriber sidecars with
// the same app id (replicas, which share the work as competing consumers of one group),
// each in front of an app of its own that counts what it receives.
//
// OUTRIGGER_SOAK_MESSAGES sets the number of messages per broker (100000, or 10000
// with -short), and OUTRIGGER_SOAK_TIMEOUT the bound on each broker's run (4m, and
// never past the test binary's -timeout, so that a run that stalls still reports what
// is missing).
package soak

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
	redisAddr = "127.0.0.1:6379"
	natsURL   = "nats://127.0.0.1:4222"

	// publishers is how many goroutines publish at once, each on a kept-alive
	// connection of its own.
	publishers = 32
	// maxPublishFailures stops publishing early: past it the run says nothing more.
	maxPublishFailures = 100
	subscriberAppID    = "soak-sub"
	pubsubName         = "pubsub"
	route              = "/deliver"
)

// broker is one pub/sub component the soak runs against.
type broker struct {
	name, server, addr string
	manifest           string
	// pending reports what the group has delivered but not had acknowledged yet, for
	// the report; cleanup removes what the run left on the shared server.
	pending func(ctx context.Context, topic string) (int64, error)
	cleanup func(ctx context.Context, topic string) error
}

func brokers() []broker {
	return []broker{
		{
			name: "redis", server: "Redis", addr: redisAddr,
			manifest: `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: ` + redisAddr + `
`,
			pending: func(ctx context.Context, topic string) (int64, error) {
				rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
				defer rdb.Close()
				p, err := rdb.XPending(ctx, topic, subscriberAppID).Result()
				if err != nil {
					return 0, err
				}
				return p.Count, nil
			},
			// The topic is the stream's key; deleting it removes the group too.
			cleanup: func(ctx context.Context, topic string) error {
				rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
				defer rdb.Close()
				return rdb.Del(ctx, topic).Err()
			},
		},
		{
			name: "jetstream", server: "NATS JetStream", addr: "127.0.0.1:4222",
			manifest: `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.jetstream
  version: v1
  metadata:
  - name: natsURL
    value: ` + natsURL + `
`,
			pending: func(ctx context.Context, topic string) (int64, error) {
				return withStream(ctx, topic, func(s jetstream.Stream) (int64, error) {
					var n int64
					for info := range s.ListConsumers(ctx).Info() {
						n += int64(info.NumAckPending) + int64(info.NumPending)
					}
					return n, nil
				})
			},
			// The sidecars created a stream for the topic (outrigger-<topic>);
			// deleting it removes the consumers too.
			cleanup: func(ctx context.Context, topic string) error {
				_, err := withStream(ctx, topic, func(s jetstream.Stream) (int64, error) {
					nc, err := nats.Connect(natsURL)
					if err != nil {
						return 0, err
					}
					defer nc.Close()
					js, err := jetstream.New(nc)
					if err != nil {
						return 0, err
					}
					return 0, js.DeleteStream(ctx, s.CachedInfo().Config.Name)
				})
				return err
			},
		},
	}
}

// withStream runs f on the stream that holds topic; none is no error.
func withStream(ctx context.Context, topic string, f func(jetstream.Stream) (int64, error)) (int64, error) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	name, err := js.StreamNameBySubject(ctx, topic)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, nil
		}
		return 0, err
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	return f(s)
}

func TestSoakPubsub(t *testing.T) {
	def := 100000
	if testing.Short() {
		def = 10000
	}
	n := envInt(t, "OUTRIGGER_SOAK_MESSAGES", def)
	timeout := envDuration(t, "OUTRIGGER_SOAK_TIMEOUT", 4*time.Minute)
	for _, b := range brokers() {
		t.Run(b.name, func(t *testing.T) {
			testproc.RequireServer(t, b.server, b.addr)
			soak(t, b, n, timeout)
		})
	}
}

// soak runs one broker: subscribers up and subscribed, n messages published, then a
// wait until every acknowledged one arrived at least once.
func soak(t *testing.T, b broker, n int, timeout time.Duration) {
	testproc.Binary(t) // built outside the budget
	deadline := time.Now().Add(timeout)
	if d, ok := t.Deadline(); ok && d.Add(-20*time.Second).Before(deadline) {
		deadline = d.Add(-20 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	topic := "soak-" + b.name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)

	// Registered before the sidecars start, so it runs after they stopped: a
	// subscriber still running would create the stream again.
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if err := b.cleanup(cctx, topic); err != nil {
			t.Errorf("remove topic %s from %s: %v", topic, b.server, err)
		}
	})

	tl := newTally(n)
	env := []string{"OUTRIGGER_REGISTRY_DIR=" + t.TempDir()}
	var subs [2]*testproc.Sidecar
	for i := range subs {
		app := subscriberApp(t, topic, i, tl)
		port := strconv.Itoa(app.Listener.Addr().(*net.TCPAddr).Port)
		subs[i] = testproc.Start(t, subscriberAppID, testproc.WriteResources(t, map[string]string{"pubsub.yaml": b.manifest}), env, "--app-port", port)
	}
	pub := testproc.Start(t, "soak-pub", testproc.WriteResources(t, map[string]string{"pubsub.yaml": b.manifest}), env)
	for _, s := range append(subs[:], pub) {
		s.WaitHealthy(t)
	}
	for _, s := range subs {
		s.WaitSubscribed(t, pubsubName, topic)
	}

	start := time.Now()
	pr := publish(ctx, pub.URL("/v1.0/publish/"+pubsubName+"/"+topic), n)
	publishElapsed := time.Since(start)
	if pr.failures > 0 {
		t.Errorf("%d of %d publishes failed; the first: %s", pr.failures, n, strings.Join(pr.firstFailures, "; "))
	}
	if pr.acked == 0 {
		t.Fatalf("no publish was acknowledged (%v)", ctx.Err())
	}

	missing := waitDelivered(ctx, t, tl, pr.ackedSeqs, start)
	elapsed := time.Since(start)
	deliveryElapsed := time.Duration(max(tl.lastNew.Load()-start.UnixNano(), 1))

	distinct, dups := tl.distinct.Load(), tl.dups.Load()
	r0, r1 := tl.perReplica[0].Load(), tl.perReplica[1].Load()
	t.Logf("%s: published %d (acknowledged %d, failed %d) in %s, %.0f msgs/s",
		b.name, pr.attempted, pr.acked, pr.failures, publishElapsed.Round(time.Millisecond), float64(pr.acked)/publishElapsed.Seconds())
	t.Logf("%s: delivered %d distinct, %d duplicates, replicas %d / %d deliveries, in %s, %.0f msgs/s; elapsed %s",
		b.name, distinct, dups, r0, r1, deliveryElapsed.Round(time.Millisecond), float64(distinct)/deliveryElapsed.Seconds(), elapsed.Round(time.Millisecond))

	if bad := tl.bad.Load(); bad > 0 {
		t.Errorf("%d deliveries held no sequence number of this run; the first: %s", bad, tl.firstBad())
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged messages were not delivered within %s; some: %v", len(missing), elapsed.Round(time.Second), missing[:min(len(missing), 20)])
	}
	if r0 == 0 || r1 == 0 {
		t.Errorf("one replica got nothing (%d / %d): the replicas do not share the group's work", r0, r1)
	}
	// What the group still holds: acknowledgements follow the app's answers, so allow
	// them a moment.
	if len(missing) == 0 {
		var left int64
		for deadline := time.Now().Add(10 * time.Second); ; {
			var err error
			if left, err = b.pending(ctx, topic); err != nil {
				t.Logf("%s: reading the pending count: %v", b.name, err)
				break
			}
			if left == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if left > 0 {
			t.Errorf("%s: %d messages still pending (delivered but not acknowledged) 10s after the last delivery", b.name, left)
		}
	}
}

// tally counts the deliveries of each sequence number.
type tally struct {
	counts     []atomic.Uint32
	distinct   atomic.Int64
	dups       atomic.Int64
	perReplica [2]atomic.Int64
	bad        atomic.Int64
	lastNew    atomic.Int64 // UnixNano of the latest first delivery

	mu       sync.Mutex
	badFirst string
	newOne   chan struct{}
}

func newTally(n int) *tally {
	return &tally{counts: make([]atomic.Uint32, n), newOne: make(chan struct{}, 1)}
}

func (t *tally) record(replica int, body []byte) {
	t.perReplica[replica].Add(1)
	seq, ok := seqOf(body)
	if !ok || seq >= len(t.counts) {
		t.bad.Add(1)
		t.mu.Lock()
		if t.badFirst == "" {
			t.badFirst = string(body[:min(len(body), 300)])
		}
		t.mu.Unlock()
		return
	}
	if t.counts[seq].Add(1) > 1 {
		t.dups.Add(1)
		return
	}
	t.distinct.Add(1)
	t.lastNew.Store(time.Now().UnixNano())
	select {
	case t.newOne <- struct{}{}:
	default:
	}
}

// seqOf finds the sequence number in a delivered CloudEvent, whose data is the
// published {"seq":N,"pad":"xx..."} (re-encoded by the sidecar, as by Dapr, with its
// keys sorted). It scans rather than decodes, as decoding 100,000 envelopes under the
// race detector would make the app the bottleneck of the run.
func seqOf(body []byte) (int, bool) {
	const key = `"seq":`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := body[i+len(key):]
	end := bytes.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end <= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:end]))
	return n, err == nil
}

func (t *tally) firstBad() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.badFirst
}

// subscriberApp is one replica's app: it subscribes to topic programmatically and
// counts each delivery.
func subscriberApp(t *testing.T, topic string, replica int, tl *tally) *httptest.Server {
	subscribe, _ := json.Marshal([]map[string]string{{"pubsubname": pubsubName, "topic": topic, "route": route}})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/dapr/subscribe":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(subscribe)
		case route:
			body, err := io.ReadAll(r.Body)
			if err != nil {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			tl.record(replica, body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"SUCCESS"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(app.Close)
	return app
}

// publishResult is what the publishers saw.
type publishResult struct {
	attempted, acked, failures int
	ackedSeqs                  []bool
	firstFailures              []string
}

// publish posts the sequence numbers 0..n-1 from publishers goroutines and records
// which the sidecar acknowledged (204).
func publish(ctx context.Context, url string, n int) publishResult {
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: publishers, MaxIdleConnsPerHost: publishers, MaxConnsPerHost: publishers},
	}
	defer client.CloseIdleConnections()
	res := publishResult{ackedSeqs: make([]bool, n)}
	var (
		next     atomic.Int64
		attempts atomic.Int64
		failures atomic.Int64
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	pad := strings.Repeat("x", 64)
	fail := func(msg string) {
		failures.Add(1)
		mu.Lock()
		if len(res.firstFailures) < 5 {
			res.firstFailures = append(res.firstFailures, msg)
		}
		mu.Unlock()
	}
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && failures.Load() < maxPublishFailures {
				seq := int(next.Add(1) - 1)
				if seq >= n {
					return
				}
				attempts.Add(1)
				body := fmt.Appendf(nil, `{"seq":%d,"pad":%q}`, seq, pad)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				if err != nil {
					fail(err.Error())
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					fail(fmt.Sprintf("seq %d: %v", seq, err))
					continue
				}
				out, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					fail(fmt.Sprintf("seq %d: %d %s", seq, resp.StatusCode, out))
					continue
				}
				// Each index is written by one goroutine and read after Wait.
				res.ackedSeqs[seq] = true
			}
		}()
	}
	wg.Wait()
	res.attempted, res.failures = int(attempts.Load()), int(failures.Load())
	for _, ok := range res.ackedSeqs {
		if ok {
			res.acked++
		}
	}
	return res
}

// waitDelivered waits until every acknowledged sequence number was delivered, or ctx
// ends, logging progress now and then; it returns the ones still missing.
func waitDelivered(ctx context.Context, t *testing.T, tl *tally, acked []bool, start time.Time) []int {
	missing := func() []int {
		var out []int
		for seq, ok := range acked {
			if ok && tl.counts[seq].Load() == 0 {
				out = append(out, seq)
			}
		}
		return out
	}
	lastLog := time.Now()
	for {
		m := missing()
		if len(m) == 0 {
			return nil
		}
		if time.Since(lastLog) >= 15*time.Second {
			lastLog = time.Now()
			t.Logf("after %s: %d delivered, %d acknowledged still missing", time.Since(start).Round(time.Second), tl.distinct.Load(), len(m))
		}
		select {
		case <-ctx.Done():
			return m
		case <-tl.newOne:
			// Wait for a burst of deliveries rather than scanning after each one.
			time.Sleep(50 * time.Millisecond)
		case <-time.After(time.Second):
		}
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 5m", name, v)
	}
	return d
}
