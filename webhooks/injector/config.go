package injector

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// AppProtocol is how the sidecar talks to the app.
type AppProtocol string

const (
	ProtocolHTTP  AppProtocol = "http"
	ProtocolGRPC  AppProtocol = "grpc"
	ProtocolHTTPS AppProtocol = "https"
	ProtocolGRPCS AppProtocol = "grpcs"
	ProtocolH2C   AppProtocol = "h2c"
)

// LogLevel is the sidecar's log level.
type LogLevel string

const (
	LogLevelDebug LogLevel = "debug"
	LogLevelInfo  LogLevel = "info"
	LogLevelWarn  LogLevel = "warn"
	LogLevelError LogLevel = "error"
	LogLevelFatal LogLevel = "fatal"
)

// Probe holds the timings of one of the sidecar's Kubernetes probes.
type Probe struct {
	InitialDelaySeconds int32
	TimeoutSeconds      int32
	PeriodSeconds       int32
	FailureThreshold    int32
}

// AppHealthCheck is the sidecar's own probing of the app, not a Kubernetes probe.
type AppHealthCheck struct {
	Enabled bool
	Path    string
	// Interval and Timeout reach daprd-style flags as whole seconds and
	// milliseconds, the units Dapr's annotations use.
	Interval  time.Duration
	Timeout   time.Duration
	Threshold int32
}

// SecretEnvVar is one variable of dapr.io/env-from-secret.
type SecretEnvVar struct {
	Name       string
	SecretName string
	SecretKey  string
}

// SidecarConfig is everything the patch needs, parsed and validated.
type SidecarConfig struct {
	AppID             string
	AppPort           int32 // 0: the app has no port and the sidecar never calls it
	AppProtocol       AppProtocol
	AppChannelAddress string
	Config            string
	AppMaxConcurrency *int32 // nil: not annotated, the sidecar's default applies
	PlacementAddress  string

	LogLevel         LogLevel
	LogAsJSON        bool
	EnableAPILogging *bool // nil: the Configuration resource decides

	EnableMetrics    bool
	MetricsPort      int32
	HTTPPort         int32
	GRPCPort         int32
	InternalGRPCPort int32
	PublicPort       int32
	ListenAddresses  string

	CPURequest    *resource.Quantity
	CPULimit      *resource.Quantity
	MemoryRequest *resource.Quantity
	MemoryLimit   *resource.Quantity

	LivenessProbe  Probe
	ReadinessProbe Probe

	Image              string
	SeccompProfileType corev1.SeccompProfileType

	APITokenSecret string
	AppTokenSecret string
	Env            []corev1.EnvVar
	EnvFromSecret  []SecretEnvVar

	MaxBodySize             resource.Quantity
	ReadBufferSize          resource.Quantity
	GracefulShutdownSeconds int32
	BlockShutdownDuration   *time.Duration // nil: shutdown is not held back

	UnixDomainSocketPath string
	// VolumeMounts come from dapr.io/volume-mounts (ReadOnly) then
	// dapr.io/volume-mounts-rw; BuildPatch checks that their volumes exist.
	VolumeMounts []corev1.VolumeMount

	DisableBuiltinK8sSecretStore bool

	AppHealth AppHealthCheck

	// MTLS is set by the handler when the operator runs its certificate authority
	// (operator --enable-mtls); no annotation turns it on or off, as in Dapr.
	MTLS *MTLS

	EnableNativeSidecar bool
	EnableProfiling     bool

	// Warnings are for the admission response: ignored, deprecated and unknown
	// dapr.io annotations. They never stop the injection.
	Warnings []string
}

// MTLS is what a sidecar needs to get its workload certificate from the operator's
// certificate authority (Dapr's Sentry).
type MTLS struct {
	// SentryAddress is host:port of the certificate authority's Service.
	SentryAddress string
	// TrustAnchors are the PEM root certificates the sidecar trusts.
	TrustAnchors string
	// ControlPlaneNamespace is the operator's namespace, where the sidecar expects the
	// authority's identity spiffe://cluster.local/ns/<namespace>/dapr-sentry.
	ControlPlaneNamespace string
}

