package mqtt3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub/conformance"
)

// testURL is the loopback Mosquitto of the development machine; OUTRIGGER_TEST_MQTT
// overrides it with a URL or a host:port.
var testURL = func() string {
	v := os.Getenv("OUTRIGGER_TEST_MQTT")
	switch {
	case v == "":
		return "tcp://127.0.0.1:1883"
	case !strings.Contains(v, "://"):
		return "tcp://" + v
	}
	return v
}()

func needBroker(t *testing.T) {
	t.Helper()
	u, err := url.Parse(testURL)
	if err != nil {
		t.Fatalf("OUTRIGGER_TEST_MQTT: %v", err)
	}
	testproc.RequireServer(t, "Mosquitto", u.Host)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func uniq(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "mqtt3-test-" + prefix + "-" + hex.EncodeToString(b)
}

// newInstance returns an initialised component consuming as consumerID. The caller
// closes it.
func newInstance(t *testing.T, consumerID string) *PubSub {
	t.Helper()
	needBroker(t)
	// Registered before the caller's Close, so it runs after it.
	t.Cleanup(func() { wipeSession(t, consumerID) })
	p := New()
	err := p.Init(testCtx(t), components.Metadata{Name: "mqtt", Type: TypeName, AppID: "app",
		Properties: map[string]string{"url": testURL, "consumerID": consumerID}})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return p
}

// wipeSession removes a test's persistent session from the shared broker (which
// would keep it, and its subscriptions, for ever) by connecting with a clean session.
func wipeSession(t *testing.T, clientID string) {
	u, err := url.Parse(testURL)
	if err != nil {
		return
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + u.Host).SetClientID(clientID).SetCleanSession(true))
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Logf("wipe session %q: %v", clientID, tok.Error())
		return
	}
	c.Disconnect(100)
}

func TestConformance(t *testing.T) {
	needBroker(t)
	conformance.Run(t, conformance.Config{
		New: func(t *testing.T, group string) pubsub.PubSub {
			return newInstance(t, group)
		},
		// A failed handler is called again after 100 ms here; a dead consumer's
		// messages come back as soon as the next one connects.
		Redelivery: 2 * time.Second,
		// Consumers of one ID share a session, and take it from each other.
		NoCompetingConsumers: true,
	})
}

