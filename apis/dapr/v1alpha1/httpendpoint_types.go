package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
)

// HTTPEndpointSpec describes an HTTP service outside Dapr that apps can call
// through service invocation by the endpoint's name.
type HTTPEndpointSpec struct {
	// BaseURL of the service, with its http:// or https:// scheme.
	// +required
	BaseURL string `json:"baseUrl"`

	// Headers added to every request sent to the service.
	// +optional
	// +listType=atomic
	Headers []common.NameValuePair `json:"headers,omitempty"`

	// ClientTLS configures TLS towards the service.
	// +optional
	ClientTLS *ClientTLS `json:"clientTLS,omitempty"`
}

// ClientTLS configures the TLS client used to reach an HTTPEndpoint.
type ClientTLS struct {
	// RootCA is the PEM bundle of the CAs trusted for the server certificate.
	// +optional
	RootCA *TLSDocument `json:"rootCA,omitempty"`

	// Certificate is the PEM client certificate.
	// +optional
	Certificate *TLSDocument `json:"certificate,omitempty"`

	// PrivateKey is the PEM private key of the client certificate.
	// +optional
	PrivateKey *TLSDocument `json:"privateKey,omitempty"`

	// Renegotiation is the TLS renegotiation the client allows. Defaults to
	// Never.
	// +optional
	Renegotiation Renegotiation `json:"renegotiation,omitempty"`
}

// TLSDocument holds a PEM document in plain text or points at it in a secret.
type TLSDocument struct {
	// Value is the document in plain text.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	Value common.DynamicValue `json:"value,omitzero"`

	// SecretKeyRef reads the document from a secret in the secret store named
	// by auth.secretStore.
	// +optional
	SecretKeyRef common.SecretKeyRef `json:"secretKeyRef,omitzero"`
}

// Renegotiation is a TLS renegotiation mode.
// +kubebuilder:validation:Enum=Never;OnceAsClient;FreelyAsClient
type Renegotiation string

// The TLS renegotiation modes an HTTPEndpoint accepts.
const (
	RenegotiateNever          Renegotiation = "Never"
	RenegotiateOnceAsClient   Renegotiation = "OnceAsClient"
	RenegotiateFreelyAsClient Renegotiation = "FreelyAsClient"
)

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=dapr
// +kubebuilder:printcolumn:name="Base URL",type=string,JSONPath=`.spec.baseUrl`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// HTTPEndpoint names an HTTP service outside Dapr so that apps can call it
// with service invocation, with headers and TLS added by the sidecar.
type HTTPEndpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec describes the service.
	// +optional
	Spec HTTPEndpointSpec `json:"spec,omitempty"`

	// Auth names the secret store that resolves secretKeyRef values in
	// spec.headers and spec.clientTLS.
	// +optional
	Auth common.Auth `json:"auth,omitzero"`

	common.Scoped `json:",inline"`

	// Status is reported by Outrigger.
	// +optional
	Status common.Status `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// HTTPEndpointList is a list of HTTPEndpoints.
type HTTPEndpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HTTPEndpoint `json:"items"`
}

func init() {
	SchemeBuilder.Register(&HTTPEndpoint{}, &HTTPEndpointList{})
}
