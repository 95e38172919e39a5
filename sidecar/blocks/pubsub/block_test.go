package pubsub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub/memory"
)

// fakeComponents serves named in-memory brokers; swap replaces one, as a hot reload
// does.
type fakeComponents struct {
	mu  sync.Mutex
	ps  map[string]*components.Slot[pubsub.PubSub]
	scp map[string]Scopes
}

func newFakeComponents(t *testing.T, names ...string) *fakeComponents {
	f := &fakeComponents{ps: map[string]*components.Slot[pubsub.PubSub]{}, scp: map[string]Scopes{}}
	for _, n := range names {
		f.ps[n] = components.NewSlot[pubsub.PubSub](newBus(t))
	}
	t.Cleanup(func() {
		for _, s := range f.ps {
			<-s.Close()
		}
	})
	return f
}

func newBus(t *testing.T) pubsub.PubSub {
	b := memory.New()
	if err := b.Init(context.Background(), components.Metadata{AppID: "app", Properties: map[string]string{"redeliverInterval": "10ms"}}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fakeComponents) Acquire(name string) (Handle, func(), bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.ps[name]
	if s == nil {
		return Handle{}, func() {}, false
	}
	p, release, ok := s.Acquire()
	return Handle{PubSub: p, Scopes: f.scp[name]}, release, ok
}

func (f *fakeComponents) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.ps {
		out = append(out, n)
	}
	return out
}

// fakeApp answers deliveries with a scripted status per path.
type fakeApp struct {
	mu     sync.Mutex
	subs   []Subscription
	answer func(d *Delivery, n int) (Status, error)
	got    map[string][]*Delivery
	ch     chan struct{}
}

func newFakeApp(subs []Subscription, answer func(d *Delivery, n int) (Status, error)) *fakeApp {
	return &fakeApp{subs: subs, answer: answer, got: map[string][]*Delivery{}, ch: make(chan struct{}, 1)}
}

func (a *fakeApp) Subscriptions(context.Context) ([]Subscription, error) { return a.subs, nil }

func (a *fakeApp) Deliver(_ context.Context, d *Delivery) (Status, error) {
	a.mu.Lock()
	a.got[d.Path] = append(a.got[d.Path], d)
	n := len(a.got[d.Path])
	a.mu.Unlock()
	select {
	case a.ch <- struct{}{}:
	default:
	}
	if a.answer == nil {
		return StatusSuccess, nil
	}
	return a.answer(d, n)
}

func (a *fakeApp) DeliverBulk(ctx context.Context, d *BulkDelivery) (map[string]Status, error) {
	out := map[string]Status{}
	for _, e := range d.Entries {
		st, err := a.Deliver(ctx, &Delivery{Event: e.Event, Path: d.Path, PubsubName: d.PubsubName, Topic: d.Topic})
		if err != nil {
			return nil, err
		}
		out[e.EntryID] = st
	}
	return out, nil
}

