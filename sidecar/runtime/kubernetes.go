package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
	kubesecrets "github.com/outrigger-dev/outrigger/sidecar/components/secretstores/kubernetes"
	"github.com/outrigger-dev/outrigger/sidecar/report"
	"github.com/outrigger-dev/outrigger/sidecar/resources"
)

// initialListTimeout bounds the wait for the API server's first list of the resources;
// the source retries transient errors until then.
const initialListTimeout = 60 * time.Second

// openSource picks where the resources come from: the API server in Kubernetes mode
// (credentials in-cluster, or KUBECONFIG), the resources paths otherwise.
func (r *Runtime) openSource() error {
	if r.cfg.Mode != ModeKubernetes {
		r.source = &resources.Dir{Paths: r.cfg.ResourcesPaths, AppID: r.cfg.AppID, Log: r.log.WithName("resources"), Debounce: r.ReloadDebounce}
		return nil
	}
	cfg := r.RestConfig
	if cfg == nil {
		var err error
		if cfg, err = ctrlconfig.GetConfig(); err != nil {
			return fmt.Errorf("--mode kubernetes: find the Kubernetes API server (in-cluster credentials or KUBECONFIG): %w", err)
		}
	}
	r.restConfig = cfg
	k, err := resources.NewKubernetes(cfg, r.cfg.Namespace, r.cfg.AppID, r.log.WithName("resources"))
	if err != nil {
		return fmt.Errorf("--mode kubernetes: %w", err)
	}
	r.source = k
	if r.reporter, err = report.New(cfg, r.cfg.Namespace, r.cfg.PodName, r.cfg.AppID, r.log.WithName("report")); err != nil {
		return fmt.Errorf("--mode kubernetes: component status reports: %w", err)
	}
	return nil
}

// closeSource stops the informers and flushes the reports.
func (r *Runtime) closeSource() {
	if k, ok := r.source.(*resources.Kubernetes); ok {
		_ = k.Close()
	}
	if r.reporter != nil {
		_ = r.reporter.Close()
	}
}

// loadResources reads the initial set, bounded in Kubernetes mode, where the source
// waits for the API server.
func (r *Runtime) loadResources(ctx context.Context) (*resources.Set, error) {
	if r.cfg.Mode == ModeKubernetes {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, initialListTimeout)
		defer cancel()
	}
	return r.source.Load(ctx)
}

// useBuiltinSecretStore gives a Kubernetes-mode sidecar the built-in "kubernetes"
// secret store, which resolves secretKeyRef when a component names no auth.secretStore,
// as in Dapr; a component of the user's named "kubernetes" takes its place. It must run
// before the store's registries are filled; registerBuiltinSecretStore runs after.
func (r *Runtime) useBuiltinSecretStore(set *resources.Set) {
	if r.cfg.Mode != ModeKubernetes || r.cfg.DisableBuiltinK8sSecretStore {
		return
	}
	// A registry of this sidecar's own: the built-in store carries its credentials.
	reg := &components.Registry[secretstores.Store]{}
	r.components.Registries.SecretStores = reg
	if _, ok := set.Component(kubesecrets.BuiltinName); !ok {
		set.Components = append([]resources.Resource[*daprv1alpha1.Component]{{Object: kubesecrets.BuiltinComponent(r.cfg.Namespace)}}, set.Components...)
	}
	r.components.DefaultSecretStore = kubesecrets.BuiltinName
}

// reportLoad tells the operator which components loaded and which failed, so that a
// Component's status shows the apps that use it (Kubernetes mode only: a nil reporter
// does nothing).
func (r *Runtime) reportLoad(set *resources.Set, loadErr error) {
	if r.reporter == nil {
		return
	}
	failed := map[string]string{}
	for _, f := range r.components.Failed() {
		failed[f.Name] = f.Error
	}
	for _, res := range set.Components {
		if res.Object.UID == "" {
			continue // the built-in secret store is no resource of the API server
		}
		if msg, ok := failed[res.Object.Name]; ok {
			r.reporter.ComponentFailed(res.Object, errors.New(msg))
		} else if loadErr == nil {
			r.reporter.ComponentLoaded(res.Object)
		}
	}
}

// reportApply reports the outcome of a component change while the sidecar runs.
func (r *Runtime) reportApply(ctx context.Context, ev resources.Event, err error) {
	c, ok := ev.Object.(*daprv1alpha1.Component)
	if r.reporter == nil || !ok || c.UID == "" {
		return
	}
	switch {
	case ev.Type == resources.Deleted:
		r.reporter.ComponentRemoved(c)
	case err == nil:
		r.reporter.ComponentLoaded(c)
	case ctx.Err() == nil:
		r.reporter.ComponentFailed(c, err)
	}
}

// registerBuiltinSecretStore gives the built-in store this sidecar's credentials, once
// the registries hold every other implementation.
func (r *Runtime) registerBuiltinSecretStore() {
	if r.components.DefaultSecretStore == kubesecrets.BuiltinName {
		kubesecrets.RegisterWithConfig(r.components.Registries.SecretStores, r.restConfig)
	}
}
