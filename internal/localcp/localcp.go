// Package localcp starts a local Kubernetes control plane (etcd and kube-apiserver built
// by hack/setup-envtest.sh) with Outrigger's CRDs and webhook configurations installed.
// `outrigger dev` and the envtest suites share it.
package localcp

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/outrigger-dev/outrigger/config"
)

// AssetsEnv names the directory of the envtest binaries, as envtest itself does.
const AssetsEnv = "KUBEBUILDER_ASSETS"

// AssetsDir finds the envtest binaries: $KUBEBUILDER_ASSETS, else the cache that
// hack/setup-envtest.sh fills.
func AssetsDir() (string, error) {
	if dir := os.Getenv(AssetsEnv); dir != "" {
		return dir, checkAssets(dir)
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "outrigger", "envtest", "*"))
	for i := len(matches) - 1; i >= 0; i-- {
		if checkAssets(matches[i]) == nil {
			return matches[i], nil
		}
	}
	return "", fmt.Errorf("no envtest binaries found: run hack/setup-envtest.sh (or `make envtest`) and set %s to the directory it prints", AssetsEnv)
}

func checkAssets(dir string) error {
	var missing []string
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := exec.LookPath(filepath.Join(dir, bin)); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s lacks %s: run hack/setup-envtest.sh", dir, strings.Join(missing, " and "))
	}
	return nil
}

// New returns an environment, not yet started, that installs the embedded CRDs and
// webhook configurations; the webhooks point at a local server whose address and
// certificates are in WebhookInstallOptions once it has started.
func New(scheme *runtime.Scheme) (*envtest.Environment, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	crds, err := config.CRDs()
	if err != nil {
		return nil, fmt.Errorf("load embedded CRDs: %w", err)
	}
	mut, val, err := config.Webhooks()
	if err != nil {
		return nil, fmt.Errorf("load embedded webhooks: %w", err)
	}
	if len(crds) == 0 {
		return nil, errors.New("no CRDs embedded: run make manifests")
	}
	return &envtest.Environment{
		Scheme:                scheme,
		BinaryAssetsDirectory: assets,
		CRDs:                  crds,
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			MutatingWebhooks:   mut,
			ValidatingWebhooks: val,
		},
	}, nil
}
