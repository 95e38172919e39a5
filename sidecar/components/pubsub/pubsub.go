// Package pubsub is the pub/sub family: the interface every broker implements and its
// registry. A component moves opaque bytes between topics and consumer groups; it knows
// nothing of CloudEvents, apps, routes or dead-letter topics, which are the pub/sub
// building block's business.
//
// The delivery contract is at least once. A component hands each message to the
// subscription's Handler and acknowledges it to the broker only when the handler
// returns nil. A handler error, a handler that never returns before the process dies,
// or a Close in the middle of a delivery all leave the message unacknowledged, and the
// broker delivers it again later, to this or another consumer of the same group.
package pubsub

import (
	"context"
	"slices"

	"github.com/outrigger-dev/outrigger/sidecar/components"
)

// Feature is a capability a component declares; names are Dapr's, as /v1.0/metadata
// lists them.
type Feature string

const (
	// FeatureMessageTTL: the broker expires a message whose metadata sets ttlInSeconds.
	FeatureMessageTTL Feature = "MESSAGE_TTL"
	// FeatureSubscribeWildcards: a subscription topic may hold the broker's wildcards.
	FeatureSubscribeWildcards Feature = "SUBSCRIBE_WILDCARDS"
	// FeatureBulkPublish: the component implements BulkPublisher natively.
	FeatureBulkPublish Feature = "BULK_PUBLISH"
)

// ConsumerIDKey is the metadata name of the consumer group, both as a component
// property and as a per-subscription override. Components default it to the app id, so
// that the replicas of one app share a topic's messages and different apps each get
// all of them.
const ConsumerIDKey = "consumerID"

// PublishRequest is one message to publish.
type PublishRequest struct {
	Topic       string
	Data        []byte
	ContentType string
	// Metadata is the request's metadata (ttlInSeconds and broker-specific keys).
	Metadata map[string]string
}

// Message is one delivered message.
type Message struct {
	Topic string
	Data  []byte
	// ContentType is what the broker carried, when it carries one; may be empty.
	ContentType string
	// Metadata is what the broker reports of the message (ids, delivery counts); may be
	// nil.
	Metadata map[string]string
}

// Handler processes one message. nil acknowledges it; an error leaves it for the
// broker to deliver again. ctx ends when the subscription or the component is closed;
// a handler should then return promptly, and its message is redelivered.
type Handler func(ctx context.Context, msg *Message) error

// SubscribeRequest asks for a topic's messages.
type SubscribeRequest struct {
	Topic string
	// Metadata is the subscription's metadata; a consumerID here overrides the
	// component's.
	Metadata map[string]string
	// MaxConcurrency bounds how many handler calls of this subscription run at once;
	// 0 means DefaultMaxConcurrency.
	MaxConcurrency int
}

// DefaultMaxConcurrency is the bound on concurrent handler calls of one subscription
// when the request sets none.
const DefaultMaxConcurrency = 16

// Concurrency returns the request's bound on concurrent handler calls.
func (r SubscribeRequest) Concurrency() int {
	if r.MaxConcurrency > 0 {
		return r.MaxConcurrency
	}
	return DefaultMaxConcurrency
}

// PubSub is the interface of every pub/sub component.
type PubSub interface {
	components.Component
	Features() []Feature
	// Publish sends a message and returns once the broker has accepted it.
	Publish(ctx context.Context, req *PublishRequest) error
	// Subscribe starts delivering the topic's messages to h and returns once the
	// subscription is in place, so that a message published after it returns reaches
	// it. Delivery goes on until ctx ends or the component is closed; neither loses an
	// unacknowledged message. Close waits for the handler calls in flight to return.
	Subscribe(ctx context.Context, req SubscribeRequest, h Handler) error
}

// BulkPublisher is implemented by a component that publishes a batch natively; the
// building block publishes entry by entry otherwise.
type BulkPublisher interface {
	BulkPublish(ctx context.Context, topic string, entries []BulkEntry, metadata map[string]string) []BulkResult
}

// BulkEntry is one message of a bulk publish.
type BulkEntry struct {
	EntryID     string
	Data        []byte
	ContentType string
	Metadata    map[string]string
}

// BulkResult is the outcome of one entry; Err is nil when it was published.
type BulkResult struct {
	EntryID string
	Err     error
}

// Has reports whether a component declares a feature.
func Has(p PubSub, f Feature) bool { return slices.Contains(p.Features(), f) }

// Registry holds every pub/sub implementation.
var Registry = &components.Registry[PubSub]{}
