package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub/conformance"
)

// sharedStreamEnv carries the shared-stream suite's stream name to the SIGKILL test's
// child process, which must use the same stream as its parent.
const sharedStreamEnv = "OUTRIGGER_TEST_JETSTREAM_STREAM"

// ackWait is short so that redelivery after a failure or a killed consumer takes
// seconds.
const ackWait = 2 * time.Second

// requireNATS returns the test server's URL, skipping (failing under CI) when it is
// unreachable.
func requireNATS(t *testing.T) string {
	t.Helper()
	raw := os.Getenv("OUTRIGGER_TEST_NATS")
	if raw == "" {
		raw = "nats://127.0.0.1:4222"
	}
	addr := raw
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		addr = u.Host
	}
	testproc.RequireServer(t, "NATS", addr)
	return raw
}

// admin is a JetStream client of the test's own, for inspecting and cleaning up.
func admin(t *testing.T, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", natsURL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// topics records every topic a test's instances touch, so that the streams created
// for them can be deleted.
type topics struct {
	mu  sync.Mutex
	set map[string]bool
}

func (ts *topics) add(topic string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.set == nil {
		ts.set = map[string]bool{}
	}
	ts.set[topic] = true
}

// deleteStreams deletes the per-topic streams of every recorded topic.
func (ts *topics) deleteStreams(t *testing.T, js jetstream.JetStream) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for topic := range ts.set {
		deleteStream(ctx, t, js, defaultStreamName(topic))
	}
}

func deleteStream(ctx context.Context, t *testing.T, js jetstream.JetStream, name string) {
	if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("delete stream %q: %v", name, err)
	}
}

// tracked is an instance that records its topics.
type tracked struct {
	*PubSub
	topics *topics
}

func (c *tracked) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	c.topics.add(req.Topic)
	return c.PubSub.Publish(ctx, req)
}

func (c *tracked) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	c.topics.add(req.Topic)
	return c.PubSub.Subscribe(ctx, req, h)
}

func newInstance(t *testing.T, md components.Metadata) *PubSub {
	t.Helper()
	p := New()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Init(ctx, md); err != nil {
		t.Fatalf("init: %v", err)
	}
	return p
}

// TestConformance runs the suite with a stream per topic, created by the component,
// and the group given as durableName.
func TestConformance(t *testing.T) {
	natsURL := requireNATS(t)
	ts := &topics{}
	t.Cleanup(func() { ts.deleteStreams(t, admin(t, natsURL)) })
	conformance.Run(t, conformance.Config{
		New: func(t *testing.T, group string) pubsub.PubSub {
			p := newInstance(t, components.Metadata{Name: "conf", Type: TypeName, Properties: map[string]string{
				"natsURL": natsURL, "durableName": group, "ackWait": ackWait.String(),
			}})
			return &tracked{PubSub: p, topics: ts}
		},
		Redelivery: ackWait,
	})
}

// TestConformanceSharedStream runs the suite with every topic in one stream named by
// streamName, which the component creates and extends, and the group given as the app
// id.
func TestConformanceSharedStream(t *testing.T) {
	natsURL := requireNATS(t)
	stream := os.Getenv(sharedStreamEnv)
	if stream == "" {
		// Only the parent names the stream and deletes it; the SIGKILL test's child
		// inherits the name.
		stream = "outrigger-test-" + randHex()
		t.Setenv(sharedStreamEnv, stream)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			deleteStream(ctx, t, admin(t, natsURL), stream)
		})
	}
	conformance.Run(t, conformance.Config{
		New: func(t *testing.T, group string) pubsub.PubSub {
			// Seconds as a bare number, as Dapr manifests write them.
			return newInstance(t, components.Metadata{Name: "conf-shared", Type: TypeName, AppID: group, Properties: map[string]string{
				"natsURL": natsURL, "streamName": stream, "ackWait": "2", "concurrency": "parallel",
			}})
		},
		Redelivery: ackWait,
	})
}

