package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dapr/go-sdk/service/common"
	daprgrpc "github.com/dapr/go-sdk/service/grpc"
	daprhttp "github.com/dapr/go-sdk/service/http"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

// memoryPubsub is a pub/sub every test sidecar loads; publisher and subscriber share a
// sidecar, as the in-memory broker lives in one process.
const memoryPubsub = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.in-memory
  version: v1
  metadata:
  - name: redeliverInterval
    value: 100ms
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: scoped
spec:
  type: pubsub.in-memory
  version: v1
  metadata:
  - name: publishingScopes
    value: "sub=allowed"
`

// topicEvents collects what an SDK handler got, by topic.
type topicEvents struct {
	mu     sync.Mutex
	events map[string][]*common.TopicEvent
	ch     chan struct{}
}

func newTopicEvents() *topicEvents {
	return &topicEvents{events: map[string][]*common.TopicEvent{}, ch: make(chan struct{}, 1)}
}

func (e *topicEvents) handler(_ context.Context, ev *common.TopicEvent) (bool, error) {
	e.mu.Lock()
	e.events[ev.Topic] = append(e.events[ev.Topic], ev)
	e.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
	default:
	}
	return false, nil
}

// wait returns the first n events of a topic, or fails at the deadline.
func (e *topicEvents) wait(ctx context.Context, t *testing.T, topic string, n int) []*common.TopicEvent {
	t.Helper()
	for {
		e.mu.Lock()
		got := e.events[topic]
		e.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-e.ch:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("topic %s: %d of %d events arrived: %v", topic, len(got), n, ctx.Err())
		}
	}
}

func listen(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// The Dapr Go SDK publishes (gRPC PublishEvent) and an SDK HTTP service subscribes
// through /dapr/subscribe: the event arrives as a CloudEvent with Dapr's fields.
func TestPubsubSDKHTTPSubscriber(t *testing.T) {
	port := testproc.FreePort(t)
	svc := daprhttp.NewService(fmt.Sprintf("127.0.0.1:%d", port))
	events := newTopicEvents()
	for _, topic := range []string{"orders", "raw"} {
		if err := svc.AddTopicEventHandler(&common.Subscription{PubsubName: "pubsub", Topic: topic, Route: "/" + topic}, events.handler); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = svc.Start() }()
	t.Cleanup(func() { _ = svc.Stop() })

	sc := testproc.Start(t, "sub", testproc.WriteResources(t, map[string]string{"pubsub.yaml": memoryPubsub}), nil, "--app-port", strconv.Itoa(port))
	sc.WaitHealthy(t)
	waitSubscribed(t, sc, "pubsub", "orders")
	client := sdkClient(t, sc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := client.PublishEvent(ctx, "pubsub", "orders", map[string]any{"orderId": 7}); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	ev := events.wait(ctx, t, "orders", 1)[0]
	if ev.Source != "sub" || ev.Type != "com.dapr.event.sent" || ev.SpecVersion != "1.0" || ev.PubsubName != "pubsub" ||
		ev.Topic != "orders" || ev.DataContentType != "application/json" || ev.ID == "" {
		t.Errorf("event attributes: %+v", ev)
	}
	var order struct {
		OrderID int `json:"orderId"`
	}
	if err := ev.Struct(&order); err != nil || order.OrderID != 7 {
		t.Errorf("event data = %s (%v)", ev.RawData, err)
	}

	// Plain HTTP with text, and a rawPayload publish that the SDK receives as is.
	code, _, body := testproc.Do(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/orders"), "hello", "Content-Type", "text/plain")
	if code != http.StatusNoContent {
		t.Fatalf("HTTP publish: %d %s", code, body)
	}
	if got := events.wait(ctx, t, "orders", 2)[1]; got.Data != "hello" || got.DataContentType != "text/plain" {
		t.Errorf("text event: data %#v, content type %q", got.Data, got.DataContentType)
	}
}

func waitSubscribed(t *testing.T, sc *testproc.Sidecar, pubsubName, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, _, body := testproc.Do(t, http.MethodGet, sc.URL("/v1.0/metadata"), "")
		var md struct {
			Subscriptions []struct {
				PubsubName string `json:"pubsubname"`
				Topic      string `json:"topic"`
				Error      string `json:"error"`
			} `json:"subscriptions"`
		}
		_ = json.Unmarshal([]byte(body), &md)
		for _, s := range md.Subscriptions {
			if s.PubsubName == pubsubName && s.Topic == topic && s.Error == "" {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("subscription %s/%s never came into force; metadata: %s", pubsubName, topic, body)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// An SDK gRPC service subscribes through ListTopicSubscriptions and gets OnTopicEvent.
func TestPubsubSDKGRPCSubscriber(t *testing.T) {
	ln, port := listen(t)
	svc := daprgrpc.NewServiceWithListener(ln)
	events := newTopicEvents()
	if err := svc.AddTopicEventHandler(&common.Subscription{PubsubName: "pubsub", Topic: "orders"}, events.handler); err != nil {
		t.Fatal(err)
	}
	go func() { _ = svc.Start() }()
	t.Cleanup(func() { _ = svc.Stop() })

	sc := testproc.Start(t, "gsub", testproc.WriteResources(t, map[string]string{"pubsub.yaml": memoryPubsub}), nil,
		"--app-port", strconv.Itoa(port), "--app-protocol", "grpc")
	sc.WaitHealthy(t)
	waitSubscribed(t, sc, "pubsub", "orders")
	client := sdkClient(t, sc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.PublishEvent(ctx, "pubsub", "orders", []byte(`{"orderId":9}`)); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	ev := events.wait(ctx, t, "orders", 1)[0]
	if ev.Source != "gsub" || ev.Type != "com.dapr.event.sent" || ev.PubsubName != "pubsub" || ev.Topic != "orders" {
		t.Errorf("event attributes: %+v", ev)
	}
	if !strings.Contains(string(ev.RawData), `"orderId":9`) {
		t.Errorf("event data = %s", ev.RawData)
	}
}

// A plain HTTP app: declarative routing rules over the CloudEvent, rawPayload both
// ways, RETRY then SUCCESS, and DROP into the dead-letter topic.
func TestPubsubRoutingRetryDropAndDeadLetter(t *testing.T) {
	type hit struct {
		path string
		body map[string]any
	}
	var mu sync.Mutex
	var hits []hit
	retried := map[string]int{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/dapr/subscribe" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`[{"pubsubname":"pubsub","topic":"flaky","route":"/flaky"},
				{"pubsubname":"pubsub","topic":"doomed","route":"/doomed","deadLetterTopic":"dead"},
				{"pubsubname":"pubsub","topic":"dead","route":"/dead"}]`))
			return
		}
		var ev map[string]any
		_ = json.Unmarshal(b, &ev)
		if ct := r.Header.Get("Content-Type"); ct != "application/cloudevents+json" {
			t.Errorf("delivery content type = %q", ct)
		}
		mu.Lock()
		hits = append(hits, hit{r.URL.Path, ev})
		id, _ := ev["id"].(string)
		retried[id]++
		n := retried[id]
		mu.Unlock()
		switch r.URL.Path {
		case "/flaky":
			if n == 1 {
				_, _ = w.Write([]byte(`{"status":"RETRY"}`))
				return
			}
			_, _ = w.Write([]byte(`{"status":"SUCCESS"}`))
		case "/doomed":
			_, _ = w.Write([]byte(`{"status":"DROP"}`))
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(app.Close)
	port := app.Listener.Addr().(*net.TCPAddr).Port

	routed := `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: widgets
