// Package pubsub is the pub/sub building block: it wraps what apps publish in
// CloudEvents, enforces each component's topic scopes, keeps the app's subscriptions
// (what the app declares at /dapr/subscribe or ListTopicSubscriptions, and Subscription
// resources) running on the loaded components, and delivers each message to the app's
// route with Dapr's at-least-once contract: a message is acknowledged to the broker only
// once the app answered SUCCESS, or once it was dropped or sent to a dead-letter topic.
package pubsub

import (
	"context"

	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// API is what the transports call.
type API interface {
	Publish(ctx context.Context, req *PublishRequest) error
	BulkPublish(ctx context.Context, req *BulkPublishRequest) (*BulkPublishResponse, error)
	// Subscriptions lists the subscriptions in force, for the metadata API.
	Subscriptions() []SubscriptionInfo
}

// PublishRequest is one message an app publishes.
type PublishRequest struct {
	PubsubName  string
	Topic       string
	Data        []byte
	ContentType string
	// Metadata is the request's metadata (query metadata.* on HTTP): rawPayload,
	// ttlInSeconds, cloudevent.* overrides, and keys for the component.
	Metadata map[string]string
	// TraceParent and TraceState come from the request's W3C trace headers.
	TraceParent string
	TraceState  string
}

// BulkPublishRequest publishes several messages to one topic.
type BulkPublishRequest struct {
	PubsubName  string
	Topic       string
	Entries     []BulkPublishEntry
	Metadata    map[string]string
	TraceParent string
	TraceState  string
}

// BulkPublishEntry is one message of a bulk publish.
type BulkPublishEntry struct {
	EntryID     string
	Event       []byte
	ContentType string
	Metadata    map[string]string
}

// BulkPublishResponse lists the entries that were not published; empty means all were.
type BulkPublishResponse struct {
	FailedEntries []BulkPublishFailure
}

// BulkPublishFailure is one entry that was not published, and why.
type BulkPublishFailure struct {
	EntryID string
	Error   string
}

// Components looks pub/sub components up by name, per call.
type Components interface {
	// Acquire returns the component loaded under name; release must be called when the
	// call (or, for a subscription, the subscription) is done.
	Acquire(name string) (h Handle, release func(), ok bool)
	// Names lists the loaded pub/sub components.
	Names() []string
}

// Handle is a loaded component with the settings the block reads from its metadata.
type Handle struct {
	PubSub pubsub.PubSub
	Scopes Scopes
}

// SubscriptionInfo is one subscription as the metadata API reports it.
type SubscriptionInfo struct {
	PubsubName      string
	Topic           string
	Metadata        map[string]string
	Rules           []RuleInfo
	DeadLetterTopic string
	// Type is "DECLARATIVE" or "PROGRAMMATIC", as Dapr reports it.
	Type string
	// Error is why the subscription is not running, empty when it is (Outrigger's).
	Error string
}

// RuleInfo is one routing rule.
type RuleInfo struct {
	Match string
	Path  string
}
