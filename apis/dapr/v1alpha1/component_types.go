package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
)

// ComponentSpec chooses the backend of a building block and configures it.
type ComponentSpec struct {
	// Type of the component, for example state.redis or pubsub.jetstream.
	// +required
	// +kubebuilder:validation:MinLength=1
	Type string `json:"type"`

	// Version of the component type, for example v1.
	// +required
	Version string `json:"version"`

	// IgnoreErrors lets the sidecar start even when this component fails to
	// initialise. Defaults to false.
	// +optional
	IgnoreErrors bool `json:"ignoreErrors,omitempty"`

	// Metadata configures the component. The names depend on the type; see
	// the component's reference page.
	// +optional
	// +listType=atomic
	Metadata []common.NameValuePair `json:"metadata,omitempty"`

	// InitTimeout bounds the component's initialisation, as a Go duration
	// such as 5s or 1m. Defaults to 5s.
	// +optional
	InitTimeout string `json:"initTimeout,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=dapr
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Loaded",type=integer,JSONPath=`.status.apps.loaded`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.apps.failed`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Component configures one backend of a Dapr building block, such as a Redis
// state store or a NATS pub/sub broker. Apps refer to it by metadata.name.
type Component struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec chooses and configures the backend.
	// +optional
	Spec ComponentSpec `json:"spec,omitempty"`

	// Auth names the secret store that resolves secretKeyRef values in
	// spec.metadata.
	// +optional
	Auth common.Auth `json:"auth,omitzero"`

	common.Scoped `json:",inline"`

	// Status is reported by Outrigger.
	// +optional
	Status ComponentStatus `json:"status,omitzero"`
}

// ComponentStatus is the status of a Component: the Ready condition and
// observedGeneration of every dapr.io kind, and what the sidecars that use the
// Component reported about loading it.
type ComponentStatus struct {
	// Besides Ready, conditions holds AppsLoaded: True when every sidecar that
	// reported on the current generation loaded it, False (reason AppsFailed)
	// when at least one failed to, Unknown (reason NoReports) when none has
	// reported yet.
	common.Status `json:",inline"`

	// Apps counts the sidecars that reported on the current generation. Each
	// sidecar's reports are Events on this Component, with the details.
	// +optional
	Apps *ComponentApps `json:"apps,omitempty"`
}

// ComponentApps is a bounded summary of the sidecars' reports about the current
// generation of a Component. Only pods that still exist are counted, each by its
// latest report.
type ComponentApps struct {
	// Loaded is the number of sidecars (pods) whose latest report is that they
	// loaded the current generation.
	// +kubebuilder:validation:Minimum=0
	Loaded int32 `json:"loaded"`

	// Failed is the number of sidecars (pods) whose latest report is that the
	// current generation failed to initialise. They keep serving the instance
	// they had loaded before, if any.
	// +kubebuilder:validation:Minimum=0
	Failed int32 `json:"failed"`

	// FailedApps names up to five of the failed sidecars as app-id/pod-name,
	// sorted. The Warning Events on this Component carry every error.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5
	FailedApps []string `json:"failedApps,omitempty"`
}

// +kubebuilder:object:root=true

// ComponentList is a list of Components.
type ComponentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Component `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Component{}, &ComponentList{})
}
