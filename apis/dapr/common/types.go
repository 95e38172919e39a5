package common

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ConditionReady is the condition type every dapr.io kind reports in
// status.conditions once Outrigger has accepted the resource.
const ConditionReady = "Ready"

// Auth names the secret store used to resolve secretKeyRef values. It sits at
// the top level of a resource, next to spec, as in Dapr.
type Auth struct {
	// SecretStore is the name of a secret store component.
	// +required
	SecretStore string `json:"secretStore"`
}

// Scoped limits a resource to some apps. It is embedded inline, so `scopes`
// sits at the top level of a resource, next to spec, as in Dapr.
type Scoped struct {
	// Scopes lists the app IDs that may use this resource. When empty, every
	// app in the namespace may use it.
	// +optional
	// +listType=atomic
	Scopes []string `json:"scopes,omitempty"`
}

// Status is the observed state that Outrigger reports for every dapr.io kind.
// Dapr itself has no status; this is an Outrigger addition.
type Status struct {
	// ObservedGeneration is the metadata.generation that the conditions
	// describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions describe the latest observations of the resource. The Ready
	// condition says whether the resource was accepted.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}
