package runtime

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	kubesecrets "github.com/outrigger-dev/outrigger/sidecar/components/secretstores/kubernetes"
	"github.com/outrigger-dev/outrigger/sidecar/resources"
)

// followSecrets watches the Secrets of the namespace in Kubernetes mode and gives each
// Component that reads a changed Secret through the built-in kubernetes store a new
// instance: a component that failed because its Secret was missing loads once the
// Secret appears, and one whose Secret changed picks the new values up. The swap is the
// one of any Component update: the old instance serves until the new one is ready, and
// keeps serving if it fails.
func (r *Runtime) followSecrets(ctx context.Context) (stop func()) {
	if r.cfg.Mode != ModeKubernetes || r.DisableHotReload || r.restConfig == nil || r.cfg.DisableBuiltinK8sSecretStore {
		return func() {}
	}
	cs, err := kubernetes.NewForConfig(r.restConfig)
	if err != nil {
		r.log.Error(err, "Secrets are not followed; a component whose Secret changes needs a restart")
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(r.cfg.Namespace))
	inf := factory.Core().V1().Secrets().Informer()
	changed := make(chan string, 64)
	send := func(name string) {
		select {
		case changed <- name:
		case <-ctx.Done():
		}
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			// The initial list is what the components were loaded with.
			if s, ok := obj.(*corev1.Secret); ok && inf.HasSynced() {
				send(s.Name)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Secret)
			n, ok2 := newObj.(*corev1.Secret)
			if ok1 && ok2 && (!maps.EqualFunc(o.Data, n.Data, slices.Equal) || !maps.Equal(o.StringData, n.StringData)) {
				send(n.Name)
			}
		},
	})
	if err != nil {
		cancel()
		r.log.Error(err, "Secrets are not followed; a component whose Secret changes needs a restart")
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		factory.Start(ctx.Done())
		if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			return
		}
		// A Secret created between the first load and this list: retry what failed.
		r.retryFailedComponents(ctx)
		for {
			select {
			case name := <-changed:
				r.secretChanged(ctx, name)
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		cancel()
		factory.Shutdown()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
}

// secretChanged re-applies every Component that reads the Secret.
func (r *Runtime) secretChanged(ctx context.Context, secret string) {
	for _, c := range r.componentsReading(secret) {
		r.log.Info("A Secret the component reads changed; starting a new instance", "Component", c.Name, "Secret", secret)
		r.applyResource(ctx, resources.Event{Kind: resources.KindComponent, Type: resources.Updated, Object: c})
	}
}

// retryFailedComponents re-applies the components whose last initialisation failed.
func (r *Runtime) retryFailedComponents(ctx context.Context) {
	for _, f := range r.components.Failed() {
		r.live.mu.Lock()
		c := r.live.components[f.Name]
		r.live.mu.Unlock()
		if c != nil && readsKubernetesSecrets(c) {
			r.applyResource(ctx, resources.Event{Kind: resources.KindComponent, Type: resources.Updated, Object: c})
		}
	}
}

func (r *Runtime) componentsReading(secret string) []*daprv1alpha1.Component {
	r.live.mu.Lock()
	defer r.live.mu.Unlock()
	var out []*daprv1alpha1.Component
	for _, c := range r.live.components {
		if !readsKubernetesSecrets(c) {
			continue
		}
		for _, m := range c.Spec.Metadata {
			if m.SecretKeyRef.Name == secret {
				out = append(out, c)
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b *daprv1alpha1.Component) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// readsKubernetesSecrets reports whether the component's secretKeyRefs go through the
// built-in kubernetes store: it names no store, or names that one.
func readsKubernetesSecrets(c *daprv1alpha1.Component) bool {
	return c.Auth.SecretStore == "" || c.Auth.SecretStore == kubesecrets.BuiltinName
}