// Defaults are the operator's settings that annotations may override.
type Defaults struct {
	// Image is the operator's --sidecar-image; a pod without dapr.io/sidecar-image
	// and an operator without it cannot be injected.
	Image string
	// LogLevel applies when dapr.io/log-level is absent; empty means info.
	LogLevel LogLevel
	// LogAsJSON applies when dapr.io/log-as-json is absent.
	LogAsJSON bool
	// EnableNativeSidecar applies when dapr.io/enable-native-sidecar is absent,
	// like Dapr's cluster-wide nativeSidecar setting.
	EnableNativeSidecar bool
	// SeccompProfileType applies when dapr.io/sidecar-seccomp-profile-type is
	// absent; empty means RuntimeDefault.
	SeccompProfileType corev1.SeccompProfileType
	// PublicPort is where the sidecar serves healthz and metadata; it has no
	// annotation in Dapr either. Zero means 3501.
	PublicPort int32
}

// AnnotationError names the annotation whose value is wrong, so that the user who
// reads the denied admission knows which line of the manifest to fix.
type AnnotationError struct {
	Key    string
	Value  string
	Reason string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s: %q %s", e.Key, e.Value, e.Reason)
}

// Enabled reports whether the pod asks for a sidecar. Like Dapr, it takes any value
// but a true form (true, t, yes, y, on, 1) as no, so such pods are left alone.
func Enabled(annotations map[string]string) bool {
	v, ok := annotations[AnnotationEnabled]
	if !ok {
		return false
	}
	b, known := parseBool(v)
	return known && b
}

