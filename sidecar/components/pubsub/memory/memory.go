// Package memory is pubsub.in-memory: a broker held in the component instance, for
// tests and for apps that need no durability. Consumer groups work as on a real
// broker (the subscriptions of one group share its messages, each group gets all), and
// a failed delivery is retried after redeliverInterval. Messages live and die with the
// instance, as in Dapr: a topic with no subscription drops what is published to it.
package memory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// TypeName is the component type this package implements.
const TypeName = "pubsub.in-memory"

// Register adds pubsub.in-memory to a registry.
func Register(r *components.Registry[pubsub.PubSub]) {
	r.Register(TypeName, func() pubsub.PubSub { return New() })
}

type options struct {
	ConsumerID string `metadata:"consumerID"`
	// RedeliverInterval is the wait before a failed delivery is retried.
	RedeliverInterval time.Duration `metadata:"redeliverInterval" default:"100ms"`
}

// Bus is the in-memory broker.
type Bus struct {
	opts options

	mu     sync.Mutex
	topics map[string]map[string]*group // topic -> consumer group -> group
	closed bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// group is one consumer group's queue of a topic.
type group struct {
	queue  []*pubsub.Message
	wake   chan struct{} // signalled when the queue grows
	active int           // subscriptions consuming
}

// New returns an uninitialised broker.
func New() *Bus {
	ctx, cancel := context.WithCancel(context.Background())
	return &Bus{topics: map[string]map[string]*group{}, ctx: ctx, cancel: cancel}
}

// Init reads the metadata.
func (b *Bus) Init(_ context.Context, md components.Metadata) error {
	if err := metadata.Decode(md.Properties, &b.opts); err != nil {
		return err
	}
	if b.opts.ConsumerID == "" {
		b.opts.ConsumerID = md.AppID
	}
	return nil
}

// Features lists none: messages carry no TTL and topics take no wildcards.
func (b *Bus) Features() []pubsub.Feature { return nil }

// Publish queues the message for every consumer group of the topic.
func (b *Bus) Publish(_ context.Context, req *pubsub.PublishRequest) error {
	if req.Topic == "" {
		return errors.New("topic is empty")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("pub/sub is closed")
	}
	for _, g := range b.topics[req.Topic] {
		g.push(&pubsub.Message{Topic: req.Topic, Data: clone(req.Data), ContentType: req.ContentType, Metadata: maps.Clone(req.Metadata)})
	}
	return nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func (g *group) push(m *pubsub.Message) {
	g.queue = append(g.queue, m)
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Subscribe joins the consumer group of the request (its consumerID, else the
// component's, else the app id) and runs MaxConcurrency workers on its queue.
func (b *Bus) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	if req.Topic == "" {
		return errors.New("topic is empty")
	}
	name := b.opts.ConsumerID
	if v, ok := req.Metadata[pubsub.ConsumerIDKey]; ok && v != "" {
		name = v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("pub/sub is closed")
	}
	groups := b.topics[req.Topic]
	if groups == nil {
		groups = map[string]*group{}
		b.topics[req.Topic] = groups
	}
	g := groups[name]
	if g == nil {
		g = &group{wake: make(chan struct{}, 1)}
		groups[name] = g
	}
	g.active++
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	var workers sync.WaitGroup
	for range req.Concurrency() {
		workers.Add(1)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer workers.Done()
			b.work(ctx, g, h)
		}()
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		workers.Wait()
		stop()
		cancel()
		b.mu.Lock()
		g.active--
		b.mu.Unlock()
	}()
	return nil
}

// work delivers the group's messages until ctx ends.
func (b *Bus) work(ctx context.Context, g *group, h pubsub.Handler) {
	for {
		// A worker whose subscription has ended takes no more messages, even when a
		// wake-up raced with the end.
		if ctx.Err() != nil {
			return
		}
		b.mu.Lock()
		var m *pubsub.Message
		if len(g.queue) > 0 && ctx.Err() == nil {
			m = g.queue[0]
			g.queue = g.queue[1:]
			if len(g.queue) > 0 {
				// Another worker may take the next one.
				select {
				case g.wake <- struct{}{}:
				default:
				}
			}
		}
		b.mu.Unlock()
		if m == nil {
			select {
			case <-g.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		if err := h(ctx, m); err != nil {
			b.redeliver(g, m)
		}
	}
}

// redeliver puts a message back on its group's queue after the redelivery interval.
func (b *Bus) redeliver(g *group, m *pubsub.Message) {
	time.AfterFunc(b.opts.RedeliverInterval, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.closed {
			g.push(m)
		}
	})
}

// Close stops every subscription and waits for the handler calls in flight.
func (b *Bus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return nil
}

var _ pubsub.PubSub = (*Bus)(nil)

// String names the component in logs.
func (b *Bus) String() string { return fmt.Sprintf("%s(consumerID=%s)", TypeName, b.opts.ConsumerID) }
