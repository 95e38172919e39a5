// Package runtime wires one sidecar: its flags, its components, its servers and its
// lifecycle from start to graceful shutdown.
package runtime

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/outrigger-dev/outrigger/sidecar/security"
)

// Modes the sidecar runs in.
const (
	ModeStandalone = "standalone"
	ModeKubernetes = "kubernetes"
)

// Config is everything a sidecar is started with: daprd's flags, plus the environment
// Dapr reads (DAPR_API_TOKEN, APP_API_TOKEN, NAMESPACE).
type Config struct {
	AppID             string
	AppPort           int
	AppProtocol       string
	AppChannelAddress string
	AppMaxConcurrency int

	HTTPPort         int
	GRPCPort         int
	InternalGRPCPort int
	PublicPort       int
	MetricsPort      int
	EnableMetrics    bool
	ListenAddresses  []string

	ResourcesPaths []string
	ConfigPath     string
	Mode           string

	LogLevel         string
	LogAsJSON        bool
	EnableAPILogging bool

	MaxBodySize           int64
	ReadBufferSize        int64
	GracefulShutdown      time.Duration
	BlockShutdownDuration time.Duration

	EnableAppHealthCheck   bool
	AppHealthCheckPath     string
	AppHealthProbeInterval time.Duration
	AppHealthProbeTimeout  time.Duration
	AppHealthThreshold     int

	UnixDomainSocket             string
	DisableBuiltinK8sSecretStore bool
	EnableProfiling              bool
	PlacementHostAddress         string

	// EnableMTLS secures the internal channel with a certificate that the certificate
	// authority at SentryAddress issues for the token in SentryTokenFile
	// (DAPR_SENTRY_TOKEN_FILE, default security.DefaultTokenFile), verified against
	// TrustAnchors (DAPR_TRUST_ANCHORS, PEM).
	EnableMTLS      bool
	SentryAddress   string
	TrustAnchors    []byte
	SentryTokenFile string
	// ControlPlaneNamespace and ControlPlaneTrustDomain (DAPR_CONTROLPLANE_NAMESPACE,
	// DAPR_CONTROLPLANE_TRUST_DOMAIN) name the certificate authority's SPIFFE ID;
	// without a namespace its certificate is checked by the host of SentryAddress.
	ControlPlaneNamespace   string
	ControlPlaneTrustDomain string

	APIToken    string
	AppAPIToken string
	Namespace   string
	// PodName is POD_NAME, which the injector sets; it names the pod in component
	// status reports and fills {podName} in metadata.
	PodName string

	// RunPID and AppCommand come from `outrigger run` (OUTRIGGER_RUN_PID,
	// OUTRIGGER_APP_COMMAND) for the sidecar's entry in the self-hosted registry.
	RunPID     int
	AppCommand string
}

// flagValues are the raw flags; Finish turns them into a Config.
type flagValues struct {
	cfg                     Config
	listenAddresses         string
	maxBodySize             string
	readBufferSize          string
	gracefulShutdownSeconds int
	appHealthIntervalSecs   int
	appHealthTimeoutMillis  int
	componentsPath          []string
}