// ParseAnnotations turns a pod's annotations into a SidecarConfig. It reports every
// malformed value at once, joined, so that one denied admission lists all fixes.
// podName is the app ID when dapr.io/app-id is absent. Pods made from a template
// have no name yet at admission, so the caller derives one for them.
func ParseAnnotations(podName string, annotations map[string]string, defaults Defaults) (*SidecarConfig, error) {
	p := parser{ann: annotations}
	c := &SidecarConfig{}

	c.AppID = p.appID(podName)
	c.AppPort = p.port(AnnotationAppPort, 0)
	c.AppProtocol = p.appProtocol()
	c.AppChannelAddress = p.str(AnnotationAppChannelAddress, "")
	c.Config = p.name(AnnotationConfig)
	c.AppMaxConcurrency = p.maxConcurrency()
	c.PlacementAddress = strings.TrimSpace(strings.Trim(p.str(AnnotationPlacementAddress, ""), `"'`))

	c.LogLevel = p.logLevel(orDefault(defaults.LogLevel, DefaultLogLevel))
	c.LogAsJSON = p.boolean(AnnotationLogAsJSON, defaults.LogAsJSON)
	if _, ok := p.get(AnnotationEnableAPILogging); ok {
		b := p.boolean(AnnotationEnableAPILogging, false)
		c.EnableAPILogging = &b
	}

	c.EnableMetrics = p.boolean(AnnotationEnableMetrics, DefaultEnableMetrics)
	c.MetricsPort = p.port(AnnotationMetricsPort, DefaultMetricsPort)
	c.HTTPPort = p.port(AnnotationHTTPPort, DefaultHTTPPort)
	c.GRPCPort = p.port(AnnotationGRPCPort, DefaultGRPCPort)
	c.InternalGRPCPort = p.port(AnnotationInternalGRPCPort, DefaultInternalGRPCPort)
	c.PublicPort = defaults.PublicPort
	if c.PublicPort == 0 {
		c.PublicPort = DefaultPublicPort
	}
	c.ListenAddresses = p.listenAddresses()
	p.checkPorts(c)

	c.CPURequest = p.quantity(AnnotationSidecarCPURequest)
	c.CPULimit = p.quantity(AnnotationSidecarCPULimit)
	c.MemoryRequest = p.quantity(AnnotationSidecarMemoryRequest)
	c.MemoryLimit = p.quantity(AnnotationSidecarMemoryLimit)
	p.checkRequestLimit(AnnotationSidecarCPURequest, c.CPURequest, AnnotationSidecarCPULimit, c.CPULimit)
	p.checkRequestLimit(AnnotationSidecarMemoryRequest, c.MemoryRequest, AnnotationSidecarMemoryLimit, c.MemoryLimit)

	c.LivenessProbe = Probe{
		InitialDelaySeconds: p.nonNegative(AnnotationLivenessProbeDelaySeconds, DefaultProbeDelaySeconds),
		TimeoutSeconds:      p.nonNegative(AnnotationLivenessProbeTimeoutSeconds, DefaultProbeTimeoutSeconds),
		PeriodSeconds:       p.nonNegative(AnnotationLivenessProbePeriodSeconds, DefaultProbePeriodSeconds),
		FailureThreshold:    p.nonNegative(AnnotationLivenessProbeThreshold, DefaultProbeThreshold),
	}
	c.ReadinessProbe = Probe{
		InitialDelaySeconds: p.nonNegative(AnnotationReadinessProbeDelaySeconds, DefaultProbeDelaySeconds),
		TimeoutSeconds:      p.nonNegative(AnnotationReadinessProbeTimeoutSeconds, DefaultProbeTimeoutSeconds),
		PeriodSeconds:       p.nonNegative(AnnotationReadinessProbePeriodSeconds, DefaultProbePeriodSeconds),
		FailureThreshold:    p.nonNegative(AnnotationReadinessProbeThreshold, DefaultProbeThreshold),
	}

	c.Image = p.str(AnnotationSidecarImage, defaults.Image)
	if c.Image == "" {
		p.fail(AnnotationSidecarImage, "", "is not set and the operator has no default sidecar image")
	}
	c.SeccompProfileType = p.seccomp(orDefault(defaults.SeccompProfileType, DefaultSeccompProfileType))

	c.APITokenSecret = p.name(AnnotationAPITokenSecret)
	c.AppTokenSecret = p.name(AnnotationAppTokenSecret)
	c.Env = p.env()
	c.EnvFromSecret = p.envFromSecret()

	c.MaxBodySize = p.size(AnnotationMaxBodySize, AnnotationHTTPMaxRequestSize, "Mi", DefaultMaxBodySize)
	c.ReadBufferSize = p.size(AnnotationReadBufferSize, AnnotationHTTPReadBufferSize, "Ki", DefaultReadBufferSize)
	c.GracefulShutdownSeconds = p.gracefulShutdown()
	c.BlockShutdownDuration = p.duration(AnnotationBlockShutdownDuration)

	c.UnixDomainSocketPath = p.absPath(AnnotationUnixDomainSocketPath)
	c.VolumeMounts = append(p.volumeMounts(AnnotationVolumeMounts, true), p.volumeMounts(AnnotationVolumeMountsRW, false)...)
	p.checkMountPaths(c.VolumeMounts, c.UnixDomainSocketPath != "")

	c.DisableBuiltinK8sSecretStore = p.boolean(AnnotationDisableBuiltinK8sSecretStore, false)

	c.AppHealth = AppHealthCheck{
		Enabled:   p.boolean(AnnotationEnableAppHealthCheck, false),
		Path:      p.str(AnnotationAppHealthCheckPath, DefaultAppHealthCheckPath),
		Interval:  time.Duration(p.positive(AnnotationAppHealthProbeInterval, DefaultAppHealthProbeInterval)) * time.Second,
		Timeout:   time.Duration(p.positive(AnnotationAppHealthProbeTimeout, DefaultAppHealthProbeTimeout)) * time.Millisecond,
		Threshold: p.positive(AnnotationAppHealthThreshold, DefaultAppHealthThreshold),
	}

	c.EnableNativeSidecar = p.boolean(AnnotationEnableNativeSidecar, defaults.EnableNativeSidecar)
	c.EnableProfiling = p.boolean(AnnotationEnableProfiling, false)

	c.Warnings = warnings(annotations)

	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

// parser reads annotations and collects every failure instead of stopping at the
// first.
type parser struct {
	ann  map[string]string
	errs []error
}

func (p *parser) fail(key, value, reason string) {
	p.errs = append(p.errs, &AnnotationError{Key: key, Value: value, Reason: reason})
}

// get treats an annotation set to blanks as absent: Helm charts and Kustomize
// overlays often render optional values as "".
func (p *parser) get(key string) (string, bool) {
	v, ok := p.ann[key]
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

func (p *parser) str(key, def string) string {
	if v, ok := p.get(key); ok {
		return v
	}
	return def
}

// parseBool accepts the forms Dapr's IsTruthy accepts as true, and their opposites.
// known is false for anything else.
func parseBool(v string) (value, known bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "t", "true", "y", "yes", "on":
		return true, true
	case "", "0", "f", "false", "n", "no", "off":
		return false, true
	}
	return false, false
}

// boolean rejects values Dapr would silently read as false: a typo in a switch
// should not quietly change the sidecar.
func (p *parser) boolean(key string, def bool) bool {
	v, ok := p.get(key)
	if !ok {
		return def
	}
	b, known := parseBool(v)
	if !known {
		p.fail(key, v, "is not a boolean (use true or false)")
		return def
	}
	return b
}

func (p *parser) integer(key string) (int64, string, bool) {
	v, ok := p.get(key)
	if !ok {
		return 0, "", false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		p.fail(key, v, "is not an integer")
		return 0, v, false
	}
	return n, v, true
}

func (p *parser) port(key string, def int32) int32 {
	v, ok := p.get(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		p.fail(key, v, "is not a valid port number (1-65535)")
		return def
	}
	return int32(n)
}

func (p *parser) nonNegative(key string, def int32) int32 {
	n, v, ok := p.integer(key)
	if !ok {
		return def
	}
	if n < 0 {
		p.fail(key, v, "must not be negative")
		return def
	}
	return int32(n)
}

func (p *parser) positive(key string, def int32) int32 {
	n, v, ok := p.integer(key)
	if !ok {
		return def
	}
	if n < 1 {
		p.fail(key, v, "must be a positive integer")
		return def
	}
	return int32(n)
}

func (p *parser) maxConcurrency() *int32 {
	n, v, ok := p.integer(AnnotationAppMaxConcurrency)
	if !ok {
		return nil
	}
	if n < -1 {
		p.fail(AnnotationAppMaxConcurrency, v, "must be a positive integer, or -1 for no limit")
		return nil
	}
	m := int32(n)
	return &m
}

// appID holds the app ID to what the <app-id>-dapr Service name allows, because
// that Service is how other sidecars find this one.
func (p *parser) appID(podName string) string {
	const rule = "a lowercase DNS-1123 label of at most 58 characters"
	if v, ok := p.get(AnnotationAppID); ok {
		if !validAppID(v) {
			p.fail(AnnotationAppID, v, "is not a valid app ID: it must be "+rule)
		}
		return v
	}
	switch {
	case podName == "":
		p.fail(AnnotationAppID, "", "is not set and the pod has no name to default to")
	case !validAppID(podName):
		p.fail(AnnotationAppID, "", "is not set, and the pod name "+strconv.Quote(podName)+" is not a valid app ID: it must be "+rule)
	}
	return podName
}

func validAppID(id string) bool {
	return len(validation.IsDNS1123Label(id+"-dapr")) == 0
}

func (p *parser) appProtocol() AppProtocol {
	proto := DefaultAppProtocol
	if v, ok := p.get(AnnotationAppProtocol); ok {
		switch AppProtocol(strings.ToLower(v)) {
		case ProtocolHTTP, ProtocolGRPC, ProtocolHTTPS, ProtocolGRPCS, ProtocolH2C:
			proto = AppProtocol(strings.ToLower(v))
		default:
			p.fail(AnnotationAppProtocol, v, "is not an app protocol (use http, grpc, https, grpcs or h2c)")
		}
	}
	// The deprecated app-ssl upgrades the plain protocols to their TLS forms, as
	// daprd still does for manifests written before Dapr 1.11.
	if p.boolean(AnnotationAppSSL, false) {
		switch proto {
		case ProtocolHTTP:
			proto = ProtocolHTTPS
		case ProtocolGRPC:
			proto = ProtocolGRPCS
		}
	}
	return proto
}

func (p *parser) logLevel(def LogLevel) LogLevel {
	v, ok := p.get(AnnotationLogLevel)
	if !ok {
		return def
	}
	switch l := LogLevel(strings.ToLower(v)); l {
	case LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError, LogLevelFatal:
		return l
	}
	p.fail(AnnotationLogLevel, v, "is not a log level (use debug, info, warn, error or fatal)")
	return def
}

// name checks the names of Kubernetes objects the sidecar will look up, so a typo
// fails at admission rather than as a pod stuck in CreateContainerConfigError.
func (p *parser) name(key string) string {
	v, ok := p.get(key)
	if !ok {
		return ""
	}
	if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
		p.fail(key, v, "is not a valid resource name: "+strings.Join(msgs, "; "))
		return ""
	}
	return v
}

