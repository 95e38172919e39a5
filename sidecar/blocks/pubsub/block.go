package pubsub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub/envelope"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub/routing"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// OpDeliver names deliveries to the app for resiliency policies (a component's inbound
// policy), metrics and traces.
const OpDeliver = "pubsub.deliver"

// Subscription types as the metadata API reports them.
const (
	Declarative  = "DECLARATIVE"
	Programmatic = "PROGRAMMATIC"
)

// Processing outcomes of a delivered message, as Dapr's ingress metric labels them.
const (
	OutcomeSuccess = "success"
	OutcomeRetry   = "retry"
	OutcomeDrop    = "drop"
)

// Block is the pub/sub building block. Its exported fields are set before Start.
type Block struct {
	AppID     string
	Namespace string
	PubSubs   Components
	// Runner is the resiliency seam of publishes and deliveries; nil runs them once.
	Runner resiliency.Runner
	// Env builds and reads CloudEvents; the zero value uses the wall clock and random
	// ids.
	Env envelope.Env
	// App delivers messages to the app and lists its programmatic subscriptions; nil
	// when the sidecar has no app, so that nothing is subscribed.
	App App
	Log logr.Logger
	// OnIngress, when set, counts each processed message by outcome (a metric).
	OnIngress func(pubsubName, topic, outcome string)

	mu           sync.Mutex
	declared     []Subscription
	programmatic []Subscription
	running      map[subKey]*running
	started      bool
	stopped      bool
	// deliveries counts the handler calls in flight, so that Stop can wait for them.
	deliveries sync.WaitGroup
}

var _ API = (*Block)(nil)

type subKey struct{ pubsub, topic string }

// Subscription is one topic the app subscribes to.
type Subscription struct {
	PubsubName string
	Topic      string
	// Metadata goes to the component with the subscription; rawPayload=true makes the
	// block wrap raw messages in a CloudEvent.
	Metadata        map[string]string
	Rules           []RuleInfo
	Default         string
	DeadLetterTopic string
	Bulk            BulkSubscribe
	Type            string
}

// BulkSubscribe delivers messages to the app in batches.
type BulkSubscribe struct {
	Enabled     bool
	MaxMessages int
	MaxAwait    time.Duration
}

// Defaults of bulk subscriptions, Dapr's.
const (
	DefaultBulkMaxMessages = 100
	DefaultBulkMaxAwait    = time.Second
)

// running is a subscription in force, or the reason it is not.
type running struct {
	sub     Subscription
	routes  *routing.Routes
	raw     bool
	cancel  context.CancelFunc
	release func()
	err     error
	batch   *batcher
}

func (b *Block) runner() resiliency.Runner {
	if b.Runner == nil {
		return resiliency.Direct{}
	}
	return b.Runner
}

func (b *Block) env() envelope.Env { return b.Env }

func (b *Block) now() time.Time {
	if b.Env.Now != nil {
		return b.Env.Now()
	}
	return time.Now()
}

// Start asks the app for its subscriptions, merges them with the declared ones and
// subscribes to each. It is called once the app channel is up; a failure to reach the
// app is logged and leaves only the declared subscriptions.
func (b *Block) Start(ctx context.Context) {
	var programmatic []Subscription
	if b.App != nil {
		subs, err := b.appSubscriptions(ctx)
		if err != nil {
			b.Log.Error(err, "Could not read the app's subscriptions; only declared subscriptions are in force")
		}
		for i := range subs {
			subs[i].Type = Programmatic
		}
		programmatic = subs
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.started = true
	b.programmatic = programmatic
	b.reconcileLocked()
}

// subscriptionAttempts bounds how often the app is asked for its subscriptions: an app
// whose port accepts connections before its routes are mounted answers the first ask
// with an error.
const subscriptionAttempts = 5

func (b *Block) appSubscriptions(ctx context.Context) ([]Subscription, error) {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		subs, err := b.App.Subscriptions(ctx)
		if err == nil || attempt == subscriptionAttempts || ctx.Err() != nil {
			return subs, err
		}
		b.Log.V(1).Info("Asking the app for its subscriptions again", "attempt", attempt, "reason", err.Error())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, err
		}
		wait *= 2
	}
}

