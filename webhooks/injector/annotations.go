// Package injector turns a pod's dapr.io annotations into a SidecarConfig and the
// SidecarConfig into the JSON patch that injects the daprd sidecar. Both steps are
// pure functions; the admission handler around them does the I/O.
package injector

import "slices"

// Annotation keys, spelled exactly as Dapr spells them: manifests written for Dapr
// must inject the same sidecar here.
const (
	// Identity and app.
	AnnotationEnabled           = "dapr.io/enabled"
	AnnotationAppID             = "dapr.io/app-id"
	AnnotationAppPort           = "dapr.io/app-port"
	AnnotationAppProtocol       = "dapr.io/app-protocol"
	AnnotationAppSSL            = "dapr.io/app-ssl"
	AnnotationAppChannelAddress = "dapr.io/app-channel-address"
	AnnotationConfig            = "dapr.io/config"
	AnnotationAppMaxConcurrency = "dapr.io/app-max-concurrency"
	AnnotationPlacementAddress  = "dapr.io/placement-host-address"

	// Logs.
	AnnotationLogLevel         = "dapr.io/log-level"
	AnnotationLogAsJSON        = "dapr.io/log-as-json"
	AnnotationEnableAPILogging = "dapr.io/enable-api-logging"

	// Ports and listeners.
	AnnotationEnableMetrics          = "dapr.io/enable-metrics"
	AnnotationMetricsPort            = "dapr.io/metrics-port"
	AnnotationGRPCPort               = "dapr.io/grpc-port"
	AnnotationInternalGRPCPort       = "dapr.io/internal-grpc-port"
	AnnotationHTTPPort               = "dapr.io/http-port"
	AnnotationSidecarListenAddresses = "dapr.io/sidecar-listen-addresses"

	// Sidecar resources.
	AnnotationSidecarCPURequest    = "dapr.io/sidecar-cpu-request"
	AnnotationSidecarCPULimit      = "dapr.io/sidecar-cpu-limit"
	AnnotationSidecarMemoryRequest = "dapr.io/sidecar-memory-request"
	AnnotationSidecarMemoryLimit   = "dapr.io/sidecar-memory-limit"

	// Sidecar probes.
	AnnotationLivenessProbeDelaySeconds    = "dapr.io/sidecar-liveness-probe-delay-seconds"
	AnnotationLivenessProbeTimeoutSeconds  = "dapr.io/sidecar-liveness-probe-timeout-seconds"
	AnnotationLivenessProbePeriodSeconds   = "dapr.io/sidecar-liveness-probe-period-seconds"
	AnnotationLivenessProbeThreshold       = "dapr.io/sidecar-liveness-probe-threshold"
	AnnotationReadinessProbeDelaySeconds   = "dapr.io/sidecar-readiness-probe-delay-seconds"
	AnnotationReadinessProbeTimeoutSeconds = "dapr.io/sidecar-readiness-probe-timeout-seconds"
	AnnotationReadinessProbePeriodSeconds  = "dapr.io/sidecar-readiness-probe-period-seconds"
	AnnotationReadinessProbeThreshold      = "dapr.io/sidecar-readiness-probe-threshold"

	// Image and security.
	AnnotationSidecarImage              = "dapr.io/sidecar-image"
	AnnotationSidecarSeccompProfileType = "dapr.io/sidecar-seccomp-profile-type"

	// Tokens and environment.
	AnnotationAPITokenSecret = "dapr.io/api-token-secret" //nolint:gosec // a Secret's name, not a secret
	AnnotationAppTokenSecret = "dapr.io/app-token-secret" //nolint:gosec // a Secret's name, not a secret
	AnnotationEnv            = "dapr.io/env"
	AnnotationEnvFromSecret  = "dapr.io/env-from-secret"

	// Limits and shutdown.
	AnnotationMaxBodySize             = "dapr.io/max-body-size"
	AnnotationHTTPMaxRequestSize      = "dapr.io/http-max-request-size"
	AnnotationReadBufferSize          = "dapr.io/read-buffer-size"
	AnnotationHTTPReadBufferSize      = "dapr.io/http-read-buffer-size"
	AnnotationGracefulShutdownSeconds = "dapr.io/graceful-shutdown-seconds"
	AnnotationBlockShutdownDuration   = "dapr.io/block-shutdown-duration"

	// Mounts.
	AnnotationUnixDomainSocketPath = "dapr.io/unix-domain-socket-path"
	AnnotationVolumeMounts         = "dapr.io/volume-mounts"
	AnnotationVolumeMountsRW       = "dapr.io/volume-mounts-rw"

	// Secrets.
	AnnotationDisableBuiltinK8sSecretStore = "dapr.io/disable-builtin-k8s-secret-store" //nolint:gosec // a switch, not a secret

	// App health.
	AnnotationEnableAppHealthCheck   = "dapr.io/enable-app-health-check"
	AnnotationAppHealthCheckPath     = "dapr.io/app-health-check-path"
	AnnotationAppHealthProbeInterval = "dapr.io/app-health-probe-interval"
	AnnotationAppHealthProbeTimeout  = "dapr.io/app-health-probe-timeout"
	AnnotationAppHealthThreshold     = "dapr.io/app-health-threshold"

	// Placement of the sidecar and diagnostics.
	AnnotationEnableNativeSidecar = "dapr.io/enable-native-sidecar"
	AnnotationEnableProfiling     = "dapr.io/enable-profiling"

	// Dapr annotations that Outrigger recognises but does not act on. Naming them
	// lets the webhook warn that they are ignored instead of calling them typos.
	AnnotationEnableDebug                      = "dapr.io/enable-debug"
	AnnotationDebugPort                        = "dapr.io/debug-port"
	AnnotationSchedulerAddress                 = "dapr.io/scheduler-host-address"
	AnnotationPluggableComponents              = "dapr.io/pluggable-components"
	AnnotationPluggableComponentsSocketsFolder = "dapr.io/pluggable-components-sockets-folder"
	AnnotationComponentContainer               = "dapr.io/component-container"
	AnnotationInjectPluggableComponents        = "dapr.io/inject-pluggable-components"
	AnnotationSentryRequestJWTAudiences        = "dapr.io/sentry-request-jwt-audiences"
	AnnotationSidecarServiceAnnotations        = "dapr.io/sidecar-svc-annotations"
	AnnotationDisableInitEndpoints             = "dapr.io/disable-init-endpoints"
)