func TestOptions(t *testing.T) {
	const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	tests := []struct {
		name    string
		props   map[string]string
		appID   string
		wantErr string // a fragment of the error; "" when it must succeed
		check   func(t *testing.T, o options, b broker)
	}{
		{name: "url is required", props: map[string]string{}, appID: "app", wantErr: `"url" is required`},
		{name: "qos above 2", props: map[string]string{"url": "tcp://h:1883", "qos": "3"}, appID: "app", wantErr: `"qos": 3 must be 0, 1 or 2`},
		{name: "qos not a number", props: map[string]string{"url": "tcp://h:1883", "qos": "-1"}, appID: "app", wantErr: `"qos"`},
		{name: "cleanSession not a boolean", props: map[string]string{"url": "tcp://h", "cleanSession": "maybe"}, appID: "app", wantErr: `"cleanSession"`},
		{name: "unknown scheme", props: map[string]string{"url": "http://h"}, appID: "app", wantErr: `"url": scheme "http"`},
		{name: "not a URL", props: map[string]string{"url": "h:1883"}, appID: "app", wantErr: `"url" is not a URL`},
		{name: "no consumer ID", props: map[string]string{"url": "tcp://h"}, wantErr: `"consumerID" is required`},
		{name: "client cert without key", props: map[string]string{"url": "ssl://h", "clientCert": pem}, appID: "app", wantErr: `"clientCert" and "clientKey"`},
		{name: "caCert without a certificate", props: map[string]string{"url": "ssl://h", "caCert": "nope"}, appID: "app", wantErr: `"caCert"`},
		{
			name: "Dapr's defaults", props: map[string]string{"url": "tcp://h"}, appID: "app",
			check: func(t *testing.T, o options, b broker) {
				if o.QoS != 1 || o.Retain || o.CleanSession || o.ConsumerID != "app" {
					t.Errorf("options = %+v, want qos 1, retain false, cleanSession false, consumerID app", o)
				}
				if b.addr != "tcp://h:1883" || b.tls != nil {
					t.Errorf("broker = %+v, want tcp://h:1883 without TLS", b)
				}
			},
		},
		{
			name: "credentials and a TLS alias", props: map[string]string{"url": "mqtts://user:p%40ss@h", "consumerID": "c", "QOS": "2"}, appID: "app",
			check: func(t *testing.T, o options, b broker) {
				if o.QoS != 2 || o.ConsumerID != "c" {
					t.Errorf("options = %+v, want qos 2 and consumerID c", o)
				}
				if b.addr != "ssl://h:8883" || b.username != "user" || b.password != "p@ss" || b.tls == nil {
					t.Errorf("broker = %+v, want ssl://h:8883 as user with TLS", b)
				}
			},
		},
		{
			name: "websocket keeps its path", props: map[string]string{"url": "ws://h:8080/mqtt"}, appID: "app",
			check: func(t *testing.T, _ options, b broker) {
				if b.addr != "ws://h:8080/mqtt" {
					t.Errorf("broker address = %q, want ws://h:8080/mqtt", b.addr)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, b, err := parseOptions(components.Metadata{AppID: tt.appID, Properties: tt.props})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o, b)
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/#", "a/b/c", true},
		{"a/#", "a", true},
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$share/g/a/+", "a/b", true},
		{"$share/g/a/+", "b/b", false},
		{"$queue/a", "a", true},
		{"a", "a/b", false},
	}
	for _, tt := range tests {
		if got := matches(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestBadTopicsAreRefusedBeforeTheBroker(t *testing.T) {
	p := New()
	defer p.Close()
	ctx := testCtx(t)
	h := func(context.Context, *pubsub.Message) error { return nil }
	for _, f := range []string{"", "a/#/b", "a/b#", "a/x+", "$share/g"} {
		if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: f}, h); err == nil {
			t.Errorf("Subscribe(%q) succeeded", f)
		}
	}
	for _, topic := range []string{"", "a/+", "a/#"} {
		if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic}); err == nil {
			t.Errorf("Publish(%q) succeeded", topic)
		}
	}
}

func TestCloseAfterFailedInit(t *testing.T) {
	p := New()
	// Port 1 on loopback refuses at once.
	err := p.Init(testCtx(t), components.Metadata{Name: "mqtt", AppID: "app",
		Properties: map[string]string{"url": "tcp://user:s3cret@127.0.0.1:1"}})
	if err == nil {
		t.Fatal("Init succeeded against a closed port")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Init's error shows the password: %v", err)
	}
	for range 2 {
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := p.Publish(testCtx(t), &pubsub.PublishRequest{Topic: "t"}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}

func TestPublishAfterCloseFails(t *testing.T) {
	p := newInstance(t, uniq("c"))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(testCtx(t), &pubsub.PublishRequest{Topic: uniq("t")}); !errors.Is(err, errClosed) {
		t.Fatalf("Publish after Close: %v, want %v", err, errClosed)
	}
	h := func(context.Context, *pubsub.Message) error { return nil }
	if err := p.Subscribe(testCtx(t), pubsub.SubscribeRequest{Topic: uniq("t")}, h); !errors.Is(err, errClosed) {
		t.Fatalf("Subscribe after Close: %v, want %v", err, errClosed)
	}
}

// collect is a handler that passes each message's data on.
func collect(ch chan<- string) pubsub.Handler {
	return func(ctx context.Context, m *pubsub.Message) error {
		select {
		case ch <- string(m.Data):
		case <-ctx.Done():
		}
		return nil
	}
}

func receive(ctx context.Context, t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-ctx.Done():
		t.Fatalf("no message arrived: %v", ctx.Err())
		return ""
	}
}

func TestSubscriptionConsumerIDOverride(t *testing.T) {
	ctx := testCtx(t)
	p := newInstance(t, uniq("c"))
	defer p.Close()
	other, topic := uniq("c"), uniq("t")
	t.Cleanup(func() { wipeSession(t, other) })
	got := make(chan string, 1)
	req := pubsub.SubscribeRequest{Topic: topic, Metadata: map[string]string{pubsub.ConsumerIDKey: other}}
	if err := p.Subscribe(ctx, req, collect(got)); err != nil {
		t.Fatal(err)
	}
	if err := p.Subscribe(ctx, req, collect(got)); err == nil {
		t.Error("a second subscription of one consumer to one topic was accepted")
	}
	p.mu.Lock()
	_, ok := p.sessions[other]
	p.mu.Unlock()
	if !ok {
		t.Errorf("no session for the subscription's consumerID %q", other)
	}
	if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	if m := receive(ctx, t, got); m != "hello" {
		t.Fatalf("received %q", m)
	}
}

// A resumed session sends what it held for every topic as soon as it connects, before
// the subscriptions of the other topics are back; those messages must wait for them.
func TestHeldMessageWaitsForItsSubscription(t *testing.T) {
	ctx := testCtx(t)
	group, topicA, topicB := uniq("c"), uniq("a"), uniq("b")

	first := newInstance(t, group)
	defer first.Close()
	failing := make(chan struct{}, 1)
	if err := first.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topicB}, func(context.Context, *pubsub.Message) error {
		select {
		case failing <- struct{}{}:
		default:
		}
		return errors.New("fails on purpose")
	}); err != nil {
		t.Fatal(err)
	}
	if err := first.Publish(ctx, &pubsub.PublishRequest{Topic: topicB, Data: []byte("held")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-failing:
	case <-ctx.Done():
		t.Fatal("the first consumer never got the message")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := newInstance(t, group)
	defer second.Close()
	if err := second.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topicA}, collect(make(chan string, 8))); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	if err := second.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topicB}, collect(got)); err != nil {
		t.Fatal(err)
	}
	if m := receive(ctx, t, got); m != "held" {
		t.Fatalf("received %q, want the held message", m)
	}
}

// After the broker drops the connection and forgets the session, the component
// reconnects and subscribes again.
func TestResubscribesAfterReconnect(t *testing.T) {
	ctx := testCtx(t)
	group, topic := uniq("c"), uniq("t")
	p := newInstance(t, group)
	defer p.Close()
	got := make(chan string, 16)
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, collect(got)); err != nil {
		t.Fatal(err)
	}

	// A clean connection with the same client ID takes the session over: the broker
	// drops the component's connection and discards the session's subscriptions.
	u, _ := url.Parse(testURL)
	thief := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + u.Host).SetClientID(group).SetCleanSession(true))
	if tok := thief.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as %q: %v", group, tok.Error())
	}
	thief.Disconnect(100)

	// Messages published before the subscription is back are lost to the group, so
	// publish until one arrives.
	for i := 0; ; i++ {
		if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			return
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("no message after the reconnection: %v", ctx.Err())
		}
	}
}
