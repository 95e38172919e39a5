package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
)

// ConfigurationSpec tunes the sidecars that use this Configuration (through
// the dapr.io/config annotation) or, for the one named daprsystem, the control
// plane. Every section is optional; a missing section keeps the defaults.
type ConfigurationSpec struct {
	// HTTPPipeline is the middleware chain applied to HTTP calls that apps make
	// to the sidecar.
	// +optional
	HTTPPipeline *PipelineSpec `json:"httpPipeline,omitempty"`

	// AppHTTPPipeline is the middleware chain applied to HTTP calls that the
	// sidecar makes to the app.
	// +optional
	AppHTTPPipeline *PipelineSpec `json:"appHttpPipeline,omitempty"`

	// Tracing configures distributed tracing.
	// +optional
	Tracing *TracingSpec `json:"tracing,omitempty"`

	// Metric configures metrics. Dapr accepts this key and metrics; when both
	// are set, the fields set in metrics win.
	// +optional
	Metric *MetricSpec `json:"metric,omitempty"`

	// Metrics configures metrics; see metric.
	// +optional
	Metrics *MetricSpec `json:"metrics,omitempty"`

	// MTLS configures mutual TLS between sidecars. It is read from the
	// daprsystem Configuration.
	// +optional
	MTLS *MTLSSpec `json:"mtls,omitempty"`

	// Secrets limits which secrets the app may read from each secret store.
	// +optional
	Secrets *SecretsSpec `json:"secrets,omitempty"`

	// AccessControl limits which apps may invoke which methods of this app.
	// +optional
	AccessControl *AccessControlSpec `json:"accessControl,omitempty"`

	// NameResolution chooses and configures the name resolution component
	// used by service invocation.
	// +optional
	NameResolution *NameResolutionSpec `json:"nameResolution,omitempty"`

	// Features turns preview features on or off.
	// +optional
	// +listType=atomic
	Features []FeatureSpec `json:"features,omitempty"`

	// API limits which sidecar APIs the app may call.
	// +optional
	API *APISpec `json:"api,omitempty"`

	// Components limits which component types may be loaded.
	// +optional
	Components *ComponentsSpec `json:"components,omitempty"`

	// Logging configures the sidecar's logs.
	// +optional
	Logging *LoggingSpec `json:"logging,omitempty"`

	// Wasm configures the sandbox of WebAssembly components.
	// +optional
	Wasm *WasmSpec `json:"wasm,omitempty"`

	// Workflow configures the workflow engine.
	// +optional
	Workflow *WorkflowSpec `json:"workflow,omitempty"`
}

// PipelineSpec is an ordered chain of middleware components.
type PipelineSpec struct {
	// Handlers run in order.
	// +optional
	// +listType=atomic
	Handlers []HandlerSpec `json:"handlers,omitempty"`
}

// HandlerSpec places one middleware component in a pipeline.
type HandlerSpec struct {
	// Name of the middleware Component.
	// +required
	Name string `json:"name"`

	// Type of the middleware, for example middleware.http.uppercase.
	// +required
	Type string `json:"type"`

	// Version of the middleware type, for example v1.
	// +optional
	Version string `json:"version,omitempty"`

	// Selector applies the handler only to some requests.
	// +optional
	Selector *SelectorSpec `json:"selector,omitempty"`
}

// SelectorSpec selects requests by field values.
type SelectorSpec struct {
	// Fields must all match.
	// +optional
	// +listType=atomic
	Fields []SelectorField `json:"fields,omitempty"`
}

// SelectorField is one field/value condition of a selector.
type SelectorField struct {
	// Field to test.
	// +required
	Field string `json:"field"`

	// Value the field must have.
	// +required
	Value string `json:"value"`
}

// TracingSpec configures distributed tracing.
type TracingSpec struct {
	// SamplingRate is the fraction of traces recorded, from "0" (tracing off)
	// to "1" (every trace), written as a string. Defaults to "0.0001".
	// +optional
	SamplingRate string `json:"samplingRate,omitempty"`

	// Stdout also writes spans to the sidecar's standard output.
	// +optional
	Stdout *bool `json:"stdout,omitempty"`

	// Zipkin exports spans to a Zipkin server.
	// +optional
	Zipkin *ZipkinSpec `json:"zipkin,omitempty"`

	// Otel exports spans over OTLP.
	// +optional
	Otel *OtelSpec `json:"otel,omitempty"`
}