// SetDeclared replaces the declared subscriptions (Subscription resources) and applies
// the difference.
func (b *Block) SetDeclared(subs []Subscription) {
	subs = slices.Clone(subs)
	for i := range subs {
		subs[i].Type = Declarative
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.declared = subs
	if b.started && !b.stopped {
		b.reconcileLocked()
	}
}

// ComponentChanged restarts the subscriptions of a pub/sub component that was added,
// replaced or removed, so that they move to the instance now loaded under its name.
func (b *Block) ComponentChanged(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started || b.stopped {
		return
	}
	for k, r := range b.running {
		if k.pubsub == name {
			b.stopLocked(k, r)
		}
	}
	b.reconcileLocked()
}

// Stop ends every subscription and waits, until ctx ends, for the deliveries in
// flight. Unacknowledged messages stay with the broker.
func (b *Block) Stop(ctx context.Context) error {
	b.mu.Lock()
	b.stopped = true
	for k, r := range b.running {
		b.stopLocked(k, r)
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.deliveries.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop subscriptions: deliveries still in flight: %w", ctx.Err())
	}
}

// wanted merges the programmatic and declared subscriptions; the first for a pub/sub
// and topic wins, as in Dapr, where the app's own come first.
func (b *Block) wantedLocked() map[subKey]Subscription {
	out := map[subKey]Subscription{}
	for _, s := range append(slices.Clone(b.programmatic), b.declared...) {
		k := subKey{s.PubsubName, s.Topic}
		if prev, dup := out[k]; dup {
			b.Log.Info("Ignoring a second subscription to the same topic", "pubsub", s.PubsubName, "topic", s.Topic,
				"kept", prev.Type, "ignored", s.Type)
			continue
		}
		out[k] = s
	}
	return out
}

// reconcileLocked starts what is wanted and not running (or failed before), restarts
// what changed, and stops what is no longer wanted.
func (b *Block) reconcileLocked() {
	if b.running == nil {
		b.running = map[subKey]*running{}
	}
	wanted := b.wantedLocked()
	for k, r := range b.running {
		s, ok := wanted[k]
		if !ok || !sameSubscription(s, r.sub) || r.err != nil {
			b.stopLocked(k, r)
		}
	}
	for k, s := range wanted {
		if _, ok := b.running[k]; ok {
			continue
		}
		r := b.startLocked(s)
		b.running[k] = r
		if r.err != nil {
			b.Log.Error(r.err, "Subscription is not in force", "pubsub", s.PubsubName, "topic", s.Topic, "type", s.Type)
		} else {
			b.Log.Info("Subscribed", "pubsub", s.PubsubName, "topic", s.Topic, "type", s.Type)
		}
	}
}

func sameSubscription(a, b Subscription) bool {
	return a.PubsubName == b.PubsubName && a.Topic == b.Topic && maps.Equal(a.Metadata, b.Metadata) &&
		slices.Equal(a.Rules, b.Rules) && a.Default == b.Default && a.DeadLetterTopic == b.DeadLetterTopic &&
		a.Bulk == b.Bulk && a.Type == b.Type
}

func (b *Block) stopLocked(k subKey, r *running) {
	delete(b.running, k)
	if r.cancel != nil {
		r.cancel()
	}
	if r.release != nil {
		r.release()
	}
}

// startLocked subscribes; a subscription that cannot start is kept with its error and
// retried on the next change.
func (b *Block) startLocked(s Subscription) *running {
	r := &running{sub: s}
	rules := make([]routing.Rule, len(s.Rules))
	for i, rule := range s.Rules {
		rules[i] = routing.Rule{Match: rule.Match, Path: rule.Path}
	}
	var err error
	if r.routes, err = routing.Compile(rules, s.Default); err != nil {
		r.err = fmt.Errorf("subscription to topic %s on pubsub %s: %w", s.Topic, s.PubsubName, err)
		return r
	}
	if r.routes.Len() == 0 {
		// Dapr leaves such a subscription out; Outrigger reports why.
		r.err = fmt.Errorf("subscription to topic %s on pubsub %s has no route: set route, routes.default or routes.rules", s.Topic, s.PubsubName)
		return r
	}
	if r.raw, err = isTrue(s.Metadata, "rawPayload"); err != nil {
		r.err = fmt.Errorf("subscription to topic %s on pubsub %s: %w", s.Topic, s.PubsubName, err)
		return r
	}
	if b.PubSubs == nil {
		r.err = fmt.Errorf("pubsub %s is not found", s.PubsubName)
		return r
	}
	h, release, ok := b.PubSubs.Acquire(s.PubsubName)
	if !ok || h.PubSub == nil {
		if release != nil {
			release()
		}
		r.err = fmt.Errorf("pubsub %s is not found", s.PubsubName)
		return r
	}
	if !h.Scopes.CanSubscribe(s.Topic) {
		release()
		r.err = fmt.Errorf("subscription to topic '%s' on pubsub '%s' is not allowed", s.Topic, s.PubsubName)
		return r
	}
	ctx, cancel := context.WithCancel(context.Background())
	req := pubsub.SubscribeRequest{Topic: s.Topic, Metadata: s.Metadata}
	handler := b.handler(r, h.PubSub)
	if s.Bulk.Enabled {
		r.batch = newBatcher(b, r, h.PubSub, s.Bulk)
		req.MaxConcurrency = r.batch.max
		handler = r.batch.handler(ctx)
	}
	if err := h.PubSub.Subscribe(ctx, req, handler); err != nil {
		cancel()
		release()
		r.err = fmt.Errorf("subscribe to topic %s on pubsub %s: %w", s.Topic, s.PubsubName, err)
		return r
	}
	r.cancel, r.release = cancel, release
	return r
}

// isTrue reads a boolean metadata value as Dapr does (utils.IsTruthy for rawPayload
// accepts 1, t, true, y, yes, on).
func isTrue(md map[string]string, key string) (bool, error) {
	for k, v := range md {
		if !strings.EqualFold(k, key) {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "t", "true", "y", "yes", "on":
			return true, nil
		case "", "0", "f", "false", "n", "no", "off":
			return false, nil
		}
		return false, fmt.Errorf("metadata %s=%q is not a boolean", key, v)
	}
	return false, nil
}

// Subscriptions lists the subscriptions wanted, with the error of any not in force.
func (b *Block) Subscriptions() []SubscriptionInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	wanted := b.wantedLocked()
	out := make([]SubscriptionInfo, 0, len(wanted))
	for k, s := range wanted {
		info := SubscriptionInfo{PubsubName: s.PubsubName, Topic: s.Topic, Metadata: s.Metadata,
			Rules: slices.Clone(s.Rules), DeadLetterTopic: s.DeadLetterTopic, Type: s.Type}
		if s.Default != "" {
			info.Rules = append(info.Rules, RuleInfo{Path: s.Default})
		}
		if r := b.running[k]; r != nil && r.err != nil {
			info.Error = r.err.Error()
		} else if r == nil && b.started {
			info.Error = "not started"
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, c SubscriptionInfo) int {
		return strings.Compare(a.PubsubName+"\x00"+a.Topic, c.PubsubName+"\x00"+c.Topic)
	})
	return out
}

