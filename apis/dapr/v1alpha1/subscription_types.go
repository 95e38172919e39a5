package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
)

// SubscriptionSpec subscribes an app to one topic of a pub/sub component and
// delivers every message to a single route.
type SubscriptionSpec struct {
	// Pubsubname is the name of the pub/sub component.
	// +required
	Pubsubname string `json:"pubsubname"`

	// Topic to subscribe to.
	// +required
	Topic string `json:"topic"`

	// Route is the app path that receives every message of the topic, for
	// example /orders.
	// +required
	Route string `json:"route"`

	// Metadata is passed to the pub/sub component with the subscription.
	// +optional
	Metadata map[string]string `json:"metadata,omitempty"`

	// DeadLetterTopic receives the messages that the app could not process.
	// +optional
	DeadLetterTopic string `json:"deadLetterTopic,omitempty"`

	// BulkSubscribe delivers messages to the app in batches.
	// +optional
	BulkSubscribe BulkSubscribe `json:"bulkSubscribe,omitzero"`
}

// BulkSubscribe configures batched delivery of messages to the app.
type BulkSubscribe struct {
	// Enabled turns on bulk delivery.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// MaxMessagesCount is the largest number of messages in one batch.
	// +optional
	MaxMessagesCount int32 `json:"maxMessagesCount,omitempty"`

	// MaxAwaitDurationMs is how long, in milliseconds, to wait for a batch to
	// fill before delivering it.
	// +optional
	MaxAwaitDurationMs int32 `json:"maxAwaitDurationMs,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=all;dapr
// +kubebuilder:printcolumn:name="Pubsub",type=string,JSONPath=`.spec.pubsubname`
// +kubebuilder:printcolumn:name="Topic",type=string,JSONPath=`.spec.topic`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Subscription declares that apps receive the messages of a pub/sub topic on
// one route. Deprecated in Dapr in favour of v2alpha1, which adds routing
// rules; both versions are served and stored as v2alpha1.
type Subscription struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec names the topic and the route.
	// +optional
	Spec SubscriptionSpec `json:"spec,omitempty"`

	common.Scoped `json:",inline"`

	// Status is reported by Outrigger.
	// +optional
	Status common.Status `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// SubscriptionList is a list of Subscriptions.
type SubscriptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Subscription `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Subscription{}, &SubscriptionList{})
}