// ZipkinSpec configures the Zipkin exporter.
type ZipkinSpec struct {
	// EndpointAddress is the URL of the Zipkin span API, for example
	// http://zipkin.default.svc.cluster.local:9411/api/v2/spans.
	// +optional
	EndpointAddress string `json:"endpointAddress,omitempty"`
}

// OtelSpec configures the OTLP exporter.
type OtelSpec struct {
	// Protocol is http or grpc.
	// +optional
	Protocol string `json:"protocol,omitempty"`

	// EndpointAddress is the collector's host and optional port, for example
	// otel-collector:4317.
	// +optional
	EndpointAddress string `json:"endpointAddress,omitempty"`

	// IsSecure uses TLS towards the collector. Defaults to true.
	// +optional
	IsSecure *bool `json:"isSecure,omitempty"`

	// Headers are added to every export request, for example an API key.
	// Values may come from secrets.
	// +optional
	// +listType=atomic
	Headers []common.NameValuePair `json:"headers,omitempty"`

	// Timeout of one export request: a number of milliseconds (10000) or a
	// Go duration ("10s"). Defaults to 10s.
	// +optional
	Timeout *intstr.IntOrString `json:"timeout,omitempty"`
}

// MetricSpec configures metrics.
type MetricSpec struct {
	// Enabled turns metrics on or off. Defaults to true.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// RecordErrorCodes adds a metric that counts the Dapr error codes
	// returned. Defaults to false.
	// +optional
	RecordErrorCodes *bool `json:"recordErrorCodes,omitempty"`

	// HTTP configures the HTTP server metrics.
	// +optional
	HTTP *MetricHTTP `json:"http,omitempty"`

	// LatencyDistributionBuckets are the bucket bounds, in milliseconds, of the
	// latency histograms. When empty, the default buckets are used.
	// +optional
	// +listType=atomic
	LatencyDistributionBuckets []int32 `json:"latencyDistributionBuckets,omitempty"`

	// Rules rewrite label values to keep the number of series low.
	// +optional
	// +listType=atomic
	Rules []MetricsRule `json:"rules,omitempty"`
}

// MetricHTTP configures the HTTP server metrics.
type MetricHTTP struct {
	// IncreasedCardinality labels HTTP metrics with the full request path,
	// which can create many series.
	// +optional
	IncreasedCardinality *bool `json:"increasedCardinality,omitempty"`

	// PathMatching lists path patterns, such as /orders/{orderID}, used as
	// the path label instead of the raw path.
	// +optional
	// +listType=atomic
	PathMatching []string `json:"pathMatching,omitempty"`

	// ExcludeVerbs drops the HTTP method label. Defaults to false.
	// +optional
	ExcludeVerbs *bool `json:"excludeVerbs,omitempty"`
}

// MetricsRule rewrites the labels of one metric.
type MetricsRule struct {
	// Name of the metric, for example dapr_runtime_service_invocation_req_sent_total.
	// +required
	Name string `json:"name"`

	// Labels to rewrite.
	// +optional
	// +listType=atomic
	Labels []MetricLabel `json:"labels,omitempty"`
}

// MetricLabel rewrites the values of one label with regular expressions.
type MetricLabel struct {
	// Name of the label.
	// +required
	Name string `json:"name"`

	// Regex maps a replacement value to the regular expression whose matches
	// it replaces, for example "orders/": "orders/.+".
	// +optional
	Regex map[string]string `json:"regex,omitempty"`
}