func (p *parser) listenAddresses() string {
	v, ok := p.get(AnnotationSidecarListenAddresses)
	if !ok {
		return DefaultSidecarListenAddresses
	}
	for a := range strings.SplitSeq(v, ",") {
		a = strings.TrimSpace(a)
		host := strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
		if host != "localhost" && net.ParseIP(host) == nil {
			p.fail(AnnotationSidecarListenAddresses, v, "contains "+strconv.Quote(a)+", which is not an IP address")
			return DefaultSidecarListenAddresses
		}
	}
	return v
}

// checkPorts catches clashes that would make daprd fail to bind and crash-loop. It
// blames an annotation the user wrote rather than a default.
func (p *parser) checkPorts(c *SidecarConfig) {
	type sidecarPort struct {
		key  string // empty for the public port, which has no annotation
		port int32
	}
	ports := [...]sidecarPort{
		{AnnotationHTTPPort, c.HTTPPort},
		{AnnotationGRPCPort, c.GRPCPort},
		{AnnotationInternalGRPCPort, c.InternalGRPCPort},
		{AnnotationMetricsPort, c.MetricsPort},
		{"", c.PublicPort},
	}
	describe := func(sp sidecarPort) string {
		if sp.key == "" {
			return "the sidecar's public port"
		}
		return "the sidecar's " + sp.key
	}
	annotated := func(sp sidecarPort) bool {
		_, ok := p.get(sp.key)
		return sp.key != "" && ok
	}
	for i, a := range ports {
		for _, b := range ports[i+1:] {
			if a.port != b.port {
				continue
			}
			blame, other := a, b
			if !annotated(blame) {
				blame, other = b, a
			}
			p.fail(blame.key, strconv.Itoa(int(blame.port)), "is the same port as "+describe(other))
		}
		if c.AppPort != 0 && c.AppPort == a.port {
			p.fail(AnnotationAppPort, strconv.Itoa(int(c.AppPort)), "is the same port as "+describe(a))
		}
	}
}