// errDropped marks a delivery the app dropped: never retried.
var errDropped = errors.New("message dropped")

// handler is what the component calls for each message of one subscription.
func (b *Block) handler(r *running, p pubsub.PubSub) pubsub.Handler {
	return func(ctx context.Context, msg *pubsub.Message) error {
		b.deliveries.Add(1)
		defer b.deliveries.Done()
		ev, path, ok, err := b.prepare(r, msg)
		if err != nil || !ok {
			return b.undeliverable(ctx, r, p, msg, ev, err)
		}
		err = b.runDelivery(ctx, r, func(ctx context.Context) error {
			return b.deliverOne(ctx, r, msg, ev, path)
		})
		return b.settle(ctx, r, p, msg, ev, err)
	}
}

// prepare reads a message into its CloudEvent and picks its route. ok false with no
// error means the message is to be dropped (expired, or no route matches). The path
// may be empty: a gRPC subscription without routes gets "".
func (b *Block) prepare(r *running, msg *pubsub.Message) (ev map[string]any, path string, ok bool, err error) {
	ev, err = b.env().Parse(msg.Data, msg.ContentType, r.raw, r.sub.Topic, r.sub.PubsubName)
	if err != nil {
		return nil, "", false, fmt.Errorf("error deserializing cloud event in pubsub %s and topic %s: %w", r.sub.PubsubName, r.sub.Topic, err)
	}
	if envelope.Expired(ev, b.now()) {
		b.Log.Info("Dropping an expired message", "pubsub", r.sub.PubsubName, "topic", r.sub.Topic, "id", ev["id"], "expiration", ev["expiration"])
		return ev, "", false, nil
	}
	path, ok, err = r.routes.Path(ev)
	if err != nil {
		return ev, "", false, fmt.Errorf("error finding matching route for event %v in pubsub %s and topic %s: %w", ev["id"], r.sub.PubsubName, r.sub.Topic, err)
	}
	if !ok {
		b.Log.V(1).Info("No route matches the message; dropping it", "pubsub", r.sub.PubsubName, "topic", r.sub.Topic, "id", ev["id"])
	}
	return ev, path, ok, nil
}