// Flags binds daprd-compatible flags to fs; call Finish after parsing.
func Flags(fs *pflag.FlagSet) *flagValues {
	v := &flagValues{}
	c := &v.cfg
	fs.StringVar(&c.AppID, "app-id", "", "the app's id, unique in its namespace")
	fs.IntVar(&c.AppPort, "app-port", 0, "port the app listens on; 0 when the app takes no calls")
	fs.StringVar(&c.AppProtocol, "app-protocol", "http", "protocol of the app channel: http, grpc, https, grpcs or h2c")
	fs.StringVar(&c.AppChannelAddress, "app-channel-address", "127.0.0.1", "address of the app")
	fs.IntVar(&c.AppMaxConcurrency, "app-max-concurrency", -1, "most concurrent calls to the app; -1 is unlimited")
	fs.IntVar(&c.HTTPPort, "dapr-http-port", 3500, "port of the HTTP API")
	fs.IntVar(&c.GRPCPort, "dapr-grpc-port", 50001, "port of the gRPC API")
	fs.IntVar(&c.InternalGRPCPort, "dapr-internal-grpc-port", 50002, "port sidecars call each other on")
	fs.IntVar(&c.PublicPort, "dapr-public-port", 3501, "port of the health and metadata endpoints")
	fs.IntVar(&c.MetricsPort, "metrics-port", 9090, "port of the Prometheus metrics")
	fs.BoolVar(&c.EnableMetrics, "enable-metrics", true, "serve metrics")
	fs.StringVar(&v.listenAddresses, "dapr-listen-addresses", "", `addresses the APIs listen on, comma-separated (default "[::1],127.0.0.1" standalone, all interfaces in Kubernetes)`)
	fs.StringArrayVar(&c.ResourcesPaths, "resources-path", nil, "directory of component and other resource manifests; repeatable")
	fs.StringArrayVar(&v.componentsPath, "components-path", nil, "deprecated alias of --resources-path")
	_ = fs.MarkDeprecated("components-path", "use --resources-path")
	fs.StringVar(&c.ConfigPath, "config", "", "the Configuration: a file in standalone mode, a resource name in Kubernetes")
	fs.StringVar(&c.Mode, "mode", ModeStandalone, "standalone or kubernetes")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn, error or fatal")
	fs.BoolVar(&c.LogAsJSON, "log-as-json", false, "log as JSON")
	fs.BoolVar(&c.EnableAPILogging, "enable-api-logging", false, "log every API call")
	fs.StringVar(&v.maxBodySize, "max-body-size", "4Mi", "largest request body, as a quantity (4Mi)")
	fs.StringVar(&v.readBufferSize, "read-buffer-size", "4Ki", "HTTP read buffer size, as a quantity")
	fs.IntVar(&v.gracefulShutdownSeconds, "dapr-graceful-shutdown-seconds", 5, "how long in-flight calls may take to finish on shutdown")
	fs.DurationVar(&c.BlockShutdownDuration, "dapr-block-shutdown-duration", 0, "keep serving this long after SIGTERM before shutting down")
	fs.BoolVar(&c.EnableAppHealthCheck, "enable-app-health-check", false, "probe the app's health")
	fs.StringVar(&c.AppHealthCheckPath, "app-health-check-path", "/healthz", "path of the app's health endpoint (HTTP apps)")
	fs.IntVar(&v.appHealthIntervalSecs, "app-health-probe-interval", 5, "seconds between app health probes")
	fs.IntVar(&v.appHealthTimeoutMillis, "app-health-probe-timeout", 500, "milliseconds an app health probe may take")
	fs.IntVar(&c.AppHealthThreshold, "app-health-threshold", 3, "failed probes before the app counts as unhealthy")
	fs.StringVar(&c.UnixDomainSocket, "unix-domain-socket", "", "directory for the APIs' Unix domain sockets")
	fs.BoolVar(&c.DisableBuiltinK8sSecretStore, "disable-builtin-k8s-secret-store", false, "do not load the built-in kubernetes secret store")
	fs.BoolVar(&c.EnableProfiling, "enable-profiling", false, "serve pprof on the metrics port")
	fs.BoolVar(&c.EnableMTLS, "enable-mtls", false, "mTLS between sidecars, with a certificate from the certificate authority at --sentry-address and the trust anchors in DAPR_TRUST_ANCHORS")
	fs.StringVar(&c.SentryAddress, "sentry-address", "", "host:port of the certificate authority (Sentry) that issues the sidecar's certificate with --enable-mtls")
	fs.StringVar(&c.PlacementHostAddress, "placement-host-address", "", "accepted for compatibility with daprd; Outrigger needs no placement service")
	return v
}

