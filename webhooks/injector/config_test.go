package injector

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
)

const testImage = "ghcr.io/outrigger-dev/outrigger:test"

var testDefaults = Defaults{Image: testImage}

// defaultConfig is what a pod annotated only with dapr.io/enabled gets: Dapr's
// defaults, written out by hand rather than read from the constants under test.
func defaultConfig(appID string) *SidecarConfig {
	return &SidecarConfig{
		AppID:                   appID,
		AppProtocol:             "http",
		LogLevel:                "info",
		EnableMetrics:           true,
		MetricsPort:             9090,
		HTTPPort:                3500,
		GRPCPort:                50001,
		InternalGRPCPort:        50002,
		PublicPort:              3501,
		ListenAddresses:         "[::1],127.0.0.1",
		LivenessProbe:           Probe{InitialDelaySeconds: 3, TimeoutSeconds: 3, PeriodSeconds: 6, FailureThreshold: 3},
		ReadinessProbe:          Probe{InitialDelaySeconds: 3, TimeoutSeconds: 3, PeriodSeconds: 6, FailureThreshold: 3},
		Image:                   testImage,
		SeccompProfileType:      corev1.SeccompProfileTypeRuntimeDefault,
		MaxBodySize:             resource.MustParse("4Mi"),
		ReadBufferSize:          resource.MustParse("4Ki"),
		GracefulShutdownSeconds: 5,
		AppHealth: AppHealthCheck{
			Path:      "/healthz",
			Interval:  5 * time.Second,
			Timeout:   500 * time.Millisecond,
			Threshold: 3,
		},
	}
}