// MTLSSpec configures mutual TLS between sidecars and the control plane.
type MTLSSpec struct {
	// Enabled turns mTLS on. Defaults to true.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// WorkloadCertTTL is how long a workload certificate is valid, as a Go
	// duration. Defaults to 24h.
	// +optional
	WorkloadCertTTL string `json:"workloadCertTTL,omitempty"`

	// AllowedClockSkew is the tolerance when checking certificate validity,
	// as a Go duration. Defaults to 15m.
	// +optional
	AllowedClockSkew string `json:"allowedClockSkew,omitempty"`

	// SentryAddress is the address of the certificate authority.
	// +optional
	SentryAddress string `json:"sentryAddress,omitempty"`

	// ControlPlaneTrustDomain is the SPIFFE trust domain of the control plane.
	// +optional
	ControlPlaneTrustDomain string `json:"controlPlaneTrustDomain,omitempty"`

	// TokenValidators are extra validators for the tokens that workloads
	// present when they request a certificate.
	// +optional
	// +listType=atomic
	TokenValidators []ValidatorSpec `json:"tokenValidators,omitempty"`
}

// ValidatorSpec is one token validator.
type ValidatorSpec struct {
	// Name of the validator.
	// +required
	// +kubebuilder:validation:Enum=jwks
	Name string `json:"name"`

	// Options of the validator, as a free-form object.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Options *common.DynamicValue `json:"options,omitempty"`
}

// SecretsSpec limits access to secret stores.
type SecretsSpec struct {
	// Scopes hold one access policy per secret store.
	// +optional
	// +listType=atomic
	Scopes []SecretsScope `json:"scopes,omitempty"`
}

// SecretsScope is the access policy of one secret store.
type SecretsScope struct {
	// StoreName is the name of the secret store component.
	// +required
	StoreName string `json:"storeName"`

	// DefaultAccess is allow or deny for secrets in neither list. Defaults to
	// allow.
	// +optional
	DefaultAccess string `json:"defaultAccess,omitempty"`

	// AllowedSecrets, when set, are the only secrets that may be read.
	// +optional
	// +listType=atomic
	AllowedSecrets []string `json:"allowedSecrets,omitempty"`

	// DeniedSecrets may never be read.
	// +optional
	// +listType=atomic
	DeniedSecrets []string `json:"deniedSecrets,omitempty"`
}

// AccessControlSpec limits which apps may invoke this app.
type AccessControlSpec struct {
	// DefaultAction is allow or deny for callers without a policy.
	// +optional
	DefaultAction string `json:"defaultAction,omitempty"`

	// TrustDomain of this app. Defaults to public.
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`

	// Policies set the access of individual calling apps.
	// +optional
	// +listType=atomic
	Policies []AppPolicySpec `json:"policies,omitempty"`
}

// AppPolicySpec is the access policy of one calling app.
type AppPolicySpec struct {
	// AppID of the calling app.
	// +required
	AppID string `json:"appId"`

	// DefaultAction is allow or deny for operations not listed.
	// +optional
	DefaultAction string `json:"defaultAction,omitempty"`

	// TrustDomain of the calling app.
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`

	// Namespace of the calling app.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Operations set the access to individual methods.
	// +optional
	// +listType=atomic
	Operations []AppOperationAction `json:"operations,omitempty"`
}

// AppOperationAction allows or denies one method to a calling app.
type AppOperationAction struct {
	// Name of the method; may end in /* or /** to match a prefix.
	// +required
	Name string `json:"name"`

	// HTTPVerb limits the rule to some HTTP methods; * matches all.
	// +optional
	// +listType=atomic
	HTTPVerb []string `json:"httpVerb,omitempty"`

	// Action is allow or deny.
	// +required
	Action string `json:"action"`
}

// NameResolutionSpec chooses the name resolution component.
type NameResolutionSpec struct {
	// Component type, for example kubernetes, mdns or consul.
	// +optional
	Component string `json:"component,omitempty"`

	// Version of the component.
	// +optional
	Version string `json:"version,omitempty"`

	// Configuration of the component, as a free-form object.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Configuration *common.DynamicValue `json:"configuration,omitempty"`
}

// FeatureSpec turns one preview feature on or off.
type FeatureSpec struct {
	// Name of the feature.
	// +required
	Name string `json:"name"`

	// Enabled turns the feature on.
	// +optional
	Enabled bool `json:"enabled"`
}