func (p *parser) quantity(key string) *resource.Quantity {
	v, ok := p.get(key)
	if !ok {
		return nil
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		p.fail(key, v, "is not a valid resource quantity (such as 100m or 256Mi)")
		return nil
	}
	if q.Sign() < 0 {
		p.fail(key, v, "must not be negative")
		return nil
	}
	return &q
}

// checkRequestLimit repeats an API server rule so the message names annotations
// instead of container fields the user never wrote.
func (p *parser) checkRequestLimit(reqKey string, req *resource.Quantity, limKey string, lim *resource.Quantity) {
	if req != nil && lim != nil && req.Cmp(*lim) > 0 {
		p.fail(reqKey, req.String(), "is more than "+limKey+" ("+lim.String()+")")
	}
}

// seccomp rejects Localhost because no annotation carries the profile's path,
// without which the API server refuses the pod with a less helpful message.
func (p *parser) seccomp(def corev1.SeccompProfileType) corev1.SeccompProfileType {
	v, ok := p.get(AnnotationSidecarSeccompProfileType)
	if !ok {
		return def
	}
	for _, t := range []corev1.SeccompProfileType{corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeUnconfined} {
		if strings.EqualFold(v, string(t)) {
			return t
		}
	}
	p.fail(AnnotationSidecarSeccompProfileType, v, "is not a supported seccomp profile type (use RuntimeDefault or Unconfined)")
	return def
}