// Dapr's defaults (injector and daprd, Dapr 1.14 to 1.17). Dapr 1.18 widened the
// liveness and tightened the readiness probe defaults; Outrigger follows the
// releases its proto packages come from.
const (
	DefaultAppProtocol             = ProtocolHTTP
	DefaultLogLevel                = LogLevelInfo
	DefaultHTTPPort                = 3500
	DefaultGRPCPort                = 50001
	DefaultInternalGRPCPort        = 50002
	DefaultPublicPort              = 3501
	DefaultMetricsPort             = 9090
	DefaultEnableMetrics           = true
	DefaultSidecarListenAddresses  = "[::1],127.0.0.1"
	DefaultProbeDelaySeconds       = 3
	DefaultProbeTimeoutSeconds     = 3
	DefaultProbePeriodSeconds      = 6
	DefaultProbeThreshold          = 3
	DefaultMaxBodySize             = "4Mi"
	DefaultReadBufferSize          = "4Ki"
	DefaultGracefulShutdownSeconds = 5
	DefaultAppHealthCheckPath      = "/healthz"
	DefaultAppHealthProbeInterval  = 5   // seconds, as Dapr counts it
	DefaultAppHealthProbeTimeout   = 500 // milliseconds, as Dapr counts it
	DefaultAppHealthThreshold      = 3
	DefaultSeccompProfileType      = "RuntimeDefault"
)

// AnnotationStatus says how Outrigger treats an annotation.
type AnnotationStatus string

const (
	// StatusSupported annotations are honoured as Dapr honours them.
	StatusSupported AnnotationStatus = "supported"
	// StatusDeprecated annotations are honoured, but Dapr has a newer spelling.
	StatusDeprecated AnnotationStatus = "deprecated"
	// StatusIgnored annotations are Dapr's, but Outrigger does not act on them.
	StatusIgnored AnnotationStatus = "ignored"
	// StatusExtension annotations are Outrigger's own; Dapr does not read them.
	StatusExtension AnnotationStatus = "extension"
)

