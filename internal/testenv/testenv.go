// Package testenv starts the local control plane for envtest suites, with the
// operator's controllers and webhooks served from the test process.
package testenv

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/outrigger-dev/outrigger/internal/localcp"
	"github.com/outrigger-dev/outrigger/internal/scheme"
)

// Env is a running control plane and, when asked for, a manager serving the operator.
type Env struct {
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
	Env    *envtest.Environment
}

// Start brings up the control plane; with setup functions it also runs a manager with
// them, serving the webhooks the API server calls. Everything stops when the test ends.
// Without envtest binaries the test is skipped, or fails when $CI is set.
func Start(t testing.TB, setup ...func(ctrl.Manager) error) *Env {
	t.Helper()
	// Logs go to stderr only when asked for: manager goroutines may still log after a
	// test has finished, where t.Log would panic.
	out := io.Discard
	if os.Getenv("OUTRIGGER_TEST_LOG") != "" {
		out = os.Stderr
	}
	logf.SetLogger(zap.New(zap.WriteTo(out), zap.UseDevMode(true)))
	scheme := scheme.New()
	env, err := localcp.New(scheme)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("envtest: %v", err)
		}
		t.Skipf("envtest unavailable: %v", err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stop control plane: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Config: cfg, Client: c, Scheme: scheme, Env: env}
	if len(setup) > 0 {
		e.runManager(t, setup)
	}
	return e
}

func (e *Env) runManager(t testing.TB, setup []func(ctrl.Manager) error) {
	t.Helper()
	wh := e.Env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(e.Config, ctrl.Options{
		Scheme:                 e.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir,
		}),
	})
	if err != nil {
		t.Fatalf("create manager: %v", err)
	}
	for _, s := range setup {
		if err := s(mgr); err != nil {
			t.Fatalf("set up manager: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	addr := net.JoinHostPort(wh.LocalServingHost, strconv.Itoa(wh.LocalServingPort))
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // readiness probe only
		if err == nil {
			_ = conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook server on %s did not come up: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("manager cache did not sync")
	}
}

// Namespace creates a fresh namespace for one test.
func (e *Env) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}