spec:
  pubsubname: pubsub
  topic: widgets
  routes:
    rules:
    - match: event.data.kind == "gear"
      path: /gears
    - match: event.type == "custom.type"
      path: /custom
    default: /widgets
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: rawsub
spec:
  pubsubname: pubsub
  topic: rawtopic
  route: /raw
  metadata:
    rawPayload: "true"
`
	sc := testproc.Start(t, "sub", testproc.WriteResources(t, map[string]string{"pubsub.yaml": memoryPubsub, "subs.yaml": routed}), nil,
		"--app-port", strconv.Itoa(port))
	sc.WaitHealthy(t)
	for _, topic := range []string{"widgets", "rawtopic", "flaky", "doomed", "dead"} {
		waitSubscribed(t, sc, "pubsub", topic)
	}
	publish := func(path, body string, hdr ...string) {
		t.Helper()
		code, _, out := testproc.Do(t, http.MethodPost, sc.URL(path), body, hdr...)
		if code != http.StatusNoContent {
			t.Fatalf("POST %s: %d %s", path, code, out)
		}
	}
	publish("/v1.0/publish/pubsub/widgets", `{"kind":"gear"}`, "Content-Type", "application/json")
	publish("/v1.0/publish/pubsub/widgets", `{"kind":"cog"}`, "Content-Type", "application/json")
	publish("/v1.0/publish/pubsub/widgets?metadata.cloudevent.type=custom.type", `{"kind":"cog"}`, "Content-Type", "application/json")
	publish("/v1.0/publish/pubsub/rawtopic?metadata.rawPayload=true", `not a cloud event`, "Content-Type", "text/plain")
	publish("/v1.0/publish/pubsub/flaky", `{"n":1}`, "Content-Type", "application/json")
	publish("/v1.0/publish/pubsub/doomed", `{"n":2}`, "Content-Type", "application/json")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	count := func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, h := range hits {
			if h.path == path {
				n++
			}
		}
		return n
	}
	want := map[string]int{"/gears": 1, "/widgets": 1, "/custom": 1, "/raw": 1, "/flaky": 2, "/doomed": 1, "/dead": 1}
	for {
		done := true
		for p, n := range want {
			if count(p) < n {
				done = false
			}
		}
		if done {
			break
		}
		select {
		case <-ctx.Done():
			mu.Lock()
			t.Fatalf("deliveries so far: %+v", hits)
		case <-time.After(20 * time.Millisecond):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range hits {
		switch h.path {
		case "/raw":
			// A raw message reaches a rawPayload subscription wrapped in an envelope
			// whose data_base64 holds the bytes as published.
			if h.body["data_base64"] != "bm90IGEgY2xvdWQgZXZlbnQ=" {
				t.Errorf("raw delivery: %v", h.body)
			}
		case "/dead":
			// The dead-letter topic gets the original envelope.
			if h.body["topic"] != "doomed" {
				t.Errorf("dead-letter delivery: %v", h.body)
			}
		}
	}
}

// Errors a publisher sees: 403 outside publishingScopes, 404 for an unknown pub/sub,
// 400 for a body that claims to be a CloudEvent and is not.
func TestPubsubPublishErrors(t *testing.T) {
	sc := testproc.Start(t, "sub", testproc.WriteResources(t, map[string]string{"pubsub.yaml": memoryPubsub}), nil)
	sc.WaitHealthy(t)
	cases := []struct {
		name, path, body, ct string
		code                 int
		errorCode            string
	}{
		{"allowed topic", "/v1.0/publish/scoped/allowed", `{}`, "application/json", http.StatusNoContent, ""},
		{"topic outside publishingScopes", "/v1.0/publish/scoped/other", `{}`, "application/json", http.StatusForbidden, "ERR_PUBSUB_FORBIDDEN"},
		{"unknown pubsub", "/v1.0/publish/nope/orders", `{}`, "application/json", http.StatusNotFound, "ERR_PUBSUB_NOT_FOUND"},
		{"malformed cloud event", "/v1.0/publish/pubsub/orders", `{"specversion":`, "application/cloudevents+json", http.StatusBadRequest, "ERR_PUBSUB_CLOUD_EVENTS_SER"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := testproc.Do(t, http.MethodPost, sc.URL(c.path), c.body, "Content-Type", c.ct)
			if code != c.code || (c.errorCode != "" && !strings.Contains(body, `"errorCode":"`+c.errorCode+`"`)) {
				t.Fatalf("got %d %s, want %d %s", code, body, c.code, c.errorCode)
			}
		})
	}
	// The SDK sees the same refusal as a gRPC PermissionDenied.
	client := sdkClient(t, sc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.PublishEvent(ctx, "scoped", "other", []byte("x")); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("SDK publish to a forbidden topic: %v", err)
	}
}
