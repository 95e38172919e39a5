package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/internal/localcp"
	"github.com/outrigger-dev/outrigger/internal/scheme"
	"github.com/outrigger-dev/outrigger/internal/testproc"
)

// `outrigger dev --empty` is a local control plane with nothing installed, where an
// install path (dist/install.yaml, the bundle) can be tried as on a new cluster.
func TestDevEmptyInstallsNothing(t *testing.T) {
	if _, err := localcp.AssetsDir(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("envtest binaries: %v", err)
		}
		t.Skipf("envtest binaries: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	cmd := newDevCommand()
	out := &testproc.SyncBuffer{}
	cmd.SetOut(out)
	cmd.SetErr(out)
	done := make(chan error, 1)
	go func() { done <- runEmptyControlPlane(runCtx, cmd, kubeconfig) }()
	for {
		if b, err := os.ReadFile(kubeconfig); err == nil && len(b) > 0 && strings.Contains(out.String(), "up at") {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the control plane stopped: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("no kubeconfig: %v\n%s", ctx.Err(), out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	var crds apiextensionsv1.CustomResourceDefinitionList
	if err := c.List(ctx, &crds); err != nil {
		t.Fatal(err)
	}
	if len(crds.Items) != 0 {
		t.Errorf("the empty control plane has %d CRDs installed", len(crds.Items))
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the control plane did not stop")
	}
}
