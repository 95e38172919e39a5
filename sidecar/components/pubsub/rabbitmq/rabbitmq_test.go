package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub/conformance"
)

const defaultBroker = "amqp://guest:guest@127.0.0.1:5672"

// requireBroker returns the test broker's URL, skipping (failing under CI) when it is
// down.
func requireBroker(t *testing.T) string {
	t.Helper()
	url := defaultBroker
	if v := os.Getenv("OUTRIGGER_TEST_RABBITMQ"); v != "" {
		url = v
	}
	uri, err := amqp.ParseURI(url)
	if err != nil {
		t.Fatalf("OUTRIGGER_TEST_RABBITMQ is not an AMQP URI: %v", err)
	}
	testproc.RequireServer(t, "RabbitMQ", net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)))
	return url
}

// testProps are the component properties the tests use: queues that outlive their
// consumers, so that a killed consumer's messages wait for the next one, and failed
// messages requeued, as the conformance suite expects.
func testProps(url, group string) map[string]string {
	return map[string]string{
		"connectionString":     url,
		"consumerID":           group,
		"durable":              "true",
		"deletedWhenUnused":    "false",
		"requeueInFailure":     "true",
		"reconnectWaitSeconds": "50ms",
	}
}

func initialised(t *testing.T, p *PubSub, props map[string]string) *PubSub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Init(ctx, components.Metadata{Name: "rabbit", Type: TypeName, AppID: "app", Properties: props}); err != nil {
		t.Fatalf("init: %v", err)
	}
	return p
}

func uniq(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "outrigger-test-" + prefix + "-" + hex.EncodeToString(b)
}

// topology records the exchanges and queues a test creates on the shared broker, and
// deletes them when the test ends.
type topology struct {
	mu        sync.Mutex
	exchanges map[string]bool
	queues    map[string]bool
}

func newTopology(t *testing.T, url string) *topology {
	tp := &topology{exchanges: map[string]bool{}, queues: map[string]bool{}}
	t.Cleanup(func() { tp.delete(t, url) })
	return tp
}

func (tp *topology) add(exchange, queue string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if exchange != "" {
		tp.exchanges[exchange] = true
	}
	if queue != "" {
		tp.queues[queue] = true
	}
}

func (tp *topology) delete(t *testing.T, url string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Logf("cannot delete the test's queues and exchanges: %v", err)
		return
	}
	defer conn.Close()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	// Each call gets a channel of its own: a refusal closes the channel it came on.
	do := func(f func(ch *amqp.Channel) error) {
		ch, err := conn.Channel()
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer ch.Close()
		var ae *amqp.Error
		if err := f(ch); err != nil && !(errors.As(err, &ae) && ae.Code == amqp.NotFound) {
			t.Logf("cleanup: %v", err)
		}
	}
	for q := range tp.queues {
		do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	}
	for x := range tp.exchanges {
		do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(x, false, false) })
	}
}

// tracked records what the conformance suite makes the component declare.
type tracked struct {
	*PubSub
	tp    *topology
	group string
}

func (w *tracked) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	w.tp.add(req.Topic, "")
	return w.PubSub.Publish(ctx, req)
}

func (w *tracked) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	w.tp.add(req.Topic, w.group+"-"+req.Topic)
	return w.PubSub.Subscribe(ctx, req, h)
}

func TestConformance(t *testing.T) {
	url := requireBroker(t)
	tp := newTopology(t, url)
	conformance.Run(t, conformance.Config{
		New: func(t *testing.T, group string) pubsub.PubSub {
			return &tracked{PubSub: initialised(t, New(), testProps(url, group)), tp: tp, group: group}
		},
		// RabbitMQ requeues a nacked message, and the messages of a consumer whose
		// connection closes, at once.
		Redelivery: 3 * time.Second,
	})
}

// received collects what a subscription's handler is given.
type received chan *pubsub.Message

func (r received) handler(_ context.Context, m *pubsub.Message) error {
	r <- m
	return nil
}

func (r received) next(ctx context.Context, t *testing.T) *pubsub.Message {
	t.Helper()
	select {
	case m := <-r:
		return m
	case <-ctx.Done():
		t.Fatalf("no message arrived: %v", ctx.Err())
		return nil
	}
}