// undeliverable handles a message that never reaches the app: one that cannot be read
// goes to the dead-letter topic, or back to the broker when there is none; an expired
// or unrouted one is dropped (and dead-lettered when there is a topic for it).
func (b *Block) undeliverable(ctx context.Context, r *running, p pubsub.PubSub, msg *pubsub.Message, ev map[string]any, err error) error {
	if err != nil {
		b.Log.Error(err, "Cannot read a delivered message", "pubsub", r.sub.PubsubName, "topic", r.sub.Topic)
		if r.sub.DeadLetterTopic != "" && b.deadLetter(ctx, r, p, msg) == nil {
			b.ingress(r, OutcomeDrop)
			return nil
		}
		b.ingress(r, OutcomeRetry)
		return err
	}
	b.ingress(r, OutcomeDrop)
	if r.sub.DeadLetterTopic != "" {
		_ = b.deadLetter(ctx, r, p, msg)
	}
	return nil
}

// runDelivery runs one delivery attempt under the component's inbound policy. A drop
// ends the attempts.
func (b *Block) runDelivery(ctx context.Context, r *running, op func(context.Context) error) error {
	var dropped bool
	err := b.runner().Run(ctx, resiliency.Target{Kind: "component", Name: r.sub.PubsubName, Direction: resiliency.Inbound, Operation: OpDeliver},
		func(ctx context.Context) error {
			err := op(ctx)
			if errors.Is(err, errDropped) {
				dropped = true
				return nil
			}
			return err
		})
	if dropped {
		return errDropped
	}
	return err
}

// settle turns the delivery's outcome into the component's answer: nil acknowledges.
func (b *Block) settle(ctx context.Context, r *running, p pubsub.PubSub, msg *pubsub.Message, ev map[string]any, err error) error {
	switch {
	case err == nil:
		b.ingress(r, OutcomeSuccess)
		return nil
	case errors.Is(err, errDropped):
		b.ingress(r, OutcomeDrop)
		b.Log.Info("The app dropped a message", "pubsub", r.sub.PubsubName, "topic", r.sub.Topic, "id", ev["id"])
		if r.sub.DeadLetterTopic != "" {
			if derr := b.deadLetter(ctx, r, p, msg); derr != nil {
				b.Log.Error(derr, "Could not send a dropped message to the dead-letter topic", "topic", r.sub.DeadLetterTopic)
			}
		}
		return nil
	}
	b.ingress(r, OutcomeRetry)
	if ctx.Err() != nil {
		// The subscription is ending: the broker keeps the message.
		return err
	}
	if r.sub.DeadLetterTopic != "" {
		if derr := b.deadLetter(ctx, r, p, msg); derr == nil {
			b.Log.Info("Sent a message the app did not take to the dead-letter topic", "pubsub", r.sub.PubsubName,
				"topic", r.sub.Topic, "deadLetterTopic", r.sub.DeadLetterTopic, "id", ev["id"], "reason", err.Error())
			return nil
		}
	}
	b.Log.V(1).Info("The message will be delivered again", "pubsub", r.sub.PubsubName, "topic", r.sub.Topic, "id", ev["id"], "reason", err.Error())
	return err
}

// deadLetter publishes the message as it came (the original envelope) to the
// subscription's dead-letter topic on the same component.
func (b *Block) deadLetter(ctx context.Context, r *running, p pubsub.PubSub, msg *pubsub.Message) error {
	err := p.Publish(ctx, &pubsub.PublishRequest{Topic: r.sub.DeadLetterTopic, Data: msg.Data, ContentType: msg.ContentType, Metadata: msg.Metadata})
	if err != nil {
		return fmt.Errorf("send to dead-letter topic %s of pubsub %s: %w", r.sub.DeadLetterTopic, r.sub.PubsubName, err)
	}
	return nil
}

func (b *Block) ingress(r *running, outcome string) {
	if b.OnIngress != nil {
		b.OnIngress(r.sub.PubsubName, r.sub.Topic, outcome)
	}
}

// deliverOne hands one event to the app and reads its answer.
func (b *Block) deliverOne(ctx context.Context, r *running, msg *pubsub.Message, ev map[string]any, path string) error {
	if b.App == nil {
		return errNoApp
	}
	body, err := envelope.Body(msg.Data, r.raw, ev)
	if err != nil {
		return fmt.Errorf("encode event %v: %w", ev["id"], err)
	}
	st, err := b.App.Deliver(ctx, &Delivery{Event: ev, Body: body, Path: path, PubsubName: r.sub.PubsubName, Topic: r.sub.Topic, Metadata: msg.Metadata})
	if err != nil {
		return err
	}
	switch st {
	case StatusSuccess:
		return nil
	case StatusDrop:
		return errDropped
	}
	return fmt.Errorf("the app answered RETRY for event %v", ev["id"])
}
