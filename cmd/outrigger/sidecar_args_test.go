package main

import (
	"encoding/json"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/sidecar/runtime"
	"github.com/outrigger-dev/outrigger/webhooks/injector"
)

// The injector writes the daprd command line and the sidecar parses it: every flag the
// injector may emit must be one the sidecar takes, with the value it meant.
func TestInjectedArgsParse(t *testing.T) {
	annotations := map[string]string{
		"dapr.io/enabled": "true", "dapr.io/app-id": "nodeapp", "dapr.io/app-port": "3000", "dapr.io/app-protocol": "grpc",
		"dapr.io/app-channel-address": "10.0.0.7", "dapr.io/config": "tracing", "dapr.io/log-level": "debug",
		"dapr.io/log-as-json": "true", "dapr.io/enable-api-logging": "true", "dapr.io/enable-metrics": "false",
		"dapr.io/metrics-port": "9191", "dapr.io/max-body-size": "16Mi", "dapr.io/read-buffer-size": "8Ki",
		"dapr.io/graceful-shutdown-seconds": "12", "dapr.io/block-shutdown-duration": "20s",
		"dapr.io/enable-app-health-check": "true", "dapr.io/app-health-check-path": "/ready",
		"dapr.io/app-health-probe-interval": "7", "dapr.io/app-health-probe-timeout": "900", "dapr.io/app-health-threshold": "4",
		"dapr.io/unix-domain-socket-path": "/tmp/dapr", "dapr.io/disable-builtin-k8s-secret-store": "true",
		"dapr.io/enable-profiling": "true", "dapr.io/app-max-concurrency": "8",
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nodeapp", Namespace: "default", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "node", Image: "node"}}},
	}
	cfg, err := injector.ParseAnnotations(pod.Name, annotations, injector.Defaults{Image: "outrigger"})
	if err != nil {
		t.Fatal(err)
	}
	ops, err := injector.BuildPatch(pod, cfg, injector.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rawOps, _ := json.Marshal(ops)
	rawPod, _ := json.Marshal(pod)
	patch, err := jsonpatch.DecodePatch(rawOps)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(rawPod)
	if err != nil {
		t.Fatal(err)
	}
	var out corev1.Pod
	if err := json.Unmarshal(patched, &out); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, c := range out.Spec.Containers {
		if c.Name == "daprd" {
			args = c.Args
		}
	}
	if len(args) == 0 || args[0] != "sidecar" {
		t.Fatalf("daprd args = %v", args)
	}

	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	flags := runtime.Flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("the sidecar rejects the injected args %v: %v", args, err)
	}
	got, err := flags.Finish(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"app-id", got.AppID, "nodeapp"},
		{"app-port", got.AppPort, 3000},
		{"app-protocol", got.AppProtocol, "grpc"},
		{"app-channel-address", got.AppChannelAddress, "10.0.0.7"},
		{"mode", got.Mode, runtime.ModeKubernetes},
		{"config", got.ConfigPath, "tracing"},
		{"log-level", got.LogLevel, "debug"},
		{"log-as-json", got.LogAsJSON, true},
		{"enable-api-logging", got.EnableAPILogging, true},
		{"enable-metrics", got.EnableMetrics, false},
		{"metrics-port", got.MetricsPort, 9191},
		{"max-body-size", got.MaxBodySize, int64(16 << 20)},
		{"read-buffer-size", got.ReadBufferSize, int64(8 << 10)},
		{"graceful shutdown", got.GracefulShutdown.Seconds(), 12.0},
		{"block-shutdown-duration", got.BlockShutdownDuration.Seconds(), 20.0},
		{"app health", got.EnableAppHealthCheck, true},
		{"app-health-check-path", got.AppHealthCheckPath, "/ready"},
		{"app-health-probe-interval", got.AppHealthProbeInterval.Seconds(), 7.0},
		{"app-health-probe-timeout", got.AppHealthProbeTimeout.Milliseconds(), int64(900)},
		{"app-health-threshold", got.AppHealthThreshold, 4},
		{"unix-domain-socket", got.UnixDomainSocket != "", true},
		{"disable-builtin-k8s-secret-store", got.DisableBuiltinK8sSecretStore, true},
		{"enable-profiling", got.EnableProfiling, true},
		{"app-max-concurrency", got.AppMaxConcurrency, 8},
		{"http port", got.HTTPPort, 3500},
		{"grpc port", got.GRPCPort, 50001},
		{"public port", got.PublicPort, 3501},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