// Finish validates the flags and reads the environment. Errors name the flag.
func (v *flagValues) Finish(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := v.cfg
	var errs []error
	c.ResourcesPaths = append(c.ResourcesPaths, v.componentsPath...)
	if c.AppID == "" {
		errs = append(errs, errors.New("--app-id is required"))
	}
	if c.Mode != ModeStandalone && c.Mode != ModeKubernetes {
		errs = append(errs, fmt.Errorf("--mode %q: use standalone or kubernetes", c.Mode))
	}
	switch c.AppProtocol {
	case "http", "grpc", "https", "grpcs", "h2c":
	default:
		errs = append(errs, fmt.Errorf("--app-protocol %q: use http, grpc, https, grpcs or h2c", c.AppProtocol))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error", "fatal":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: use debug, info, warn, error or fatal", c.LogLevel))
	}
	for name, p := range map[string]int{"--app-port": c.AppPort, "--dapr-http-port": c.HTTPPort, "--dapr-grpc-port": c.GRPCPort,
		"--dapr-internal-grpc-port": c.InternalGRPCPort, "--dapr-public-port": c.PublicPort, "--metrics-port": c.MetricsPort} {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %d: not a port number", name, p))
		}
	}
	var err error
	if c.MaxBodySize, err = quantity("--max-body-size", v.maxBodySize); err != nil {
		errs = append(errs, err)
	}
	if c.ReadBufferSize, err = quantity("--read-buffer-size", v.readBufferSize); err != nil {
		errs = append(errs, err)
	}
	if v.gracefulShutdownSeconds < 0 {
		// Dapr's injector passes -1 for "the default".
		v.gracefulShutdownSeconds = 5
	}
	c.GracefulShutdown = time.Duration(v.gracefulShutdownSeconds) * time.Second
	c.AppHealthProbeInterval = time.Duration(v.appHealthIntervalSecs) * time.Second
	c.AppHealthProbeTimeout = time.Duration(v.appHealthTimeoutMillis) * time.Millisecond
	if v.listenAddresses != "" {
		for _, a := range strings.Split(v.listenAddresses, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.ListenAddresses = append(c.ListenAddresses, strings.Trim(a, "[]"))
			}
		}
	} else if c.Mode == ModeKubernetes {
		c.ListenAddresses = []string{""}
	} else {
		c.ListenAddresses = []string{"127.0.0.1"}
	}
	c.APIToken = getenv("DAPR_API_TOKEN")
	c.AppAPIToken = getenv("APP_API_TOKEN")
	c.Namespace = getenv("NAMESPACE")
	c.PodName = getenv("POD_NAME")
	c.RunPID, _ = strconv.Atoi(getenv("OUTRIGGER_RUN_PID"))
	c.AppCommand = getenv("OUTRIGGER_APP_COMMAND")
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	c.ControlPlaneNamespace = getenv("DAPR_CONTROLPLANE_NAMESPACE")
	c.ControlPlaneTrustDomain = getenv("DAPR_CONTROLPLANE_TRUST_DOMAIN")
	c.SentryTokenFile = getenv("DAPR_SENTRY_TOKEN_FILE")
	if c.SentryTokenFile == "" {
		c.SentryTokenFile = security.DefaultTokenFile
	}
	if c.EnableMTLS {
		errs = append(errs, c.checkMTLS(getenv("DAPR_TRUST_ANCHORS"))...)
	}
	return c, errors.Join(errs...)
}

// checkMTLS names what --enable-mtls lacks; the token file is read at start.
func (c *Config) checkMTLS(anchors string) []error {
	var errs []error
	if c.SentryAddress == "" {
		errs = append(errs, errors.New("--enable-mtls needs --sentry-address, the certificate authority's host:port"))
	}
	if strings.TrimSpace(anchors) == "" {
		errs = append(errs, errors.New("--enable-mtls needs DAPR_TRUST_ANCHORS, the PEM trust anchors of the certificate authority"))
	} else if _, err := security.ParseTrustAnchors([]byte(anchors)); err != nil {
		errs = append(errs, fmt.Errorf("DAPR_TRUST_ANCHORS: %w", err))
	} else {
		c.TrustAnchors = []byte(anchors)
	}
	return errs
}

func quantity(flag, s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() <= 0 {
		return 0, fmt.Errorf("%s %q: not a positive size such as 4Mi", flag, s)
	}
	return q.Value(), nil
}