func TestReconnectsAfterTheConnectionIsLost(t *testing.T) {
	url := requireBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp := newTopology(t, url)
	group, topic := uniq("g"), uniq("t")
	tp.add(topic, group+"-"+topic)

	p := New()
	var down atomic.Bool
	dial := p.dial
	p.dial = func(ctx context.Context) (*amqp.Connection, error) {
		if down.Load() {
			return nil, errors.New("the broker is down (test)")
		}
		return dial(ctx)
	}
	initialised(t, p, testProps(url, group))
	t.Cleanup(func() { _ = p.Close() })

	got := make(received, 16)
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, got.handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("before")}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if m := got.next(ctx, t); string(m.Data) != "before" {
		t.Fatalf("got %q, want before", m.Data)
	}

	old, err := p.current()
	if err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	if err := old.conn.Close(); err != nil {
		t.Fatalf("force-close the connection: %v", err)
	}
	select {
	case <-old.lost:
	case <-ctx.Done():
		t.Fatalf("the component never noticed the lost connection: %v", ctx.Err())
	}

	err = p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("during")})
	if err == nil {
		t.Fatal("publish succeeded with no connection to the broker")
	}
	if !strings.Contains(err.Error(), p.opts.broker) {
		t.Errorf("the publish error does not name the broker: %v", err)
	}
	t.Logf("publish while disconnected: %v", err)

	down.Store(false)
	s, err := p.waitSession(ctx)
	if err != nil {
		t.Fatalf("never reconnected: %v", err)
	}
	if s == old {
		t.Fatal("waitSession returned the closed session")
	}
	// The queue outlives its consumer, so this waits there until the subscription,
	// set up again by the component alone, consumes it.
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("after")}); err != nil {
		t.Fatalf("publish after reconnecting: %v", err)
	}
	if m := got.next(ctx, t); string(m.Data) != "after" {
		t.Fatalf("got %q, want after", m.Data)
	}
}

func TestCloseWaitsForHandlersAndCancelsThem(t *testing.T) {
	url := requireBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp := newTopology(t, url)
	group, topic := uniq("g"), uniq("t")
	tp.add(topic, group+"-"+topic)

	p := initialised(t, New(), testProps(url, group))
	started := make(chan struct{})
	var returned atomic.Bool
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(hctx context.Context, _ *pubsub.Message) error {
		close(started)
		select {
		case <-hctx.Done():
		case <-ctx.Done():
			t.Error("the handler's context was not cancelled by Close")
		}
		returned.Store(true)
		return hctx.Err()
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("x")}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatalf("the handler was never called: %v", ctx.Err())
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if !returned.Load() {
		t.Fatal("Close returned before the handler call in flight")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("y")}); err == nil {
		t.Fatal("publish after Close succeeded")
	}

	// The handler gave up on the message when it was cancelled: it was not nacked but
	// left for the group's next consumer.
	next := initialised(t, New(), testProps(url, group))
	t.Cleanup(func() { _ = next.Close() })
	got := make(received, 4)
	if err := next.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, got.handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if m := got.next(ctx, t); string(m.Data) != "x" {
		t.Fatalf("got %q, want x", m.Data)
	}
}

func TestSubscriptionEndsWithItsContext(t *testing.T) {
	url := requireBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp := newTopology(t, url)
	group, topic := uniq("g"), uniq("t")
	tp.add(topic, group+"-"+topic)
	p := initialised(t, New(), testProps(url, group))
	t.Cleanup(func() { _ = p.Close() })

	subCtx, stop := context.WithCancel(ctx)
	first := make(received, 4)
	if err := p.Subscribe(subCtx, pubsub.SubscribeRequest{Topic: topic}, first.handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	stop()
	// A second subscription of the same group on the same component is the only
	// consumer left once the first has gone: it gets every message.
	second := make(received, 4)
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, second.handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for _, m := range []string{"a", "b", "c"} {
		if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(m)}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	for range 3 {
		second.next(ctx, t)
	}
	if len(first) != 0 {
		t.Fatalf("a cancelled subscription was handed %d messages", len(first))
	}
}

func TestContentTypeAndRoutingKey(t *testing.T) {
	url := requireBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp := newTopology(t, url)
	group, topic := uniq("g"), uniq("t")
	tp.add(topic, group+"-"+topic)
	props := testProps(url, group)
	props["exchangeKind"] = "topic"
	props["publishMessagePropertiesToMetadata"] = "true"
	p := initialised(t, New(), props)
	t.Cleanup(func() { _ = p.Close() })

	got := make(received, 4)
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Metadata: map[string]string{"routingKey": "orders.*"}}, got.handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	// Publishes are confirmed in order, so had the first been routed to the queue it
	// would arrive first.
	for _, r := range []struct{ key, data string }{{"invoices.new", "skip"}, {"orders.new", "keep"}} {
		if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(r.data), ContentType: "application/json",
			Metadata: map[string]string{"routingKey": r.key, "messageID": "id-" + r.data}}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	m := got.next(ctx, t)
	if string(m.Data) != "keep" {
		t.Fatalf("got %q, want keep: the routing key was not honoured", m.Data)
	}
	if m.ContentType != "application/json" {
		t.Errorf("ContentType = %q, want application/json", m.ContentType)
	}
	if m.Metadata["messageid"] != "id-keep" {
		t.Errorf("Metadata = %v, want messageid=id-keep", m.Metadata)
	}
}

