package memory

import (
	"context"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub/conformance"
)

// member is one consumer of a bus shared by the suite's instances, as a real broker
// is shared: its subscriptions join its group, and closing it ends only them.
type member struct {
	*Bus
	group  string
	ctx    context.Context
	cancel context.CancelFunc
}

func (m *member) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	req.Metadata = map[string]string{pubsub.ConsumerIDKey: m.group}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(m.ctx, cancel)
	return m.Bus.Subscribe(ctx, req, h)
}

func (m *member) Close() error { m.cancel(); return nil }

func TestConformance(t *testing.T) {
	bus := New()
	if err := bus.Init(context.Background(), components.Metadata{Name: "pubsub", Type: TypeName, AppID: "conf",
		Properties: map[string]string{"redeliverInterval": "50ms"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	conformance.Run(t, conformance.Config{
		New: func(t *testing.T, group string) pubsub.PubSub {
			ctx, cancel := context.WithCancel(context.Background())
			return &member{Bus: bus, group: group, ctx: ctx, cancel: cancel}
		},
		Redelivery: time.Second,
		NotDurable: true,
	})
}

func TestInitRejectsBadMetadata(t *testing.T) {
	err := New().Init(context.Background(), components.Metadata{Properties: map[string]string{"redeliverInterval": "soon"}})
	if err == nil {
		t.Fatal("Init accepted redeliverInterval=soon")
	}
	t.Log(err)
}

func TestPublishAfterCloseFails(t *testing.T) {
	b := New()
	if err := b.Init(context.Background(), components.Metadata{}); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if err := b.Publish(context.Background(), &pubsub.PublishRequest{Topic: "t"}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}
