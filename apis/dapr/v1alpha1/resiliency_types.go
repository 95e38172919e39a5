package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
)

// ResiliencySpec names policies and applies them to targets.
type ResiliencySpec struct {
	// Policies are named timeouts, retries and circuit breakers.
	// +optional
	Policies Policies `json:"policies,omitzero"`

	// Targets apply the named policies to apps, actors and components.
	// +optional
	Targets Targets `json:"targets,omitzero"`
}

// Policies holds the named policy templates that targets refer to.
type Policies struct {
	// Timeouts maps a policy name to a Go duration, for example general: 5s.
	// +optional
	Timeouts map[string]string `json:"timeouts,omitempty"`

	// Retries maps a policy name to a retry policy.
	// +optional
	Retries map[string]Retry `json:"retries,omitempty"`

	// CircuitBreakers maps a policy name to a circuit breaker.
	// +optional
	CircuitBreakers map[string]CircuitBreaker `json:"circuitBreakers,omitempty"`
}

// Retry is a retry policy with its back-off.
type Retry struct {
	// Policy is the back-off: constant or exponential. Defaults to constant.
	// +optional
	Policy string `json:"policy,omitempty"`

	// Duration is the wait between retries of the constant policy, as a Go
	// duration. Defaults to 5s.
	// +optional
	Duration string `json:"duration,omitempty"`

	// MaxInterval caps the wait of the exponential policy, as a Go duration.
	// Defaults to 60s.
	// +optional
	MaxInterval string `json:"maxInterval,omitempty"`

	// MaxRetries is the number of retries; -1 retries forever and 0 never
	// retries. Defaults to -1.
	// +optional
	MaxRetries *int32 `json:"maxRetries,omitempty"`

	// Matching limits retries to some status codes. Without it every error is
	// retried.
	// +optional
	Matching RetryMatching `json:"matching,omitzero"`
}

// RetryMatching lists the status codes that are retried; other errors fail
// at once.
type RetryMatching struct {
	// HTTPStatusCodes is a comma-separated list of HTTP status codes and
	// ranges, for example "429,500-599".
	// +optional
	HTTPStatusCodes string `json:"httpStatusCodes,omitempty"`

	// GRPCStatusCodes is a comma-separated list of gRPC status codes and
	// ranges, for example "1-4,8-11,13,14".
	// +optional
	GRPCStatusCodes string `json:"gRPCStatusCodes,omitempty"`
}

// CircuitBreaker stops calls to a failing target for a while.
type CircuitBreaker struct {
	// MaxRequests is the number of requests let through while half-open.
	// Defaults to 1.
	// +optional
	MaxRequests int32 `json:"maxRequests,omitempty"`

	// Interval is the period after which the failure counts are reset while
	// closed, as a Go duration. 0 never resets them.
	// +optional
	Interval string `json:"interval,omitempty"`

	// Timeout is how long the breaker stays open before it lets a request
	// through again, as a Go duration. Defaults to 60s.
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// Trip is a CEL expression that opens the breaker, for example
	// consecutiveFailures > 5.
	// +optional
	Trip string `json:"trip,omitempty"`
}

// Targets apply the named policies. Each map is keyed by an app ID, an actor
// type or a component name.
type Targets struct {
	// Apps applies policies to service invocation, keyed by app ID.
	// +optional
	Apps map[string]EndpointPolicyNames `json:"apps,omitempty"`

	// Actors applies policies to actor calls, keyed by actor type.
	// +optional
	Actors map[string]ActorPolicyNames `json:"actors,omitempty"`

	// Components applies policies to component calls, keyed by component name.
	// +optional
	Components map[string]ComponentPolicyNames `json:"components,omitempty"`
}

// EndpointPolicyNames names the policies for calls to an app.
type EndpointPolicyNames struct {
	// Timeout is the name of a policy in policies.timeouts.
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// Retry is the name of a policy in policies.retries.
	// +optional
	Retry string `json:"retry,omitempty"`

	// CircuitBreaker is the name of a policy in policies.circuitBreakers.
	// +optional
	CircuitBreaker string `json:"circuitBreaker,omitempty"`

	// CircuitBreakerCacheSize is the number of per-instance circuit breakers
	// kept in memory.
	// +optional
	CircuitBreakerCacheSize int32 `json:"circuitBreakerCacheSize,omitempty"`
}

// ActorPolicyNames names the policies for calls to an actor type.
type ActorPolicyNames struct {
	// Timeout is the name of a policy in policies.timeouts.
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// Retry is the name of a policy in policies.retries.
	// +optional
	Retry string `json:"retry,omitempty"`

	// CircuitBreaker is the name of a policy in policies.circuitBreakers.
	// +optional
	CircuitBreaker string `json:"circuitBreaker,omitempty"`

	// CircuitBreakerScope is what one circuit breaker covers: id (one actor),
	// type (all actors of the type) or both.
	// +optional
	CircuitBreakerScope string `json:"circuitBreakerScope,omitempty"`

	// CircuitBreakerCacheSize is the number of per-actor circuit breakers
	// kept in memory when circuitBreakerScope is id or both.
	// +optional
	CircuitBreakerCacheSize int32 `json:"circuitBreakerCacheSize,omitempty"`
}

// ComponentPolicyNames names the policies for a component, per direction.
type ComponentPolicyNames struct {
	// Outbound applies to calls from the sidecar to the component.
	// +optional
	Outbound PolicyNames `json:"outbound,omitzero"`

	// Inbound applies to calls from the component to the app, such as pub/sub
	// deliveries and input bindings.
	// +optional
	Inbound PolicyNames `json:"inbound,omitzero"`
}

// PolicyNames names a timeout, a retry and a circuit breaker policy.
type PolicyNames struct {
	// Timeout is the name of a policy in policies.timeouts.
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// Retry is the name of a policy in policies.retries.
	// +optional
	Retry string `json:"retry,omitempty"`

	// CircuitBreaker is the name of a policy in policies.circuitBreakers.
	// +optional
	CircuitBreaker string `json:"circuitBreaker,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=dapr
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Resiliency defines timeouts, retries and circuit breakers and applies them
// to calls to apps, actors and components.
type Resiliency struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec holds the policies and their targets.
	// +optional
	Spec ResiliencySpec `json:"spec,omitempty"`

	common.Scoped `json:",inline"`

	// Status is reported by Outrigger.
	// +optional
	Status common.Status `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// ResiliencyList is a list of Resiliencies.
type ResiliencyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Resiliency `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Resiliency{}, &ResiliencyList{})
}