func TestInitRejectsBadMetadata(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props map[string]string
		want  []string
	}{
		{"natsURL missing", map[string]string{}, []string{`"natsURL" is required`}},
		{"bad deliverPolicy", map[string]string{"natsURL": "nats://x", "deliverPolicy": "sometimes"}, []string{`"deliverPolicy": "sometimes"`}},
		{"bad ackWait", map[string]string{"natsURL": "nats://x", "ackWait": "soon"}, []string{`"ackWait": "soon"`}},
		{"bad backOff", map[string]string{"natsURL": "nats://x", "backOff": "1s,later", "maxDeliver": "5"}, []string{`"backOff": "later"`}},
		{"backOff beyond maxDeliver", map[string]string{"natsURL": "nats://x", "backOff": "1s,2s"}, []string{`"maxDeliver" must be set above 2`}},
		{"bad ackPolicy", map[string]string{"natsURL": "nats://x", "ackPolicy": "some"}, []string{`"ackPolicy": "some"`}},
		{"bad concurrency", map[string]string{"natsURL": "nats://x", "concurrency": "many"}, []string{`"concurrency": "many"`}},
		{"bad concurrencyMode", map[string]string{"natsURL": "nats://x", "concurrencyMode": "few"}, []string{`"concurrencyMode": "few"`}},
		{"jwt without seedKey", map[string]string{"natsURL": "nats://x", "jwt": "ey"}, []string{`"jwt" and "seedKey"`}},
		{"sequence without startSequence", map[string]string{"natsURL": "nats://x", "deliverPolicy": "sequence"}, []string{`"startSequence" is required`}},
		{"startSequence with another policy", map[string]string{"natsURL": "nats://x", "startSequence": "4"}, []string{`"startSequence" is set`}},
		{"deliverAll against deliverPolicy", map[string]string{"natsURL": "nats://x", "deliverAll": "true", "deliverPolicy": "new"}, []string{`"deliverAll"`}},
		{"heartbeat out of range", map[string]string{"natsURL": "nats://x", "heartbeat": "1m"}, []string{`"heartbeat"`}},
		{"domain and apiPrefix", map[string]string{"natsURL": "nats://x", "domain": "d", "apiPrefix": "$JS.X.API"}, []string{`"domain" and "apiPrefix"`}},
		{"every error at once", map[string]string{"deliverPolicy": "x", "maxDeliver": "two"}, []string{`"natsURL"`, `"maxDeliver": "two"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New()
			err := p.Init(context.Background(), components.Metadata{Name: "bad", Properties: tc.props})
			if err == nil {
				t.Fatal("Init accepted the metadata")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
			if err := p.Close(); err != nil {
				t.Errorf("close after a failed Init: %v", err)
			}
		})
	}
}

func TestOptionsAcceptDaprForms(t *testing.T) {
	o, err := parseOptions(components.Metadata{Properties: map[string]string{
		"natsURL": "nats://x", "ackWait": "30", "backOff": "1, 2s,500ms", "maxDeliver": "5", "deliverPolicy": "time",
		"startTime": "1640995200", "ackPolicy": "all", "heartbeat": "10s", "flowControl": "true", "rateLimit": "1000",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if o.AckWait != 30*time.Second {
		t.Errorf("ackWait 30 = %s, want 30s", o.AckWait)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 500 * time.Millisecond}; len(o.backOff) != 3 || o.backOff[0] != want[0] || o.backOff[1] != want[1] || o.backOff[2] != want[2] {
		t.Errorf("backOff = %v, want %v", o.backOff, want)
	}
	if o.deliverPolicy != jetstream.DeliverByStartTimePolicy || o.startTime == nil || o.startTime.Unix() != 1640995200 {
		t.Errorf("deliver policy %v from %v", o.deliverPolicy, o.startTime)
	}
	if o.ackPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("ackPolicy all runs as %v, want explicit", o.ackPolicy)
	}
	for n, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 500 * time.Millisecond, 9: 500 * time.Millisecond} {
		if got := o.nakDelay(n); got != want {
			t.Errorf("nakDelay(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestGroup(t *testing.T) {
	req := func(id string) pubsub.SubscribeRequest {
		return pubsub.SubscribeRequest{Topic: "t", Metadata: map[string]string{pubsub.ConsumerIDKey: id}}
	}
	for _, tc := range []struct {
		name string
		o    options
		req  pubsub.SubscribeRequest
		want string
	}{
		{"subscription consumerID first", options{DurableName: "d", QueueGroupName: "q", ConsumerID: "c"}, req("s"), "s"},
		{"then durableName", options{DurableName: "d", QueueGroupName: "q", ConsumerID: "c"}, req(""), "d"},
		{"then queueGroupName", options{QueueGroupName: "q", ConsumerID: "c"}, req(""), "q"},
		{"then component consumerID", options{ConsumerID: "c"}, pubsub.SubscribeRequest{}, "c"},
		{"then app id", options{}, pubsub.SubscribeRequest{}, "app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.o.group(tc.req, "app"); got != tc.want {
				t.Errorf("group = %q, want %q", got, tc.want)
			}
		})
	}
	if got := (&options{Concurrency: "single"}).handlerLimit(pubsub.SubscribeRequest{MaxConcurrency: 8}); got != 1 {
		t.Errorf("concurrency single allows %d handler calls, want 1", got)
	}
	if got := (&options{Concurrency: "single", ConcurrencyMode: "parallel"}).handlerLimit(pubsub.SubscribeRequest{MaxConcurrency: 8}); got != 8 {
		t.Errorf("concurrencyMode parallel over concurrency single allows %d handler calls, want 8", got)
	}
	if got := (&options{}).handlerLimit(pubsub.SubscribeRequest{MaxConcurrency: 8}); got != 8 {
		t.Errorf("default concurrency allows %d handler calls, want the subscription's 8", got)
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ group, topic, want string }{
		{"app", "orders", "app_orders"},
		{"app", "orders.new", "app_orders_new_"},
		{"my_app", "orders", "my_app_orders_"},
		{"a b", "c", "a_b_c_"},
	} {
		got := consumerName(tc.group, tc.topic)
		if !strings.HasPrefix(got, tc.want) || (!strings.HasSuffix(tc.want, "_") && got != tc.want) {
			t.Errorf("consumerName(%q, %q) = %q, want %q...", tc.group, tc.topic, got, tc.want)
		}
		if _, changed := cleanName(got); changed {
			t.Errorf("consumerName(%q, %q) = %q is not a valid name", tc.group, tc.topic, got)
		}
	}
	// Cleaning must not merge distinct pairs.
	if consumerName("a_b", "c") == consumerName("a", "b_c") || consumerName("x", "a.b") == consumerName("x", "a_b") {
		t.Error("distinct groups and topics share a consumer name")
	}
	if got := defaultStreamName("orders"); got != "outrigger-orders" {
		t.Errorf("defaultStreamName(orders) = %q", got)
	}
	if defaultStreamName("a.b") == defaultStreamName("a_b") {
		t.Error("distinct topics share a stream name")
	}
	long := strings.Repeat("x", 300)
	if got := defaultStreamName(long); len(got) > 100 {
		t.Errorf("defaultStreamName of a long topic is %d characters long", len(got))
	}
}

func TestCheckTopicAndCovers(t *testing.T) {
	for _, tc := range []struct {
		topic       string
		subscribing bool
		ok          bool
	}{
		{"orders", false, true},
		{"orders.new", false, true},
		{"", false, false},
		{"a b", false, false},
		{"a..b", false, false},
		{".a", false, false},
		{"a.*", false, false},
		{"a.*", true, true},
		{"a.>", true, true},
	} {
		if err := checkTopic(tc.topic, tc.subscribing); (err == nil) != tc.ok {
			t.Errorf("checkTopic(%q, %v) = %v", tc.topic, tc.subscribing, err)
		}
	}
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"orders", "orders", true},
		{"orders", "orders.new", false},
		{"orders.*", "orders.new", true},
		{"orders.*", "orders.new.eu", false},
		{"orders.>", "orders.new.eu", true},
		{"orders.>", "orders", false},
		{"orders.*", "orders.*", true},
		{"orders.*", "orders.>", false},
		{">", "anything.at.all", true},
		{"a.b", "a.*", false},
	} {
		if got := covers(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
}

func TestCloudEventID(t *testing.T) {
	for data, want := range map[string]string{
		`{"specversion":"1.0","id":"abc","type":"t","source":"s"}`: "abc",
		` {"id":"abc","specversion":"1.0"}`:                        "abc",
		`{"id":"abc"}`:                                             "",
		`{"id":7,"specversion":"1.0"}`:                             "",
		`not json`:                                                 "",
		`{"specversion":"1.0","id":`:                               "",
	} {
		if got := cloudEventID([]byte(data)); got != want {
			t.Errorf("cloudEventID(%s) = %q, want %q", data, got, want)
		}
	}
}

func TestInitNamesAnUnreachableServer(t *testing.T) {
	p := New()
	err := p.Init(context.Background(), components.Metadata{Name: "down", Properties: map[string]string{
		"natsURL": "nats://someone:s3cret@127.0.0.1:1",
	}})
	if err == nil {
		t.Fatal("Init succeeded against a closed port")
	}
	if !strings.Contains(err.Error(), `"natsURL"`) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error %q does not name natsURL and its address", err)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "someone") {
		t.Errorf("error %q shows the credentials", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("close after a failed Init: %v", err)
	}
}

func TestUseBeforeInitAndAfterClose(t *testing.T) {
	p := New()
	if err := p.Publish(context.Background(), &pubsub.PublishRequest{Topic: "t"}); err == nil || !strings.Contains(err.Error(), "not initialised") {
		t.Errorf("Publish before Init: %v", err)
	}
	natsURL := requireNATS(t)
	p = newInstance(t, components.Metadata{Name: "closed", Properties: map[string]string{"natsURL": natsURL}})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), &pubsub.PublishRequest{Topic: "t"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Publish after Close: %v", err)
	}
	if err := p.Subscribe(context.Background(), pubsub.SubscribeRequest{Topic: "t"}, func(context.Context, *pubsub.Message) error { return nil }); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// receiver collects what a subscription gets.
type receiver struct {
	ch chan *pubsub.Message
}

func newReceiver() *receiver { return &receiver{ch: make(chan *pubsub.Message, 64)} }

func (r *receiver) handle(_ context.Context, m *pubsub.Message) error {
	r.ch <- m
	return nil
}

func (r *receiver) next(ctx context.Context, t *testing.T) *pubsub.Message {
	t.Helper()
	select {
	case m := <-r.ch:
		return m
	case <-ctx.Done():
		t.Fatalf("no message arrived: %v", ctx.Err())
		return nil
	}
}

// An existing stream that covers a topic is used, as Dapr does, and Outrigger creates
// none of its own.
func TestExistingStreamIsUsed(t *testing.T) {
	natsURL := requireNATS(t)
	js := admin(t, natsURL)
	ctx := testCtx(t)
	prefix := "outtest" + randHex()
	stream := "outrigger-test-" + randHex()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteStream(context.Background(), t, js, stream) })

	p := newInstance(t, components.Metadata{Name: "existing", AppID: "app", Properties: map[string]string{
		"natsURL": natsURL, "ackWait": "7", "maxDeliver": "3", "deliverPolicy": "new",
	}})
	t.Cleanup(func() { _ = p.Close() })
	topic := prefix + ".orders"
	rec := newReceiver()
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, rec.handle); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("hello"), ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	m := rec.next(ctx, t)
	if string(m.Data) != "hello" || m.ContentType != "text/plain" || m.Topic != topic || m.Metadata["Topic"] != topic {
		t.Errorf("received %+v", m)
	}
	if _, err := js.Stream(ctx, defaultStreamName(topic)); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a stream of Outrigger's own was created for a covered topic: %v", err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.Consumer(ctx, consumerName("app", topic))
	if err != nil {
		t.Fatalf("the group's durable consumer: %v", err)
	}
	cfg := cons.CachedInfo().Config
	if cfg.Durable == "" || cfg.FilterSubject != topic || cfg.AckWait != 7*time.Second || cfg.MaxDeliver != 3 ||
		cfg.DeliverPolicy != jetstream.DeliverNewPolicy || cfg.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("consumer config %+v does not follow the metadata", cfg)
	}
}

// A subscription whose consumer, or whole stream, is deleted underneath it restores
// them, and a publisher whose stream is gone creates it again.
func TestSubscriptionSurvivesDeletion(t *testing.T) {
	natsURL := requireNATS(t)
	js := admin(t, natsURL)
	for _, tc := range []struct {
		name  string
		props map[string]string
		del   func(ctx context.Context, t *testing.T, topic string) error
	}{
		{"stream deleted", map[string]string{"natsURL": natsURL}, func(ctx context.Context, t *testing.T, topic string) error {
			return js.DeleteStream(ctx, defaultStreamName(topic))
		}},
		{"consumer deleted, with heartbeats", map[string]string{"natsURL": natsURL, "heartbeat": "1s"}, func(ctx context.Context, t *testing.T, topic string) error {
			// nats-server 2.9 can fail to remove the consumer's directory while it is
			// being written; the deletion is retried until the consumer is gone.
			for {
				err := js.DeleteConsumer(ctx, defaultStreamName(topic), consumerName("app", topic))
				if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) {
					return nil
				}
				if ctx.Err() != nil {
					return err
				}
				t.Logf("delete consumer: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			topic := "outtest-" + randHex()
			t.Cleanup(func() { deleteStream(context.Background(), t, js, defaultStreamName(topic)) })
			p := newInstance(t, components.Metadata{Name: "restore", AppID: "app", Properties: tc.props})
			t.Cleanup(func() { _ = p.Close() })
			rec := newReceiver()
			if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, rec.handle); err != nil {
				t.Fatal(err)
			}
			if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("before")}); err != nil {
				t.Fatal(err)
			}
			if m := rec.next(ctx, t); string(m.Data) != "before" {
				t.Fatalf("received %q", m.Data)
			}
			if err := tc.del(ctx, t, topic); err != nil {
				t.Fatal(err)
			}
			// Publish until the restored subscription gets a message: a deleted stream
			// comes back with the next publish, the consumer when the subscription
			// notices it is gone. Interest retention drops what is published while no
			// consumer exists, hence more than one publish.
			for i := 0; ; i++ {
				if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("after")}); err != nil {
					t.Fatalf("publish after the deletion: %v", err)
				}
				select {
				case m := <-rec.ch:
					if string(m.Data) != "after" {
						t.Fatalf("received %q", m.Data)
					}
					t.Logf("restored after %d publishes", i+1)
					return
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
					t.Fatalf("the subscription never came back: %v", ctx.Err())
				}
			}
		})
	}
}

// Close waits for a running handler, whose context it cancels, and the message it
// leaves comes back to the group.
func TestCloseWaitsForHandlersAndLosesNothing(t *testing.T) {
	natsURL := requireNATS(t)
	js := admin(t, natsURL)
	ctx := testCtx(t)
	topic := "outtest-" + randHex()
	t.Cleanup(func() { deleteStream(context.Background(), t, js, defaultStreamName(topic)) })
	// ackWait is beyond the test's deadline: the message can only come back in time
	// if the interrupted delivery was nak'ed.
	props := map[string]string{"natsURL": natsURL, "ackWait": "10m"}

	first := newInstance(t, components.Metadata{Name: "first", AppID: "grp", Properties: props})
	started := make(chan struct{})
	returned := make(chan struct{})
	if err := first.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(hctx context.Context, _ *pubsub.Message) error {
		close(started)
		<-hctx.Done()
		close(returned)
		return hctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	if err := first.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler never ran")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
	default:
		t.Fatal("Close returned before the handler did")
	}
	second := newInstance(t, components.Metadata{Name: "second", AppID: "grp", Properties: props})
	t.Cleanup(func() { _ = second.Close() })
	rec := newReceiver()
	if err := second.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, rec.handle); err != nil {
		t.Fatal(err)
	}
	if m := rec.next(ctx, t); string(m.Data) != "m" {
		t.Fatalf("received %q", m.Data)
	}
}