// isEnvName matches Dapr's rule for variable names in env annotations: a C
// identifier.
func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '_', ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z':
		case ch >= '0' && ch <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// splitEnvList splits KEY1=v1,KEY2=v2 only at commas followed by another NAME=,
// as Dapr does, so that a value may itself contain commas.
func splitEnvList(v string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(v); i++ {
		if v[i] != ',' {
			continue
		}
		rest := strings.TrimLeft(v[i+1:], " \t")
		if eq := strings.IndexByte(rest, '='); eq > 0 && isEnvName(rest[:eq]) {
			parts = append(parts, v[start:i])
			start = i + 1
		}
	}
	return append(parts, v[start:])
}

func (p *parser) env() []corev1.EnvVar {
	v, ok := p.get(AnnotationEnv)
	if !ok {
		return nil
	}
	parts := splitEnvList(v)
	vars := make([]corev1.EnvVar, 0, len(parts))
	for _, part := range parts {
		name, value, found := strings.Cut(strings.TrimSpace(part), "=")
		if !found || !isEnvName(name) {
			p.fail(AnnotationEnv, v, "is not a list of NAME=value pairs: "+strconv.Quote(part)+" has no valid NAME=")
			return nil
		}
		vars = append(vars, corev1.EnvVar{Name: name, Value: value})
	}
	return vars
}

func (p *parser) envFromSecret() []SecretEnvVar {
	v, ok := p.get(AnnotationEnvFromSecret)
	if !ok {
		return nil
	}
	var vars []SecretEnvVar
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		name, ref, found := strings.Cut(part, "=")
		secret, key, hasKey := strings.Cut(ref, ":")
		// A Secret with one key is referenced by name alone, and Dapr expects that
		// key to be named like the Secret.
		if !hasKey {
			key = secret
		}
		switch {
		case !found || !isEnvName(name):
			p.fail(AnnotationEnvFromSecret, v, "is not a list of NAME=secret or NAME=secret:key: "+strconv.Quote(part)+" has no valid NAME=")
			return nil
		case len(validation.IsDNS1123Subdomain(secret)) > 0:
			p.fail(AnnotationEnvFromSecret, v, "names "+strconv.Quote(secret)+", which is not a valid Secret name")
			return nil
		case len(validation.IsConfigMapKey(key)) > 0:
			p.fail(AnnotationEnvFromSecret, v, "names "+strconv.Quote(key)+", which is not a valid Secret key")
			return nil
		}
		vars = append(vars, SecretEnvVar{Name: name, SecretName: secret, SecretKey: key})
	}
	return vars
}

