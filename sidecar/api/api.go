// Package api holds what both transports (http, grpc) need from the runtime besides
// the building blocks: identity, health, metadata and shutdown.
package api

import (
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/state"
)

// Runtime is the sidecar as the transports see it.
type Runtime interface {
	// Metadata is what GET /v1.0/metadata and gRPC GetMetadata report.
	Metadata() Metadata
	// SetExtendedMetadata records an app-supplied attribute (PUT /v1.0/metadata/{key}).
	SetExtendedMetadata(key, value string)
	// Healthy is nil when the components are loaded and the app channel is up.
	Healthy() error
	// OutboundHealthy is nil when the components are loaded: the sidecar can serve
	// the app's calls even if the app itself is not ready yet.
	OutboundHealthy() error
	// Shutdown starts a graceful shutdown and returns at once.
	Shutdown()
}

// Blocks are the building blocks the transports serve.
type Blocks struct {
	State state.API
	// Invoke is service invocation; nil answers every invocation with
	// ERR_DIRECT_INVOKE "invoke API is not ready", as Dapr does before it is set up.
	Invoke invoke.API
	// Pubsub is publishing; nil answers ERR_PUBSUB_NOT_CONFIGURED.
	Pubsub pubsub.API
}

// Metadata mirrors Dapr's metadata response.
type Metadata struct {
	ID              string
	RuntimeVersion  string
	EnabledFeatures []string
	Components      []Component
	// FailedComponents is Outrigger's addition: components that did not load, and why.
	FailedComponents []FailedComponent
	// HTTPEndpoints are the names of the loaded HTTPEndpoint resources.
	HTTPEndpoints []string
	// Subscriptions are the pub/sub subscriptions wanted, with the error of any that is
	// not in force.
	Subscriptions           []pubsub.SubscriptionInfo
	Extended                map[string]string
	AppConnectionProperties AppConnectionProperties
}

// Component is one loaded component.
type Component struct {
	Name         string
	Type         string
	Version      string
	Capabilities []string
}

// FailedComponent is one component that failed to initialise.
type FailedComponent struct {
	Name    string
	Type    string
	Version string
	Error   string
}

// AppConnectionProperties describe the app channel.
type AppConnectionProperties struct {
	Port           int
	Protocol       string
	ChannelAddress string
	MaxConcurrency int
	Health         *AppHealth
}

// AppHealth is the app health check's configuration and last state.
type AppHealth struct {
	HealthCheckPath     string
	HealthProbeInterval string
	HealthProbeTimeout  string
	HealthThreshold     int
	// Status is "healthy", "unhealthy" or "" before the first probe. Dapr's metadata
	// has no such field; Outrigger reports it in the HTTP metadata response.
	Status string
}

// Options shared by both transports.
type Options struct {
	// APIToken, when set, must come in the dapr-api-token header (or gRPC metadata) of
	// every call except health checks.
	APIToken string
	// EnableAPILogging logs one line per API call.
	EnableAPILogging bool
	// MaxBodySize in bytes; larger requests get 413 (HTTP) or ResourceExhausted (gRPC).
	MaxBodySize int64
}