// AnnotationInfo describes one annotation for generated documentation and for the
// webhook's warnings.
type AnnotationInfo struct {
	Key         string
	Default     string
	Description string
	Status      AnnotationStatus
	// ReplacedBy names the annotation to use instead of a deprecated one.
	ReplacedBy string
}

// annotationTable is data, not state: nothing writes it after initialisation, and
// AnnotationTable hands out copies.
var annotationTable = [...]AnnotationInfo{
	{Key: AnnotationEnabled, Default: "false", Status: StatusSupported,
		Description: "Inject the daprd sidecar into the pod. Accepts true/false, yes/no, y/n, on/off, 1/0."},
	{Key: AnnotationAppID, Default: "the pod's name", Status: StatusSupported,
		Description: "Unique ID of the app, used for service invocation, state key prefixes and pub/sub consumer IDs. Must be a DNS-1123 label short enough for the <app-id>-dapr Service."},
	{Key: AnnotationAppPort, Default: "unset", Status: StatusSupported,
		Description: "Port the app listens on. Without it the sidecar does not call the app."},
	{Key: AnnotationAppProtocol, Default: string(DefaultAppProtocol), Status: StatusSupported,
		Description: "Protocol the sidecar uses to call the app: http, grpc, https, grpcs or h2c."},
	{Key: AnnotationAppSSL, Default: "false", Status: StatusDeprecated, ReplacedBy: AnnotationAppProtocol,
		Description: "Call the app over TLS; turns http into https and grpc into grpcs."},
	{Key: AnnotationAppChannelAddress, Default: "127.0.0.1 (the sidecar's default)", Status: StatusSupported,
		Description: "Network address the app listens on."},
	{Key: AnnotationConfig, Default: "unset", Status: StatusSupported,
		Description: "Name of the Configuration resource the sidecar uses."},
	{Key: AnnotationAppMaxConcurrency, Default: "-1 (no limit)", Status: StatusSupported,
		Description: "Most requests the sidecar sends to the app at once; -1 for no limit."},
	{Key: AnnotationPlacementAddress, Default: "unset", Status: StatusSupported,
		Description: "Comma-separated actor placement addresses, passed to the sidecar as is."},

	{Key: AnnotationLogLevel, Default: string(DefaultLogLevel), Status: StatusSupported,
		Description: "Sidecar log level: debug, info, warn, error or fatal."},
	{Key: AnnotationLogAsJSON, Default: "false", Status: StatusSupported,
		Description: "Write sidecar logs as JSON."},
	{Key: AnnotationEnableAPILogging, Default: "unset (the Configuration decides)", Status: StatusSupported,
		Description: "Log every API call the app makes to the sidecar. When set, true or false overrides the Configuration."},

	{Key: AnnotationEnableMetrics, Default: "true", Status: StatusSupported,
		Description: "Serve Prometheus metrics from the sidecar."},
	{Key: AnnotationMetricsPort, Default: "9090", Status: StatusSupported,
		Description: "Port of the sidecar's metrics server."},
	{Key: AnnotationGRPCPort, Default: "50001", Status: StatusSupported,
		Description: "Port of the sidecar's gRPC API; given to the app as DAPR_GRPC_PORT."},
	{Key: AnnotationInternalGRPCPort, Default: "50002", Status: StatusSupported,
		Description: "Port sidecars use to call each other. Every app in the cluster must use the same value."},
	{Key: AnnotationHTTPPort, Default: "3500", Status: StatusExtension,
		Description: "Port of the sidecar's HTTP API; given to the app as DAPR_HTTP_PORT. Dapr has no such annotation."},
	{Key: AnnotationSidecarListenAddresses, Default: DefaultSidecarListenAddresses, Status: StatusSupported,
		Description: "Comma-separated IP addresses the sidecar's APIs listen on; 0.0.0.0 or [::] for all."},

	{Key: AnnotationSidecarCPURequest, Default: "unset", Status: StatusSupported,
		Description: "CPU request of the sidecar container, as a Kubernetes quantity."},
	{Key: AnnotationSidecarCPULimit, Default: "unset", Status: StatusSupported,
		Description: "CPU limit of the sidecar container, as a Kubernetes quantity."},
	{Key: AnnotationSidecarMemoryRequest, Default: "unset", Status: StatusSupported,
		Description: "Memory request of the sidecar container, as a Kubernetes quantity."},
	{Key: AnnotationSidecarMemoryLimit, Default: "unset", Status: StatusSupported,
		Description: "Memory limit of the sidecar container, as a Kubernetes quantity."},

	{Key: AnnotationLivenessProbeDelaySeconds, Default: "3", Status: StatusSupported,
		Description: "Seconds after the sidecar starts before its liveness probe runs."},
	{Key: AnnotationLivenessProbeTimeoutSeconds, Default: "3", Status: StatusSupported,
		Description: "Seconds before a liveness probe of the sidecar times out."},
	{Key: AnnotationLivenessProbePeriodSeconds, Default: "6", Status: StatusSupported,
		Description: "Seconds between liveness probes of the sidecar."},
	{Key: AnnotationLivenessProbeThreshold, Default: "3", Status: StatusSupported,
		Description: "Failed liveness probes in a row before the sidecar is restarted."},
	{Key: AnnotationReadinessProbeDelaySeconds, Default: "3", Status: StatusSupported,
		Description: "Seconds after the sidecar starts before its readiness probe runs."},
	{Key: AnnotationReadinessProbeTimeoutSeconds, Default: "3", Status: StatusSupported,
		Description: "Seconds before a readiness probe of the sidecar times out."},
	{Key: AnnotationReadinessProbePeriodSeconds, Default: "6", Status: StatusSupported,
		Description: "Seconds between readiness probes of the sidecar."},
	{Key: AnnotationReadinessProbeThreshold, Default: "3", Status: StatusSupported,
		Description: "Failed readiness probes in a row before the pod is marked unready."},

	{Key: AnnotationSidecarImage, Default: "the operator's --sidecar-image", Status: StatusSupported,
		Description: "Image of the sidecar container."},
	{Key: AnnotationSidecarSeccompProfileType, Default: DefaultSeccompProfileType, Status: StatusSupported,
		Description: "seccompProfile.type of the sidecar container: RuntimeDefault or Unconfined. Dapr omits the field by default; Outrigger defaults to RuntimeDefault so the pod passes the restricted Pod Security Standard."},

	{Key: AnnotationAPITokenSecret, Default: "unset", Status: StatusSupported,
		Description: "Secret whose key \"token\" the app must send as dapr-api-token; given to the sidecar as DAPR_API_TOKEN."},
	{Key: AnnotationAppTokenSecret, Default: "unset", Status: StatusSupported,
		Description: "Secret whose key \"token\" the sidecar sends to the app as dapr-api-token; given to the sidecar as APP_API_TOKEN."},
	{Key: AnnotationEnv, Default: "unset", Status: StatusSupported,
		Description: "Environment variables for the sidecar: KEY1=value1,KEY2=value2. A value may contain commas."},
	{Key: AnnotationEnvFromSecret, Default: "unset", Status: StatusSupported,
		Description: "Environment variables for the sidecar from Secrets: KEY=secret-name (key named like the Secret) or KEY=secret-name:key, comma-separated."},

	{Key: AnnotationMaxBodySize, Default: DefaultMaxBodySize, Status: StatusSupported,
		Description: "Largest request body the sidecar accepts, as a quantity such as 16Mi."},
	{Key: AnnotationHTTPMaxRequestSize, Default: "4", Status: StatusDeprecated, ReplacedBy: AnnotationMaxBodySize,
		Description: "Largest request body in MB."},
	{Key: AnnotationReadBufferSize, Default: DefaultReadBufferSize, Status: StatusSupported,
		Description: "Size of the sidecar's HTTP header read buffer, as a quantity such as 16Ki."},
	{Key: AnnotationHTTPReadBufferSize, Default: "4", Status: StatusDeprecated, ReplacedBy: AnnotationReadBufferSize,
		Description: "Size of the HTTP header read buffer in KB."},
	{Key: AnnotationGracefulShutdownSeconds, Default: "5", Status: StatusSupported,
		Description: "Seconds the sidecar waits for in-flight work when it stops. Keep it below the pod's terminationGracePeriodSeconds."},
	{Key: AnnotationBlockShutdownDuration, Default: "unset", Status: StatusSupported,
		Description: "Go duration (such as 30s) for which the sidecar keeps serving the app after SIGTERM, or until the app turns unhealthy."},

	{Key: AnnotationUnixDomainSocketPath, Default: "unset", Status: StatusSupported,
		Description: "Directory in the app containers where the sidecar's Unix domain sockets appear."},
	{Key: AnnotationVolumeMounts, Default: "unset", Status: StatusSupported,
		Description: "Pod volumes to mount read-only in the sidecar: volume:/path,volume2:/path2."},
	{Key: AnnotationVolumeMountsRW, Default: "unset", Status: StatusSupported,
		Description: "Pod volumes to mount read-write in the sidecar: volume:/path,volume2:/path2."},

	{Key: AnnotationDisableBuiltinK8sSecretStore, Default: "false", Status: StatusSupported,
		Description: "Do not load the built-in kubernetes secret store; the sidecar then gets no read access to Secrets."},

	{Key: AnnotationEnableAppHealthCheck, Default: "false", Status: StatusSupported,
		Description: "Probe the app's health and pause subscriptions and bindings while it is unhealthy."},
	{Key: AnnotationAppHealthCheckPath, Default: DefaultAppHealthCheckPath, Status: StatusSupported,
		Description: "Path probed when the app speaks HTTP."},
	{Key: AnnotationAppHealthProbeInterval, Default: "5", Status: StatusSupported,
		Description: "Seconds between app health probes."},
	{Key: AnnotationAppHealthProbeTimeout, Default: "500", Status: StatusSupported,
		Description: "Milliseconds before an app health probe times out."},
	{Key: AnnotationAppHealthThreshold, Default: "3", Status: StatusSupported,
		Description: "Failed app health probes in a row before the app counts as unhealthy."},

	{Key: AnnotationEnableNativeSidecar, Default: "the operator's default (false)", Status: StatusSupported,
		Description: "Inject daprd as a Kubernetes native sidecar: the first init container, with restartPolicy Always. Needs Kubernetes 1.29 or later."},
	{Key: AnnotationEnableProfiling, Default: "false", Status: StatusSupported,
		Description: "Serve pprof profiles from the sidecar."},

	{Key: AnnotationEnableDebug, Default: "false", Status: StatusIgnored,
		Description: "Dapr runs daprd under a debugger; Outrigger images carry none."},
	{Key: AnnotationDebugPort, Default: "40000", Status: StatusIgnored,
		Description: "Port of Dapr's debugger."},
	{Key: AnnotationSchedulerAddress, Default: "unset", Status: StatusIgnored,
		Description: "Address of Dapr's scheduler service, which Outrigger does not have."},
	{Key: AnnotationPluggableComponents, Default: "unset", Status: StatusIgnored,
		Description: "Containers of the pod that serve pluggable components."},
	{Key: AnnotationPluggableComponentsSocketsFolder, Default: "unset", Status: StatusIgnored,
		Description: "Socket folder shared with pluggable components."},
	{Key: AnnotationComponentContainer, Default: "unset", Status: StatusIgnored,
		Description: "Container to inject as a pluggable component."},
	{Key: AnnotationInjectPluggableComponents, Default: "false", Status: StatusIgnored,
		Description: "Inject containers of pluggable components."},
	{Key: AnnotationSentryRequestJWTAudiences, Default: "unset", Status: StatusIgnored,
		Description: "JWT audiences requested from Dapr's Sentry, which Outrigger does not have."},
	{Key: AnnotationSidecarServiceAnnotations, Default: "unset", Status: StatusIgnored,
		Description: "Annotations for the <app-id>-dapr Service."},
	{Key: AnnotationDisableInitEndpoints, Default: "unset", Status: StatusIgnored,
		Description: "App endpoints (config, subscribe) the sidecar must not call at start-up."},
}

// AnnotationTable returns every annotation the injector knows, in a stable order.
func AnnotationTable() []AnnotationInfo {
	return slices.Clone(annotationTable[:])
}

// lookupAnnotation finds an annotation's entry; a linear scan of about seventy
// entries beats building a map on every admission request.
func lookupAnnotation(key string) (AnnotationInfo, bool) {
	for i := range annotationTable {
		if annotationTable[i].Key == key {
			return annotationTable[i], true
		}
	}
	return AnnotationInfo{}, false
}