func TestDeadLetterWithoutRequeue(t *testing.T) {
	url := requireBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp := newTopology(t, url)
	group, topic := uniq("g"), uniq("t")
	queue := group + "-" + topic
	tp.add(topic, queue)
	tp.add("dlx-"+queue, "dlq-"+queue)
	props := testProps(url, group)
	props["requeueInFailure"] = "false"
	props["enableDeadLetter"] = "true"
	p := initialised(t, New(), props)
	t.Cleanup(func() { _ = p.Close() })

	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(context.Context, *pubsub.Message) error {
		return errors.New("fails on purpose")
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("dead")}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, ok, err := ch.Get("dlq-"+queue, true)
		if err != nil {
			t.Fatalf("get from the dead-letter queue: %v", err)
		}
		if ok {
			if string(d.Body) != "dead" {
				t.Fatalf("dead-lettered %q, want dead", d.Body)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the failed message never reached the dead-letter queue: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestMessageTTLIsSetOnPublish(t *testing.T) {
	url := requireBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp := newTopology(t, url)
	group, topic := uniq("g"), uniq("t")
	tp.add(topic, group+"-"+topic)
	props := testProps(url, group)
	props["ttlInSeconds"] = "60"
	p := initialised(t, New(), props)
	t.Cleanup(func() { _ = p.Close() })
	if !pubsub.Has(p, pubsub.FeatureMessageTTL) {
		t.Fatal("MESSAGE_TTL is not declared")
	}
	// The subscription declares the queue, which outlives it; the messages then wait
	// there to be read directly, AMQP properties and all.
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(context.Context, *pubsub.Message) error { return nil }); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	q := initialised(t, New(), props)
	t.Cleanup(func() { _ = q.Close() })
	for _, md := range []map[string]string{nil, {"ttlInSeconds": "5"}} {
		if err := q.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("m"), Metadata: md}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"60000", "5000"} {
		d, ok, err := ch.Get(group+"-"+topic, true)
		if err != nil || !ok {
			t.Fatalf("get: ok=%v err=%v", ok, err)
		}
		if d.Expiration != want {
			t.Errorf("Expiration = %q, want %q", d.Expiration, want)
		}
		if d.ContentType != "text/plain" {
			t.Errorf("ContentType = %q, want Dapr's default text/plain", d.ContentType)
		}
	}
}

func TestInitFailsWhenTheBrokerIsUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := New()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = p.Init(ctx, components.Metadata{Name: "rabbit", Properties: map[string]string{"connectionString": "amqp://u:secret@" + addr}})
	if err == nil {
		t.Fatal("Init succeeded with no broker")
	}
	if !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "secret") {
		t.Errorf("the error should name the broker and not the password: %v", err)
	}
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, func(context.Context, *pubsub.Message) error { return nil }); !errors.Is(err, errNotInitialised) {
		t.Errorf("subscribe after a failed Init: err = %v, want %v at once", err, errNotInitialised)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: "t"}); !errors.Is(err, errNotInitialised) {
		t.Errorf("publish after a failed Init: err = %v, want %v", err, errNotInitialised)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close after a failed Init: %v", err)
	}
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, func(context.Context, *pubsub.Message) error { return nil }); !errors.Is(err, errClosed) {
		t.Fatalf("subscribe after Close: err = %v, want %v", err, errClosed)
	}
}

// TestReconnectsAfterTheBrokerClosesTheConnection has the broker itself close the
// component's connection, found by its clientName, as a broker shutting down does.
func TestReconnectsAfterTheBrokerClosesTheConnection(t *testing.T) {
	url := requireBroker(t)
	ctl, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		t.Skip("rabbitmqctl is not installed: the broker cannot be told to close a connection")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tp := newTopology(t, url)
	group, topic := uniq("g"), uniq("t")
	tp.add(topic, group+"-"+topic)
	props := testProps(url, group)
	props["clientName"] = uniq("client")
	p := initialised(t, New(), props)
	t.Cleanup(func() { _ = p.Close() })
	got := make(received, 4)
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, got.handler); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	old, err := p.current()
	if err != nil {
		t.Fatal(err)
	}

	out, err := exec.CommandContext(ctx, ctl, "-q", "list_connections", "--no-table-headers", "pid", "client_properties").CombinedOutput()
	if err != nil {
		t.Skipf("rabbitmqctl cannot list connections here: %v: %s", err, out)
	}
	var pid string
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, props["clientName"]) {
			pid, _, _ = strings.Cut(line, "\t")
		}
	}
	if pid == "" {
		t.Fatalf("rabbitmqctl lists no connection named %s:\n%s", props["clientName"], out)
	}
	if out, err := exec.CommandContext(ctx, ctl, "-q", "close_connection", pid, "closed by a test").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl close_connection: %v: %s", err, out)
	}
	select {
	case <-old.lost:
	case <-ctx.Done():
		t.Fatalf("the component never noticed the closed connection: %v", ctx.Err())
	}
	if _, err := p.waitSession(ctx); err != nil {
		t.Fatalf("never reconnected: %v", err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("after")}); err != nil {
		t.Fatalf("publish after reconnecting: %v", err)
	}
	if m := got.next(ctx, t); string(m.Data) != "after" {
		t.Fatalf("got %q, want after", m.Data)
	}
}