func (a *fakeApp) wait(ctx context.Context, t *testing.T, path string, n int) []*Delivery {
	t.Helper()
	for {
		a.mu.Lock()
		got := a.got[path]
		a.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-a.ch:
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("%s: %d of %d deliveries: %v", path, len(got), n, ctx.Err())
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newBlock(t *testing.T, comps Components, app App) *Block {
	b := &Block{AppID: "app", PubSubs: comps, App: app, Log: testr.New(t)}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	return b
}

func TestPublishErrors(t *testing.T) {
	comps := newFakeComponents(t, "ps")
	comps.scp["ps"] = ParseScopes(map[string]string{"publishingScopes": "app=ok"}, "app")
	b := newBlock(t, comps, nil)
	ctx := testCtx(t)
	cases := []struct {
		name string
		req  PublishRequest
		code apierrors.Code
	}{
		{"empty name", PublishRequest{Topic: "ok"}, apierrors.PubsubEmpty},
		{"unknown", PublishRequest{PubsubName: "nope", Topic: "ok"}, apierrors.PubsubNotFound},
		{"empty topic", PublishRequest{PubsubName: "ps"}, apierrors.TopicNameEmpty},
		{"forbidden", PublishRequest{PubsubName: "ps", Topic: "no"}, apierrors.PubsubForbidden},
		{"bad cloud event", PublishRequest{PubsubName: "ps", Topic: "ok", ContentType: "application/cloudevents+json", Data: []byte("[1]")}, apierrors.PubsubCloudEventsSer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := b.Publish(ctx, &c.req)
			var ae *apierrors.Error
			if !errors.As(err, &ae) || ae.Code != c.code {
				t.Fatalf("Publish = %v, want %s", err, c.code.Name)
			}
		})
	}
	if err := newBlock(t, newFakeComponents(t), nil).Publish(ctx, &PublishRequest{PubsubName: "ps", Topic: "t"}); apierrors.As(err).Code != apierrors.PubsubNotConfigured {
		t.Errorf("no pub/sub at all: %v", err)
	}
	if apierrors.PubsubForbidden.HTTPStatus != http.StatusForbidden {
		t.Error("forbidden is not 403")
	}
}

func TestDeliveryOutcomes(t *testing.T) {
	comps := newFakeComponents(t, "ps")
	app := newFakeApp([]Subscription{
		{PubsubName: "ps", Topic: "ok", Default: "/ok"},
		{PubsubName: "ps", Topic: "flaky", Default: "/flaky"},
		{PubsubName: "ps", Topic: "drop", Default: "/drop", DeadLetterTopic: "dead"},
		{PubsubName: "ps", Topic: "fail", Default: "/fail", DeadLetterTopic: "dead"},
		{PubsubName: "ps", Topic: "dead", Default: "/dead"},
	}, func(d *Delivery, n int) (Status, error) {
		switch d.Path {
		case "/flaky":
			if n < 3 {
				return StatusRetry, nil
			}
		case "/drop":
			return StatusDrop, nil
		case "/fail":
			return StatusRetry, errors.New("app down")
		}
		return StatusSuccess, nil
	})
	b := newBlock(t, comps, app)
	var mu sync.Mutex
	outcomes := map[string]int{}
	b.OnIngress = func(_, topic, outcome string) { mu.Lock(); outcomes[topic+"/"+outcome]++; mu.Unlock() }
	ctx := testCtx(t)
	b.Start(ctx)
	for _, topic := range []string{"ok", "flaky", "drop", "fail"} {
		if err := b.Publish(ctx, &PublishRequest{PubsubName: "ps", Topic: topic, Data: []byte(`{"t":"` + topic + `"}`), ContentType: "application/json"}); err != nil {
			t.Fatal(err)
		}
	}
	ev := app.wait(ctx, t, "/ok", 1)[0].Event
	if ev["source"] != "app" || ev["topic"] != "ok" || ev["pubsubname"] != "ps" {
		t.Errorf("delivered event: %v", ev)
	}
	app.wait(ctx, t, "/flaky", 3)
	// Both the dropped and the failed message reach the dead-letter topic, once each.
	dead := app.wait(ctx, t, "/dead", 2)
	topics := map[any]bool{}
	for _, d := range dead {
		topics[d.Event["topic"]] = true
	}
	if !topics["drop"] || !topics["fail"] {
		t.Errorf("dead-letter deliveries carry topics %v, want drop and fail", topics)
	}
	// The outcome is counted once the app's answer is settled, just after the app saw
	// the delivery: wait for it.
	for {
		mu.Lock()
		done := outcomes["flaky/success"] == 1 && outcomes["drop/drop"] == 1
		flakyRetries := outcomes["flaky/retry"]
		snapshot := fmt.Sprint(outcomes)
		mu.Unlock()
		if done {
			if flakyRetries != 2 {
				t.Errorf("ingress outcomes: %s, want 2 retries of flaky", snapshot)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ingress outcomes: %s", snapshot)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestSubscriptionsFollowTheComponent(t *testing.T) {
	comps := newFakeComponents(t, "ps")
	app := newFakeApp(nil, nil)
	b := newBlock(t, comps, app)
	b.SetDeclared([]Subscription{{PubsubName: "ps", Topic: "t", Default: "/t"}, {PubsubName: "missing", Topic: "t", Default: "/m"}})
	ctx := testCtx(t)
	b.Start(ctx)
	infos := b.Subscriptions()
	if len(infos) != 2 || infos[0].PubsubName != "missing" || infos[0].Error == "" || infos[1].Error != "" || infos[1].Type != Declarative {
		t.Fatalf("subscriptions: %+v", infos)
	}
	// Swap the broker: the subscription moves to the new instance.
	comps.mu.Lock()
	old := comps.ps["ps"].Swap(newBus(t))
	comps.mu.Unlock()
	b.ComponentChanged("ps")
	if err := <-old; err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, &PublishRequest{PubsubName: "ps", Topic: "t", Data: []byte("x"), ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	app.wait(ctx, t, "/t", 1)
	// Removing the declaration unsubscribes.
	b.SetDeclared(nil)
	if got := b.Subscriptions(); len(got) != 0 {
		t.Fatalf("after removal: %+v", got)
	}
}

func TestBulkSubscribeDeliversBatches(t *testing.T) {
	comps := newFakeComponents(t, "ps")
	app := newFakeApp([]Subscription{{PubsubName: "ps", Topic: "bulk", Default: "/bulk",
		Bulk: BulkSubscribe{Enabled: true, MaxMessages: 5, MaxAwait: 50 * time.Millisecond}}}, nil)
	b := newBlock(t, comps, app)
	ctx := testCtx(t)
	b.Start(ctx)
	for i := range 12 {
		if err := b.Publish(ctx, &PublishRequest{PubsubName: "ps", Topic: "bulk", Data: []byte{'0' + byte(i%10)}, ContentType: "text/plain"}); err != nil {
			t.Fatal(err)
		}
	}
	app.wait(ctx, t, "/bulk", 12)
}

// flakyApp fails its first answers to the subscription request.
type flakyApp struct {
	*fakeApp
	failures int
	asked    int
}

func (a *flakyApp) Subscriptions(ctx context.Context) ([]Subscription, error) {
	a.asked++
	if a.asked <= a.failures {
		return nil, errors.New("routes not mounted yet")
	}
	return a.fakeApp.Subscriptions(ctx)
}

func TestStartAsksAgainWhenTheAppIsNotReady(t *testing.T) {
	comps := newFakeComponents(t, "ps")
	app := &flakyApp{fakeApp: newFakeApp([]Subscription{{PubsubName: "ps", Topic: "t", Default: "/t"}}, nil), failures: 2}
	b := newBlock(t, comps, app)
	b.Start(testCtx(t))
	if got := b.Subscriptions(); len(got) != 1 || got[0].Error != "" {
		t.Fatalf("after two failed asks the subscription should be in force: %+v (asked %d times)", got, app.asked)
	}
}
