package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub/conformance"
)

// testAddr is the loopback server of the development machine; OUTRIGGER_TEST_REDIS
// overrides it.
var testAddr = func() string {
	if a := os.Getenv("OUTRIGGER_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}()

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// open initialises a component against the test server; the caller closes it.
func open(t *testing.T, props map[string]string) *PubSub {
	t.Helper()
	testproc.RequireServer(t, "Redis", testAddr)
	p := map[string]string{"redisHost": testAddr}
	maps.Copy(p, props)
	ps := New()
	if err := ps.Init(testCtx(t), components.Metadata{Name: "pubsub", Type: TypeName, AppID: "app", Properties: p}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return ps
}

// openClosed is open, closed when the test ends.
func openClosed(t *testing.T, props map[string]string) *PubSub {
	t.Helper()
	p := open(t, props)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// streams deletes, when the test ends, the streams the test used, so that the shared
// server does not fill up.
type streams struct {
	mu  sync.Mutex
	set map[string]bool
}

func newStreams(t *testing.T) *streams {
	s := &streams{set: map[string]bool{}}
	t.Cleanup(func() {
		c := goredis.NewClient(&goredis.Options{Addr: testAddr})
		defer c.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for k := range s.set {
			c.Del(context.Background(), k)
		}
	})
	return s
}

func (s *streams) add(name string) string {
	s.mu.Lock()
	s.set[name] = true
	s.mu.Unlock()
	return name
}

// tracked records the topics the conformance suite uses.
type tracked struct {
	*PubSub
	streams *streams
}

func (t *tracked) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	t.streams.add(req.Topic)
	return t.PubSub.Publish(ctx, req)
}

func (t *tracked) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	t.streams.add(req.Topic)
	return t.PubSub.Subscribe(ctx, req, h)
}

func TestConformance(t *testing.T) {
	testproc.RequireServer(t, "Redis", testAddr)
	used := newStreams(t)
	conformance.Run(t, conformance.Config{
		New: func(t *testing.T, group string) pubsub.PubSub {
			return &tracked{PubSub: open(t, map[string]string{
				"consumerID": group, "redeliverInterval": "500ms", "processingTimeout": "2s",
			}), streams: used}
		},
		// processingTimeout, plus a redeliverInterval until the next reclaim pass.
		Redelivery: 3 * time.Second,
	})
}

func uniq(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "outrigger-test-" + prefix + "-" + hex.EncodeToString(b[:])
}

func rawClient(t *testing.T) *goredis.Client {
	t.Helper()
	testproc.RequireServer(t, "Redis", testAddr)
	c := goredis.NewClient(&goredis.Options{Addr: testAddr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor polls cond until it holds; ctx bounds the wait.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func pending(ctx context.Context, t *testing.T, c *goredis.Client, stream, group string) int64 {
	t.Helper()
	p, err := c.XPending(ctx, stream, group).Result()
	if err != nil {
		t.Fatalf("XPENDING %s %s: %v", stream, group, err)
	}
	return p.Count
}

func consumers(ctx context.Context, t *testing.T, c *goredis.Client, stream, group string) []string {
	t.Helper()
	cs, err := c.XInfoConsumers(ctx, stream, group).Result()
	if err != nil {
		t.Fatalf("XINFO CONSUMERS %s %s: %v", stream, group, err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

// leavePending makes a consumer named dead take one entry of the stream and never
// acknowledge it, as a process killed mid-delivery does.
func leavePending(ctx context.Context, t *testing.T, c *goredis.Client, stream, group string, data string) string {
	t.Helper()
	if err := c.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	id, err := c.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: []any{"data", data}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: group, Consumer: "dead", Streams: []string{stream, ">"}, Count: 1, Block: -1}).Result()
	if err != nil || len(got) != 1 || len(got[0].Messages) != 1 {
		t.Fatalf("XREADGROUP as the dead consumer: %v, %v", got, err)
	}
	return id
}

// TestInitRejectsBadMetadata covers the pub/sub's own metadata; the shared client
// settings have their table in internal/redisopts. "no host" shows those errors reach
// Init too.
func TestInitRejectsBadMetadata(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"no host", map[string]string{}, `"redisHost" is required`},
		{"bad redeliverInterval", map[string]string{"redisHost": "h", "redeliverInterval": "soon"}, `"redeliverInterval": "soon"`},
		{"negative processingTimeout", map[string]string{"redisHost": "h", "processingTimeout": "-1s"}, `"processingTimeout" must not be negative`},
		{"bad maxLenApprox", map[string]string{"redisHost": "h", "maxLenApprox": "many"}, `"maxLenApprox": "many"`},
		{"bad streamTTL", map[string]string{"redisHost": "h", "streamTTL": "a while"}, `"streamTTL": "a while"`},
		{"zero concurrency", map[string]string{"redisHost": "h", "concurrency": "0"}, `"concurrency" must be at least 1`},
		{"zero queueDepth", map[string]string{"redisHost": "h", "queueDepth": "0"}, `"queueDepth" must be at least 1`},
		{"negative queueDepth", map[string]string{"redisHost": "h", "queueDepth": "-3"}, `"queueDepth": "-3"`},
		{"bad ackOnError", map[string]string{"redisHost": "h", "ackOnError": "maybe"}, `"ackOnError": "maybe"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New()
			err := p.Init(context.Background(), components.Metadata{Name: "bus", Properties: tc.props})
			if err == nil {
				t.Fatalf("Init accepted %v", tc.props)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `pubsub.redis "bus"`) {
				t.Errorf("error %q does not name %s and the component", err, tc.want)
			}
			if err := p.Close(); err != nil {
				t.Errorf("Close after a failed Init: %v", err)
			}
		})
	}
}

func TestOptionDefaults(t *testing.T) {
	o, err := parseOptions(components.Metadata{AppID: "orders", Properties: map[string]string{"redisHost": "h", "redeliverInterval": "1500"}})
	if err != nil {
		t.Fatal(err)
	}
	if o.ConsumerID != "orders" || o.ProcessingTimeout != 60*time.Second || o.RedeliverInterval != 1500*time.Millisecond ||
		o.QueueDepth != 100 || o.Concurrency != nil || o.MaxLenApprox != 0 || o.StreamTTL != 0 || !o.redelivery() {
		t.Errorf("options %+v", o)
	}
	// The state store's legacy retry defaults and keys do not apply to the pub/sub.
	o, err = parseOptions(components.Metadata{Properties: map[string]string{"redisHost": "h", "maxRetries": "9"}})
	if err != nil || o.RedisMaxRetries != nil || o.RedisMinRetryInterval != nil {
		t.Errorf("retries %v %v, want go-redis's defaults: %v", o.RedisMaxRetries, o.RedisMinRetryInterval, err)
	}
	o, err = parseOptions(components.Metadata{AppID: "orders", Properties: map[string]string{"redisHost": "h", "consumerID": "g", "processingTimeout": "0"}})
	if err != nil || o.ConsumerID != "g" || o.redelivery() {
		t.Errorf("consumerID or processingTimeout 0: %+v, %v", o, err)
	}
}

func TestConcurrencyBound(t *testing.T) {
	five := uint(5)
	for _, tc := range []struct {
		component *uint
		request   int
		want      int
	}{
		{nil, 0, pubsub.DefaultMaxConcurrency},
		{nil, 3, 3},
		{&five, 0, 5},
		{&five, 3, 3},
	} {
		o := options{Concurrency: tc.component}
		if got := o.concurrency(pubsub.SubscribeRequest{MaxConcurrency: tc.request}); got != tc.want {
			t.Errorf("concurrency %v, request %d: got %d, want %d", tc.component, tc.request, got, tc.want)
		}
	}
}

func TestAddArgs(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	vals := []any{"data", []byte("x")}
	for _, tc := range []struct {
		name      string
		o         options
		maxLen    int64
		addMinID  string
		trimMinID string
	}{
		{"no trimming", options{}, 0, "", ""},
		{"maxLenApprox", options{MaxLenApprox: 10}, 10, "", ""},
		{"streamTTL", options{StreamTTL: time.Minute}, 0, "1699999940000-0", ""},
		{"both", options{MaxLenApprox: 10, StreamTTL: time.Minute}, 10, "", "1699999940000-0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			add, trim := addArgs(&tc.o, now, "s", vals)
			if add.Stream != "s" || add.MaxLen != tc.maxLen || add.MinID != tc.addMinID || trim != tc.trimMinID ||
				add.Approx != (tc.maxLen > 0 || tc.addMinID != "") {
				t.Errorf("got %+v and trim %q", add, trim)
			}
		})
	}
}

func TestUnreachableServer(t *testing.T) {
	p := New()
	err := p.Init(context.Background(), components.Metadata{Name: "bus", Properties: map[string]string{"redisHost": "127.0.0.1:1", "dialTimeout": "200ms", "redisMaxRetries": "-1"}})
	if err == nil || !strings.Contains(err.Error(), `redisHost "127.0.0.1:1"`) {
		t.Fatalf("Init against a closed port: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestUseAfterClose(t *testing.T) {
	p := open(t, nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := testCtx(t)
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte("x")}); err == nil {
		t.Error("Publish after Close succeeded")
	}
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, func(context.Context, *pubsub.Message) error { return nil }); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
	if res := p.BulkPublish(ctx, "t", []pubsub.BulkEntry{{EntryID: "1"}}, nil); len(res) != 1 || res[0].Err == nil {
		t.Errorf("BulkPublish after Close: %+v", res)
	}
}

// TestDaprLayout checks the stream entries against what Dapr's component writes and
// reads: the payload in "data", the metadata as JSON in "metadata".
func TestDaprLayout(t *testing.T) {
	ctx := testCtx(t)
	c := rawClient(t)
	used := newStreams(t)
	stream := used.add(uniq("layout"))
	p := openClosed(t, map[string]string{"consumerID": uniq("g")})

	md := map[string]string{"ttlInSeconds": "60", "k": "v"}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: stream, Data: []byte("payload"), ContentType: "text/plain", Metadata: md}); err != nil {
		t.Fatal(err)
	}
	entries, err := c.XRange(ctx, stream, "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("XRANGE: %v, %v", entries, err)
	}
	v := entries[0].Values
	var gotMD map[string]string
	if err := json.Unmarshal([]byte(v["metadata"].(string)), &gotMD); err != nil || !maps.Equal(gotMD, md) {
		t.Errorf("metadata field %q: %v", v["metadata"], err)
	}
	if v["data"] != "payload" || v["contentType"] != "text/plain" {
		t.Errorf("entry %v", v)
	}

	// An entry as a Dapr sidecar writes it is delivered with its metadata.
	got := make(chan *pubsub.Message, 4)
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: stream}, func(_ context.Context, m *pubsub.Message) error {
		got <- m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: map[string]any{"data": "from dapr", "metadata": `{"a":"b"}`}}).Err(); err != nil {
		t.Fatal(err)
	}
	// Handlers run concurrently: the two may arrive in either order.
	byData := map[string]*pubsub.Message{}
	for len(byData) < 2 {
		select {
		case m := <-got:
			byData[string(m.Data)] = m
		case <-ctx.Done():
			t.Fatalf("delivered %v only: %v", byData, ctx.Err())
		}
	}
	if m := byData["payload"]; m == nil || m.ContentType != "text/plain" || !maps.Equal(m.Metadata, md) || m.Topic != stream {
		t.Errorf("Outrigger's message %+v", m)
	}
	if m := byData["from dapr"]; m == nil || m.ContentType != "" || !maps.Equal(m.Metadata, map[string]string{"a": "b"}) || m.Topic != stream {
		t.Errorf("Dapr's message %+v", m)
	}
}

func TestBulkPublish(t *testing.T) {
	ctx := testCtx(t)
	c := rawClient(t)
	stream := newStreams(t).add(uniq("bulk"))
	p := openClosed(t, map[string]string{"maxLenApprox": "1000", "streamTTL": "1h"})
	if !pubsub.Has(p, pubsub.FeatureBulkPublish) {
		t.Error("BULK_PUBLISH is not declared")
	}
	res := p.BulkPublish(ctx, stream, []pubsub.BulkEntry{
		{EntryID: "a", Data: []byte("1")}, {EntryID: "b", Data: []byte("2"), ContentType: "text/plain"}, {EntryID: "c", Data: []byte("3")},
	}, nil)
	for i, r := range res {
		if r.Err != nil || r.EntryID != string(rune('a'+i)) {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	entries, err := c.XRange(ctx, stream, "-", "+").Result()
	if err != nil || len(entries) != 3 || entries[2].Values["data"] != "3" {
		t.Fatalf("XRANGE: %v, %v", entries, err)
	}
}

func TestSubscriptionConsumerIDOverridesTheComponents(t *testing.T) {
	ctx := testCtx(t)
	c := rawClient(t)
	stream := newStreams(t).add(uniq("override"))
	p := openClosed(t, map[string]string{"consumerID": "component-group"})
	group := uniq("g")
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: stream, Metadata: map[string]string{"consumerID": group}},
		func(context.Context, *pubsub.Message) error { return nil }); err != nil {
		t.Fatal(err)
	}
	groups, err := c.XInfoGroups(ctx, stream).Result()
	if err != nil || len(groups) != 1 || groups[0].Name != group {
		t.Fatalf("groups %+v, %v", groups, err)
	}
}

// TestReclaimFromDeadConsumer: an entry a dead consumer took and never acknowledged
// reaches a new consumer of the group once it has been pending for processingTimeout,
// and is acknowledged there.
func TestReclaimFromDeadConsumer(t *testing.T) {
	ctx := testCtx(t)
	c := rawClient(t)
	stream, group := newStreams(t).add(uniq("reclaim")), uniq("g")
	leavePending(ctx, t, c, stream, group, "orphan")

	p := openClosed(t, map[string]string{"consumerID": group, "processingTimeout": "100ms", "redeliverInterval": "50ms"})
	got := make(chan *pubsub.Message, 1)
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: stream}, func(_ context.Context, m *pubsub.Message) error {
		select {
		case got <- m:
		default:
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Data) != "orphan" {
			t.Fatalf("delivered %q", m.Data)
		}
	case <-ctx.Done():
		t.Fatalf("the dead consumer's message was never reclaimed: %v", ctx.Err())
	}
	waitFor(ctx, t, "the reclaimed message is acknowledged", func() bool { return pending(ctx, t, c, stream, group) == 0 })
}

// TestReclaimSkipsDeletedEntries: an entry deleted while pending is cleared from the
// pending list rather than reclaimed over and over.
func TestReclaimSkipsDeletedEntries(t *testing.T) {
	ctx := testCtx(t)
	c := rawClient(t)
	stream, group := newStreams(t).add(uniq("deleted")), uniq("g")
	id := leavePending(ctx, t, c, stream, group, "gone")
	if err := c.XDel(ctx, stream, id).Err(); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	p := openClosed(t, map[string]string{"consumerID": group, "processingTimeout": "1ms", "redeliverInterval": "20ms"})
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: stream}, func(context.Context, *pubsub.Message) error {
		calls.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the deleted entry leaves the pending list", func() bool { return pending(ctx, t, c, stream, group) == 0 })
	if n := calls.Load(); n != 0 {
		t.Errorf("the handler was called %d times for a deleted entry", n)
	}
}

// TestCloseWaitsForHandlers: Close cancels the handlers' context and returns only once
// they have returned; what they did not finish stays pending.
func TestCloseWaitsForHandlers(t *testing.T) {
	ctx := testCtx(t)
	c := rawClient(t)
	stream, group := newStreams(t).add(uniq("close")), uniq("g")
	p := open(t, map[string]string{"consumerID": group})
	started := make(chan struct{})
	var returned atomic.Bool
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: stream}, func(hctx context.Context, _ *pubsub.Message) error {
		close(started)
		<-hctx.Done()
		returned.Store(true)
		return hctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: stream, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the message never reached the handler")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !returned.Load() {
		t.Fatal("Close returned before the handler did")
	}
	if n := pending(ctx, t, c, stream, group); n != 1 {
		t.Errorf("%d messages pending after Close interrupted the handler, want 1", n)
	}
	// The consumer holding it stays, so that it can be reclaimed from.
	if names := consumers(ctx, t, c, stream, group); len(names) != 1 {
		t.Errorf("consumers after Close: %v", names)
	}
}

// TestConsumersAreCleanedUp: a closed subscription leaves no consumer behind when it
// holds nothing, and a dead consumer that holds nothing is pruned after pruneIdle.
func TestConsumersAreCleanedUp(t *testing.T) {
	ctx := testCtx(t)
	c := rawClient(t)
	stream, group := newStreams(t).add(uniq("prune")), uniq("g")
	id := leavePending(ctx, t, c, stream, group, "done")
	if err := c.XAck(ctx, stream, group, id).Err(); err != nil {
		t.Fatal(err)
	}
	p := New()
	// Any consumer that holds nothing, however briefly silent.
	p.pruneIdle = 0
	if err := p.Init(ctx, components.Metadata{Properties: map[string]string{"redisHost": testAddr, "consumerID": group, "redeliverInterval": "20ms", "processingTimeout": "1s"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	delivered := make(chan struct{}, 1)
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: stream}, func(context.Context, *pubsub.Message) error {
		delivered <- struct{}{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the dead consumer is pruned", func() bool {
		for _, n := range consumers(ctx, t, c, stream, group) {
			if n == "dead" {
				return false
			}
		}
		return true
	})
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: stream, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-delivered:
	case <-ctx.Done():
		t.Fatal("message not delivered")
	}
	waitFor(ctx, t, "the message is acknowledged", func() bool { return pending(ctx, t, c, stream, group) == 0 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if names := consumers(ctx, t, c, stream, group); len(names) != 0 {
		t.Errorf("consumers left after Close: %v", names)
	}
}

func TestAckOnError(t *testing.T) {
	ctx := testCtx(t)
	c := rawClient(t)
	stream, group := newStreams(t).add(uniq("ackonerror")), uniq("g")
	p := openClosed(t, map[string]string{"consumerID": group, "ackOnError": "true"})
	var calls atomic.Int64
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: stream}, func(context.Context, *pubsub.Message) error {
		calls.Add(1)
		return context.DeadlineExceeded
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: stream, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the failed message is acknowledged", func() bool {
		return calls.Load() == 1 && pending(ctx, t, c, stream, group) == 0
	})
}