// size reads a quantity annotation, falling back to its deprecated integer
// spelling (a count of unit, MB or KB in Dapr's words, which daprd reads as
// binary units) when only that one is set.
func (p *parser) size(key, legacyKey, legacyUnit, def string) resource.Quantity {
	if v, ok := p.get(key); ok {
		q, err := resource.ParseQuantity(v)
		switch {
		case err != nil:
			p.fail(key, v, "is not a valid size (such as "+def+")")
		case q.Sign() <= 0:
			p.fail(key, v, "must be positive")
		default:
			return q
		}
		return resource.MustParse(def)
	}
	if n, v, ok := p.integer(legacyKey); ok {
		if n <= 0 {
			p.fail(legacyKey, v, "must be positive")
			return resource.MustParse(def)
		}
		return resource.MustParse(strconv.FormatInt(n, 10) + legacyUnit)
	}
	return resource.MustParse(def)
}

// gracefulShutdown accepts -1 because it is Dapr's injector's own default and
// means "daprd's default", which is 5 seconds.
func (p *parser) gracefulShutdown() int32 {
	n, v, ok := p.integer(AnnotationGracefulShutdownSeconds)
	switch {
	case !ok:
		return DefaultGracefulShutdownSeconds
	case n == -1:
		return DefaultGracefulShutdownSeconds
	case n < 0:
		p.fail(AnnotationGracefulShutdownSeconds, v, "must not be negative")
		return DefaultGracefulShutdownSeconds
	}
	return int32(n)
}

func (p *parser) duration(key string) *time.Duration {
	v, ok := p.get(key)
	if !ok {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.fail(key, v, "is not a duration (such as 30s or 1m)")
		return nil
	}
	if d < 0 {
		p.fail(key, v, "must not be negative")
		return nil
	}
	return &d
}

func (p *parser) absPath(key string) string {
	v, ok := p.get(key)
	if !ok {
		return ""
	}
	if !strings.HasPrefix(v, "/") {
		p.fail(key, v, "is not an absolute path")
		return ""
	}
	return v
}

func (p *parser) volumeMounts(key string, readOnly bool) []corev1.VolumeMount {
	v, ok := p.get(key)
	if !ok {
		return nil
	}
	var mounts []corev1.VolumeMount
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		name, path, found := strings.Cut(part, ":")
		name, path = strings.TrimSpace(name), strings.TrimSpace(path)
		if !found || name == "" || !strings.HasPrefix(path, "/") {
			p.fail(key, v, "is not a list of volume:/absolute/path pairs: "+strconv.Quote(part))
			return nil
		}
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: path, ReadOnly: readOnly})
	}
	return mounts
}

// checkMountPaths repeats the API server's rule that a container's mount paths are
// unique, so the message names the annotation.
func (p *parser) checkMountPaths(mounts []corev1.VolumeMount, withSocket bool) {
	paths := make([]string, 0, len(mounts)+1)
	if withSocket {
		paths = append(paths, UnixDomainSocketDaprdPath)
	}
	for _, m := range mounts {
		if slices.Contains(paths, m.MountPath) {
			key := AnnotationVolumeMountsRW
			if m.ReadOnly {
				key = AnnotationVolumeMounts
			}
			p.fail(key, m.Name+":"+m.MountPath, "mounts at a path the sidecar already uses")
			continue
		}
		paths = append(paths, m.MountPath)
	}
}

// warnings lists what the user may want to know without the pod being denied.
// They are sorted because map order would make admission responses flap.
func warnings(annotations map[string]string) []string {
	var out []string
	for key := range annotations {
		if !strings.HasPrefix(key, "dapr.io/") {
			continue
		}
		info, known := lookupAnnotation(key)
		switch {
		case !known:
			out = append(out, "annotation "+key+" is not a Dapr annotation; check its spelling")
		case info.Status == StatusIgnored:
			out = append(out, "annotation "+key+" is not supported by Outrigger and is ignored")
		case info.Status == StatusDeprecated:
			out = append(out, "annotation "+key+" is deprecated; use "+info.ReplacedBy)
		}
	}
	slices.Sort(out)
	return out
}

func orDefault[T ~string](v, def T) T {
	if v == "" {
		return def
	}
	return v
}