// APISpec limits the sidecar APIs an app may call. When allowed is set, only
// the listed APIs are served; denied APIs are never served.
type APISpec struct {
	// Allowed APIs.
	// +optional
	// +listType=atomic
	Allowed []APIAccessRule `json:"allowed,omitempty"`

	// Denied APIs.
	// +optional
	// +listType=atomic
	Denied []APIAccessRule `json:"denied,omitempty"`
}

// APIAccessRule names one sidecar API.
type APIAccessRule struct {
	// Name of the API, for example state or invoke.
	// +required
	Name string `json:"name"`

	// Version of the API, for example v1.0.
	// +required
	Version string `json:"version"`

	// Protocol is http or grpc. When empty the rule applies to both.
	// +optional
	Protocol string `json:"protocol,omitempty"`
}

// ComponentsSpec limits the component types that may be loaded.
type ComponentsSpec struct {
	// Deny lists component types, optionally with a version such as
	// state.in-memory/v1, that may not be loaded.
	// +optional
	// +listType=atomic
	Deny []string `json:"deny,omitempty"`
}

// LoggingSpec configures the sidecar's logs.
type LoggingSpec struct {
	// APILogging configures the log line written for each API call.
	// +optional
	APILogging *APILoggingSpec `json:"apiLogging,omitempty"`
}

// APILoggingSpec configures API call logging.
type APILoggingSpec struct {
	// Enabled is the default of the dapr.io/enable-api-logging annotation.
	// Defaults to false.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// ObfuscateURLs logs the route template instead of the full URL, which may
	// hold personal data. Defaults to false.
	// +optional
	ObfuscateURLs *bool `json:"obfuscateURLs,omitempty"`

	// OmitHealthChecks leaves health check calls out of the log. Defaults to
	// false.
	// +optional
	OmitHealthChecks *bool `json:"omitHealthChecks,omitempty"`
}

// WasmSpec configures WebAssembly components.
type WasmSpec struct {
	// StrictSandbox runs every WebAssembly component in strict mode, without
	// real clocks or real randomness.
	// +optional
	StrictSandbox bool `json:"strictSandbox,omitempty"`
}

// WorkflowSpec configures the workflow engine of the sidecar.
type WorkflowSpec struct {
	// MaxConcurrentWorkflowInvocations caps the workflows that run at once in
	// one sidecar; more wait in a queue. When unset there is no cap.
	// +optional
	MaxConcurrentWorkflowInvocations int32 `json:"maxConcurrentWorkflowInvocations,omitempty"`

	// MaxConcurrentActivityInvocations caps the activities that run at once
	// in one sidecar; more wait in a queue. When unset there is no cap.
	// +optional
	MaxConcurrentActivityInvocations int32 `json:"maxConcurrentActivityInvocations,omitempty"`

	// StateRetentionPolicy purges the state of finished workflows. When unset
	// it is kept forever.
	// +optional
	StateRetentionPolicy *WorkflowStateRetentionPolicy `json:"stateRetentionPolicy,omitempty"`
}

// WorkflowStateRetentionPolicy sets how long the state of a finished workflow
// is kept, per terminal state, as Go durations such as 72h or 0s. A specific
// state wins over anyTerminal.
type WorkflowStateRetentionPolicy struct {
	// AnyTerminal applies to every terminal state not set below.
	// +optional
	AnyTerminal string `json:"anyTerminal,omitempty"`

	// Completed applies to completed workflows.
	// +optional
	Completed string `json:"completed,omitempty"`

	// Failed applies to failed workflows.
	// +optional
	Failed string `json:"failed,omitempty"`

	// Terminated applies to terminated workflows.
	// +optional
	Terminated string `json:"terminated,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=dapr
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Configuration tunes sidecars: tracing, metrics, middleware, access control,
// API and secret limits, and more. The Configuration named daprsystem also
// configures the control plane, such as mTLS.
type Configuration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec holds the settings.
	// +optional
	Spec ConfigurationSpec `json:"spec,omitempty"`

	// Status is reported by Outrigger.
	// +optional
	Status common.Status `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// ConfigurationList is a list of Configurations.
type ConfigurationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Configuration `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Configuration{}, &ConfigurationList{})
}
