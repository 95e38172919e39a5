package common

import (
	"encoding/json"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// NameValuePair is one named setting, such as a component metadata item or an
// HTTP header. Its value comes from exactly one of value, secretKeyRef or
// envRef.
type NameValuePair struct {
	// Name of the setting, for example redisHost.
	// +required
	Name string `json:"name"`

	// Value in plain text. Any JSON or YAML value is accepted (string, number,
	// boolean, object or list) and keeps its type.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	Value DynamicValue `json:"value,omitzero"`

	// SecretKeyRef reads the value from a secret in the secret store named by
	// auth.secretStore (the Kubernetes secret store when that is unset).
	// +optional
	SecretKeyRef SecretKeyRef `json:"secretKeyRef,omitzero"`

	// EnvRef reads the value from this environment variable of the sidecar.
	// +optional
	EnvRef string `json:"envRef,omitempty"`
}

// SecretKeyRef points at one key of a secret.
type SecretKeyRef struct {
	// Name of the secret.
	// +required
	Name string `json:"name"`

	// Key inside the secret. Secret stores that hold a single value per secret
	// may leave it empty.
	// +optional
	Key string `json:"key,omitempty"`
}

// DynamicValue holds any JSON value exactly as the user wrote it: a YAML
// `value: 3` stays the number 3 and `value: "3"` stays the string "3".
//
// Fields of this type need the markers
// +kubebuilder:validation:Schemaless and +kubebuilder:pruning:PreserveUnknownFields
// so that the API server neither types nor prunes them.
type DynamicValue struct {
	apiextensionsv1.JSON `json:",inline"`
}

// IsZero reports whether no value was given; `omitzero` relies on it so that
// an absent value is not written back as null.
func (d DynamicValue) IsZero() bool {
	return len(d.Raw) == 0
}

// String returns a JSON string value without its quotes, and any other value
// (number, boolean, object, list) as its JSON text. Components read metadata
// as strings, and Dapr renders non-string values this way too.
func (d DynamicValue) String() string {
	var s string
	if err := json.Unmarshal(d.Raw, &s); err == nil {
		return s
	}
	return string(d.Raw)
}