func enabledWith(kv ...string) map[string]string {
	m := map[string]string{AnnotationEnabled: "true"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func quantity(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

func TestParseAnnotationsDefaults(t *testing.T) {
	got, err := ParseAnnotations("mypod", enabledWith(), testDefaults)
	if err != nil {
		t.Fatalf("ParseAnnotations: %v", err)
	}
	if want := defaultConfig("mypod"); !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("defaults differ:\ngot  %+v\nwant %+v", got, want)
	}
	if got.MaxBodySize.String() != "4Mi" || got.ReadBufferSize.String() != "4Ki" {
		t.Errorf("sizes render as %s and %s, want 4Mi and 4Ki", got.MaxBodySize.String(), got.ReadBufferSize.String())
	}
}

func TestParseAnnotationsOperatorDefaults(t *testing.T) {
	d := Defaults{
		Image:               "example.com/other:1",
		LogLevel:            LogLevelDebug,
		LogAsJSON:           true,
		EnableNativeSidecar: true,
		SeccompProfileType:  corev1.SeccompProfileTypeUnconfined,
		PublicPort:          3600,
	}
	got, err := ParseAnnotations("mypod", enabledWith(), d)
	if err != nil {
		t.Fatalf("ParseAnnotations: %v", err)
	}
	want := defaultConfig("mypod")
	want.Image = "example.com/other:1"
	want.LogLevel = LogLevelDebug
	want.LogAsJSON = true
	want.EnableNativeSidecar = true
	want.SeccompProfileType = corev1.SeccompProfileTypeUnconfined
	want.PublicPort = 3600
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// Annotations win over the operator's defaults.
	got, err = ParseAnnotations("mypod", enabledWith(
		AnnotationSidecarImage, "example.com/mine:2",
		AnnotationLogLevel, "warn",
		AnnotationLogAsJSON, "false",
		AnnotationEnableNativeSidecar, "false",
		AnnotationSidecarSeccompProfileType, "RuntimeDefault",
	), d)
	if err != nil {
		t.Fatalf("ParseAnnotations: %v", err)
	}
	if got.Image != "example.com/mine:2" || got.LogLevel != LogLevelWarn || got.LogAsJSON ||
		got.EnableNativeSidecar || got.SeccompProfileType != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("annotations did not override the operator's defaults: %+v", got)
	}
}

func TestParseAnnotationsEachAnnotation(t *testing.T) {
	tests := []struct {
		name string
		ann  map[string]string
		want func(c *SidecarConfig)
	}{
		{"app-id", enabledWith(AnnotationAppID, "nodeapp"), func(c *SidecarConfig) { c.AppID = "nodeapp" }},
		{"blank app-id falls back to the pod name", enabledWith(AnnotationAppID, " "), func(*SidecarConfig) {}},
		{"app-port", enabledWith(AnnotationAppPort, "3000"), func(c *SidecarConfig) { c.AppPort = 3000 }},
		{"app-port with blanks", enabledWith(AnnotationAppPort, " 8080 "), func(c *SidecarConfig) { c.AppPort = 8080 }},
		{"app-protocol grpc", enabledWith(AnnotationAppProtocol, "grpc"), func(c *SidecarConfig) { c.AppProtocol = ProtocolGRPC }},
		{"app-protocol upper case", enabledWith(AnnotationAppProtocol, "HTTPS"), func(c *SidecarConfig) { c.AppProtocol = ProtocolHTTPS }},
		{"app-protocol grpcs", enabledWith(AnnotationAppProtocol, "grpcs"), func(c *SidecarConfig) { c.AppProtocol = ProtocolGRPCS }},
		{"app-protocol h2c", enabledWith(AnnotationAppProtocol, "h2c"), func(c *SidecarConfig) { c.AppProtocol = ProtocolH2C }},
		{"app-ssl upgrades http", enabledWith(AnnotationAppSSL, "true"), func(c *SidecarConfig) {
			c.AppProtocol = ProtocolHTTPS
			c.Warnings = []string{"annotation dapr.io/app-ssl is deprecated; use dapr.io/app-protocol"}
		}},
		{"app-ssl upgrades grpc", enabledWith(AnnotationAppSSL, "yes", AnnotationAppProtocol, "grpc"), func(c *SidecarConfig) {
			c.AppProtocol = ProtocolGRPCS
			c.Warnings = []string{"annotation dapr.io/app-ssl is deprecated; use dapr.io/app-protocol"}
		}},
		{"app-channel-address", enabledWith(AnnotationAppChannelAddress, "10.0.0.7"), func(c *SidecarConfig) { c.AppChannelAddress = "10.0.0.7" }},
		{"config", enabledWith(AnnotationConfig, "appconfig"), func(c *SidecarConfig) { c.Config = "appconfig" }},
		{"app-max-concurrency", enabledWith(AnnotationAppMaxConcurrency, "10"), func(c *SidecarConfig) { c.AppMaxConcurrency = new(int32(10)) }},
		{"app-max-concurrency unlimited", enabledWith(AnnotationAppMaxConcurrency, "-1"), func(c *SidecarConfig) { c.AppMaxConcurrency = new(int32(-1)) }},
		{"placement-host-address", enabledWith(AnnotationPlacementAddress, `"placement:50005"`), func(c *SidecarConfig) { c.PlacementAddress = "placement:50005" }},
		{"log-level", enabledWith(AnnotationLogLevel, "DEBUG"), func(c *SidecarConfig) { c.LogLevel = LogLevelDebug }},
		{"log-as-json", enabledWith(AnnotationLogAsJSON, "true"), func(c *SidecarConfig) { c.LogAsJSON = true }},
		{"enable-api-logging true", enabledWith(AnnotationEnableAPILogging, "true"), func(c *SidecarConfig) { c.EnableAPILogging = new(true) }},
		{"enable-api-logging false is kept", enabledWith(AnnotationEnableAPILogging, "false"), func(c *SidecarConfig) { c.EnableAPILogging = new(false) }},
		{"enable-metrics", enabledWith(AnnotationEnableMetrics, "false"), func(c *SidecarConfig) { c.EnableMetrics = false }},
		{"metrics-port", enabledWith(AnnotationMetricsPort, "9191"), func(c *SidecarConfig) { c.MetricsPort = 9191 }},
		{"grpc-port", enabledWith(AnnotationGRPCPort, "50011"), func(c *SidecarConfig) { c.GRPCPort = 50011 }},
		{"internal-grpc-port", enabledWith(AnnotationInternalGRPCPort, "50012"), func(c *SidecarConfig) { c.InternalGRPCPort = 50012 }},
		{"http-port", enabledWith(AnnotationHTTPPort, "3510"), func(c *SidecarConfig) { c.HTTPPort = 3510 }},
		{"sidecar-listen-addresses", enabledWith(AnnotationSidecarListenAddresses, "0.0.0.0,[::]"), func(c *SidecarConfig) { c.ListenAddresses = "0.0.0.0,[::]" }},
		{"sidecar resources", enabledWith(
			AnnotationSidecarCPURequest, "100m",
			AnnotationSidecarCPULimit, "1",
			AnnotationSidecarMemoryRequest, "64Mi",
			AnnotationSidecarMemoryLimit, "256Mi",
		), func(c *SidecarConfig) {
			c.CPURequest, c.CPULimit = quantity("100m"), quantity("1")
			c.MemoryRequest, c.MemoryLimit = quantity("64Mi"), quantity("256Mi")
		}},
		{"liveness probe", enabledWith(
			AnnotationLivenessProbeDelaySeconds, "10",
			AnnotationLivenessProbeTimeoutSeconds, "4",
			AnnotationLivenessProbePeriodSeconds, "20",
			AnnotationLivenessProbeThreshold, "7",
		), func(c *SidecarConfig) { c.LivenessProbe = Probe{10, 4, 20, 7} }},
		{"readiness probe", enabledWith(
			AnnotationReadinessProbeDelaySeconds, "0",
			AnnotationReadinessProbeTimeoutSeconds, "1",
			AnnotationReadinessProbePeriodSeconds, "2",
			AnnotationReadinessProbeThreshold, "9",
		), func(c *SidecarConfig) { c.ReadinessProbe = Probe{0, 1, 2, 9} }},
		{"sidecar-image", enabledWith(AnnotationSidecarImage, "example.com/daprd:edge"), func(c *SidecarConfig) { c.Image = "example.com/daprd:edge" }},
		{"sidecar-seccomp-profile-type", enabledWith(AnnotationSidecarSeccompProfileType, "unconfined"), func(c *SidecarConfig) {
			c.SeccompProfileType = corev1.SeccompProfileTypeUnconfined
		}},
		{"api-token-secret", enabledWith(AnnotationAPITokenSecret, "dapr-api-token"), func(c *SidecarConfig) { c.APITokenSecret = "dapr-api-token" }},
		{"app-token-secret", enabledWith(AnnotationAppTokenSecret, "app-api-token"), func(c *SidecarConfig) { c.AppTokenSecret = "app-api-token" }},
		{"env", enabledWith(AnnotationEnv, "KEY1=value1,KEY2=value2"), func(c *SidecarConfig) {
			c.Env = []corev1.EnvVar{{Name: "KEY1", Value: "value1"}, {Name: "KEY2", Value: "value2"}}
		}},
		{"env values with commas, equals and blanks", enabledWith(AnnotationEnv, "LIST=a,b,c, URL=http://x/?q=1 ,_X="), func(c *SidecarConfig) {
			c.Env = []corev1.EnvVar{{Name: "LIST", Value: "a,b,c"}, {Name: "URL", Value: "http://x/?q=1"}, {Name: "_X", Value: ""}}
		}},
		{"env-from-secret", enabledWith(AnnotationEnvFromSecret, "TOKEN=single, PASS=multi:password"), func(c *SidecarConfig) {
			c.EnvFromSecret = []SecretEnvVar{
				{Name: "TOKEN", SecretName: "single", SecretKey: "single"},
				{Name: "PASS", SecretName: "multi", SecretKey: "password"},
			}
		}},
		{"max-body-size", enabledWith(AnnotationMaxBodySize, "16Mi"), func(c *SidecarConfig) { c.MaxBodySize = resource.MustParse("16Mi") }},
		{"legacy http-max-request-size", enabledWith(AnnotationHTTPMaxRequestSize, "8"), func(c *SidecarConfig) {
			c.MaxBodySize = resource.MustParse("8Mi")
			c.Warnings = []string{"annotation dapr.io/http-max-request-size is deprecated; use dapr.io/max-body-size"}
		}},
		{"max-body-size wins over the legacy key", enabledWith(AnnotationMaxBodySize, "2Mi", AnnotationHTTPMaxRequestSize, "8"), func(c *SidecarConfig) {
			c.MaxBodySize = resource.MustParse("2Mi")
			c.Warnings = []string{"annotation dapr.io/http-max-request-size is deprecated; use dapr.io/max-body-size"}
		}},
		{"read-buffer-size", enabledWith(AnnotationReadBufferSize, "32Ki"), func(c *SidecarConfig) { c.ReadBufferSize = resource.MustParse("32Ki") }},
		{"legacy http-read-buffer-size", enabledWith(AnnotationHTTPReadBufferSize, "16"), func(c *SidecarConfig) {
			c.ReadBufferSize = resource.MustParse("16Ki")
			c.Warnings = []string{"annotation dapr.io/http-read-buffer-size is deprecated; use dapr.io/read-buffer-size"}
		}},
		{"graceful-shutdown-seconds", enabledWith(AnnotationGracefulShutdownSeconds, "20"), func(c *SidecarConfig) { c.GracefulShutdownSeconds = 20 }},
		{"graceful-shutdown-seconds -1 means the default", enabledWith(AnnotationGracefulShutdownSeconds, "-1"), func(*SidecarConfig) {}},
		{"block-shutdown-duration", enabledWith(AnnotationBlockShutdownDuration, "30s"), func(c *SidecarConfig) { c.BlockShutdownDuration = new(30 * time.Second) }},
		{"unix-domain-socket-path", enabledWith(AnnotationUnixDomainSocketPath, "/tmp/dapr"), func(c *SidecarConfig) { c.UnixDomainSocketPath = "/tmp/dapr" }},
		{"volume mounts", enabledWith(AnnotationVolumeMounts, "certs:/etc/certs, cfg:/etc/cfg", AnnotationVolumeMountsRW, "scratch:/scratch"), func(c *SidecarConfig) {
			c.VolumeMounts = []corev1.VolumeMount{
				{Name: "certs", MountPath: "/etc/certs", ReadOnly: true},
				{Name: "cfg", MountPath: "/etc/cfg", ReadOnly: true},
				{Name: "scratch", MountPath: "/scratch"},
			}
		}},
		{"disable-builtin-k8s-secret-store", enabledWith(AnnotationDisableBuiltinK8sSecretStore, "true"), func(c *SidecarConfig) { c.DisableBuiltinK8sSecretStore = true }},
		{"app health", enabledWith(
			AnnotationEnableAppHealthCheck, "true",
			AnnotationAppHealthCheckPath, "/ready",
			AnnotationAppHealthProbeInterval, "10",
			AnnotationAppHealthProbeTimeout, "250",
			AnnotationAppHealthThreshold, "4",
		), func(c *SidecarConfig) {
			c.AppHealth = AppHealthCheck{Enabled: true, Path: "/ready", Interval: 10 * time.Second, Timeout: 250 * time.Millisecond, Threshold: 4}
		}},
		{"enable-native-sidecar", enabledWith(AnnotationEnableNativeSidecar, "true"), func(c *SidecarConfig) { c.EnableNativeSidecar = true }},
		{"enable-profiling", enabledWith(AnnotationEnableProfiling, "true"), func(c *SidecarConfig) { c.EnableProfiling = true }},
		{"ignored and unknown keys warn", enabledWith(AnnotationEnableDebug, "true", "dapr.io/app-prot", "grpc", "other.io/x", "y"), func(c *SidecarConfig) {
			c.Warnings = []string{
				"annotation dapr.io/app-prot is not a Dapr annotation; check its spelling",
				"annotation dapr.io/enable-debug is not supported by Outrigger and is ignored",
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAnnotations("mypod", tt.ann, testDefaults)
			if err != nil {
				t.Fatalf("ParseAnnotations: %v", err)
			}
			want := defaultConfig("mypod")
			tt.want(want)
			if !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseAnnotationsMalformed(t *testing.T) {
	tests := []struct {
		key, value string
		reason     string // a part of the message after the key and the value
		extra      map[string]string
	}{
		{AnnotationAppID, "Node_App", "is not a valid app ID", nil},
		{AnnotationAppID, strings.Repeat("a", 59), "is not a valid app ID", nil},
		{AnnotationAppPort, "abc", "is not a valid port number", nil},
		{AnnotationAppPort, "0", "is not a valid port number", nil},
		{AnnotationAppPort, "65536", "is not a valid port number", nil},
		{AnnotationAppPort, "3500", "is the same port as the sidecar's dapr.io/http-port", nil},
		{AnnotationAppPort, "3501", "is the same port as the sidecar's public port", nil},
		{AnnotationAppProtocol, "tcp", "is not an app protocol", nil},
		{AnnotationAppSSL, "sure", "is not a boolean", nil},
		{AnnotationConfig, "My Config", "is not a valid resource name", nil},
		{AnnotationAppMaxConcurrency, "-2", "must be a positive integer, or -1", nil},
		{AnnotationAppMaxConcurrency, "many", "is not an integer", nil},
		{AnnotationLogLevel, "verbose", "is not a log level", nil},
		{AnnotationLogAsJSON, "maybe", "is not a boolean", nil},
		{AnnotationEnableAPILogging, "2", "is not a boolean", nil},
		{AnnotationEnableMetrics, "enabled", "is not a boolean", nil},
		{AnnotationMetricsPort, "-1", "is not a valid port number", nil},
		{AnnotationGRPCPort, "70000", "is not a valid port number", nil},
		{AnnotationGRPCPort, "3500", "is the same port as the sidecar's dapr.io/http-port", nil},
		{AnnotationInternalGRPCPort, "x", "is not a valid port number", nil},
		{AnnotationHTTPPort, "3501", "is the same port as the sidecar's public port", nil},
		{AnnotationSidecarListenAddresses, "127.0.0.1,home", `contains "home"`, nil},
		{AnnotationSidecarCPURequest, "lots", "is not a valid resource quantity", nil},
		{AnnotationSidecarCPULimit, "-1", "must not be negative", nil},
		{AnnotationSidecarMemoryRequest, "1Gi", "is more than dapr.io/sidecar-memory-limit (512Mi)", map[string]string{AnnotationSidecarMemoryLimit: "512Mi"}},
		{AnnotationSidecarMemoryLimit, "12 GB", "is not a valid resource quantity", nil},
		{AnnotationLivenessProbeDelaySeconds, "-1", "must not be negative", nil},
		{AnnotationLivenessProbeTimeoutSeconds, "3s", "is not an integer", nil},
		{AnnotationLivenessProbePeriodSeconds, "-6", "must not be negative", nil},
		{AnnotationLivenessProbeThreshold, "-3", "must not be negative", nil},
		{AnnotationReadinessProbeDelaySeconds, "-1", "must not be negative", nil},
		{AnnotationReadinessProbeTimeoutSeconds, "1.5", "is not an integer", nil},
		{AnnotationReadinessProbePeriodSeconds, "-1", "must not be negative", nil},
		{AnnotationReadinessProbeThreshold, "-1", "must not be negative", nil},
		{AnnotationSidecarSeccompProfileType, "Localhost", "is not a supported seccomp profile type", nil},
		{AnnotationAPITokenSecret, "Bad_Secret", "is not a valid resource name", nil},
		{AnnotationAppTokenSecret, "-x", "is not a valid resource name", nil},
		{AnnotationEnv, "no-equals-here", "is not a list of NAME=value pairs", nil},
		{AnnotationEnv, "1BAD=x", "is not a list of NAME=value pairs", nil},
		{AnnotationEnvFromSecret, "TOKEN", "is not a list of NAME=secret or NAME=secret:key", nil},
		{AnnotationEnvFromSecret, "TOKEN=Bad_Name", `names "Bad_Name", which is not a valid Secret name`, nil},
		{AnnotationEnvFromSecret, "TOKEN=s:bad key", `names "bad key", which is not a valid Secret key`, nil},
		{AnnotationMaxBodySize, "big", "is not a valid size", nil},
		{AnnotationMaxBodySize, "0", "must be positive", nil},
		{AnnotationHTTPMaxRequestSize, "4MB", "is not an integer", nil},
		{AnnotationReadBufferSize, "-4Ki", "must be positive", nil},
		{AnnotationHTTPReadBufferSize, "0", "must be positive", nil},
		{AnnotationGracefulShutdownSeconds, "20s", "is not an integer", nil},
		{AnnotationGracefulShutdownSeconds, "-5", "must not be negative", nil},
		{AnnotationBlockShutdownDuration, "30", "is not a duration", nil},
		{AnnotationBlockShutdownDuration, "-1s", "must not be negative", nil},
		{AnnotationUnixDomainSocketPath, "tmp/dapr", "is not an absolute path", nil},
		{AnnotationVolumeMounts, "certs", "is not a list of volume:/absolute/path pairs", nil},
		{AnnotationVolumeMounts, "certs:relative", "is not a list of volume:/absolute/path pairs", nil},
		{AnnotationVolumeMountsRW, ":/x", "is not a list of volume:/absolute/path pairs", nil},
		{AnnotationVolumeMountsRW, "a:/var/run/dapr-sockets", "mounts at a path the sidecar already uses", map[string]string{AnnotationUnixDomainSocketPath: "/sock"}},
		{AnnotationDisableBuiltinK8sSecretStore, "please", "is not a boolean", nil},
		{AnnotationEnableAppHealthCheck, "sometimes", "is not a boolean", nil},
		{AnnotationAppHealthProbeInterval, "0", "must be a positive integer", nil},
		{AnnotationAppHealthProbeTimeout, "500ms", "is not an integer", nil},
		{AnnotationAppHealthThreshold, "-1", "must be a positive integer", nil},
		{AnnotationEnableNativeSidecar, "native", "is not a boolean", nil},
		{AnnotationEnableProfiling, "pprof", "is not a boolean", nil},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			ann := enabledWith(tt.key, tt.value)
			for k, v := range tt.extra {
				ann[k] = v
			}
			_, err := ParseAnnotations("mypod", ann, testDefaults)
			if err == nil {
				t.Fatal("ParseAnnotations accepted the value")
			}
			wantPrefix := fmt.Sprintf("annotation %s: %q ", tt.key, tt.value)
			if !strings.Contains(err.Error(), wantPrefix) || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q ... %q", err, wantPrefix, tt.reason)
			}
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Key != tt.key {
				t.Errorf("error %v is not an *AnnotationError for %s", err, tt.key)
			}
		})
	}
}

func TestParseAnnotationsMessageFormat(t *testing.T) {
	_, err := ParseAnnotations("mypod", enabledWith(AnnotationAppPort, "abc"), testDefaults)
	if got, want := fmt.Sprint(err), `annotation dapr.io/app-port: "abc" is not a valid port number (1-65535)`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseAnnotationsCollectsEveryError(t *testing.T) {
	_, err := ParseAnnotations("mypod", enabledWith(
		AnnotationAppPort, "abc",
		AnnotationSidecarCPULimit, "lots",
		AnnotationLivenessProbeDelaySeconds, "-1",
		AnnotationLogLevel, "loud",
	), testDefaults)
	if err == nil {
		t.Fatal("ParseAnnotations accepted malformed values")
	}
	for _, key := range []string{AnnotationAppPort, AnnotationSidecarCPULimit, AnnotationLivenessProbeDelaySeconds, AnnotationLogLevel} {
		if !strings.Contains(err.Error(), "annotation "+key+":") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestParseAnnotationsAppIDFromPodName(t *testing.T) {
	tests := []struct {
		name, podName, reason string
	}{
		{"no pod name", "", "is not set and the pod has no name to default to"},
		{"pod name not a label", "my.pod", `is not set, and the pod name "my.pod" is not a valid app ID`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAnnotations(tt.podName, enabledWith(), testDefaults)
			if err == nil || !strings.Contains(err.Error(), "annotation dapr.io/app-id: \"\" "+tt.reason) {
				t.Errorf("got %v, want a dapr.io/app-id error saying %q", err, tt.reason)
			}
		})
	}
}

func TestParseAnnotationsNeedsAnImage(t *testing.T) {
	_, err := ParseAnnotations("mypod", enabledWith(), Defaults{})
	if err == nil || !strings.Contains(err.Error(), "annotation dapr.io/sidecar-image: \"\" is not set") {
		t.Errorf("got %v, want a dapr.io/sidecar-image error", err)
	}
}

func TestBooleanForms(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		{"true", true}, {"TRUE", true}, {"True", true}, {"1", true}, {"yes", true}, {"Y", true},
		{"y", true}, {"on", true}, {"ON", true}, {"t", true}, {" true ", true},
		{"false", false}, {"FALSE", false}, {"0", false}, {"no", false}, {"N", false}, {"off", false}, {"f", false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			cfg, err := ParseAnnotations("mypod", enabledWith(AnnotationLogAsJSON, tt.value, AnnotationEnableMetrics, tt.value), testDefaults)
			if err != nil {
				t.Fatalf("ParseAnnotations: %v", err)
			}
			if cfg.LogAsJSON != tt.want || cfg.EnableMetrics != tt.want {
				t.Errorf("log-as-json %v, enable-metrics %v; want both %v", cfg.LogAsJSON, cfg.EnableMetrics, tt.want)
			}
			if got := Enabled(map[string]string{AnnotationEnabled: tt.value}); got != tt.want {
				t.Errorf("Enabled = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEnabled(t *testing.T) {
	tests := []struct {
		name string
		ann  map[string]string
		want bool
	}{
		{"nil", nil, false},
		{"absent", map[string]string{"app": "x"}, false},
		{"empty", map[string]string{AnnotationEnabled: ""}, false},
		{"unrecognised", map[string]string{AnnotationEnabled: "enabled"}, false},
		{"true", map[string]string{AnnotationEnabled: "true"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Enabled(tt.ann); got != tt.want {
				t.Errorf("Enabled = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAnnotationTable(t *testing.T) {
	table := AnnotationTable()
	seen := map[string]bool{}
	for _, a := range table {
		if !strings.HasPrefix(a.Key, "dapr.io/") || a.Default == "" || a.Description == "" || a.Status == "" {
			t.Errorf("incomplete entry %+v", a)
		}
		if a.Status == StatusDeprecated && a.ReplacedBy == "" {
			t.Errorf("%s is deprecated without a replacement", a.Key)
		}
		if seen[a.Key] {
			t.Errorf("%s is listed twice", a.Key)
		}
		seen[a.Key] = true
	}
	table[0].Key = "changed"
	if AnnotationTable()[0].Key == "changed" {
		t.Error("AnnotationTable hands out the table itself")
	}
	// Every annotation the parser reads is documented.
	for _, key := range []string{
		AnnotationEnabled, AnnotationAppID, AnnotationAppPort, AnnotationAppProtocol, AnnotationAppChannelAddress,
		AnnotationConfig, AnnotationLogLevel, AnnotationLogAsJSON, AnnotationEnableAPILogging, AnnotationEnableMetrics,
		AnnotationMetricsPort, AnnotationGRPCPort, AnnotationInternalGRPCPort, AnnotationHTTPPort,
		AnnotationSidecarListenAddresses, AnnotationSidecarCPURequest, AnnotationSidecarCPULimit,
		AnnotationSidecarMemoryRequest, AnnotationSidecarMemoryLimit, AnnotationLivenessProbeDelaySeconds,
		AnnotationLivenessProbeTimeoutSeconds, AnnotationLivenessProbePeriodSeconds, AnnotationLivenessProbeThreshold,
		AnnotationReadinessProbeDelaySeconds, AnnotationReadinessProbeTimeoutSeconds,
		AnnotationReadinessProbePeriodSeconds, AnnotationReadinessProbeThreshold, AnnotationSidecarImage,
		AnnotationSidecarSeccompProfileType, AnnotationAPITokenSecret, AnnotationAppTokenSecret, AnnotationEnv,
		AnnotationEnvFromSecret, AnnotationMaxBodySize, AnnotationReadBufferSize, AnnotationGracefulShutdownSeconds,
		AnnotationBlockShutdownDuration, AnnotationUnixDomainSocketPath, AnnotationVolumeMounts,
		AnnotationVolumeMountsRW, AnnotationDisableBuiltinK8sSecretStore, AnnotationEnableAppHealthCheck,
		AnnotationAppHealthCheckPath, AnnotationAppHealthProbeInterval, AnnotationAppHealthProbeTimeout,
		AnnotationAppHealthThreshold, AnnotationEnableNativeSidecar, AnnotationEnableProfiling,
		AnnotationAppSSL, AnnotationHTTPMaxRequestSize, AnnotationHTTPReadBufferSize,
		AnnotationAppMaxConcurrency, AnnotationPlacementAddress,
	} {
		if info, ok := lookupAnnotation(key); !ok || (info.Status != StatusSupported && info.Status != StatusDeprecated && info.Status != StatusExtension) {
			t.Errorf("%s is missing from the table or not marked as honoured", key)
		}
	}
}

func TestSplitEnvList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"A=1", []string{"A=1"}},
		{"A=1,B=2", []string{"A=1", "B=2"}},
		{"A=1, B=2", []string{"A=1", " B=2"}},
		{"A=x,y,B=2", []string{"A=x,y", "B=2"}},
		{"A=x,=y", []string{"A=x,=y"}},
		{"A=a=b,c", []string{"A=a=b,c"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := splitEnvList(tt.in); !equality.Semantic.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
