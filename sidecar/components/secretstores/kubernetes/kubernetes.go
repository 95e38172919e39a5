// Package kubernetes is the secretstores.kubernetes component: the Secrets of a
// namespace, read from the API server. In Kubernetes mode the sidecar loads one named
// "kubernetes" without a manifest, and it resolves the secretKeyRefs of components that
// name no secret store, as in Dapr.
package kubernetes

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
)

// TypeName is the component type this package implements.
const TypeName = "secretstores.kubernetes"

// BuiltinName is the name of the store a sidecar in Kubernetes mode loads by itself
// (unless --disable-builtin-k8s-secret-store), and the default store of secretKeyRef.
const BuiltinName = "kubernetes"

// Register adds the store to a secret store registry. Each instance finds its API server
// at Init: the kubeconfigPath metadata, else as the operator does (KUBECONFIG, the pod's
// service account, ~/.kube/config). Registering it where no sidecar runs, as the
// operator does to know the implemented types, contacts nothing.
func Register(r *components.Registry[secretstores.Store]) {
	RegisterWithConfig(r, nil)
}

// RegisterWithConfig is Register with the API server the sidecar itself uses, for the
// instances whose metadata has no kubeconfigPath.
func RegisterWithConfig(r *components.Registry[secretstores.Store], cfg *rest.Config) {
	r.Register(TypeName, func() secretstores.Store { return New(cfg) })
}

// BuiltinComponent is the Component the sidecar loads in Kubernetes mode when no
// manifest defines one named "kubernetes"; Dapr adds the same, without metadata.
func BuiltinComponent(namespace string) *daprv1alpha1.Component {
	return &daprv1alpha1.Component{
		TypeMeta:   metav1.TypeMeta{APIVersion: daprv1alpha1.GroupVersion.String(), Kind: "Component"},
		ObjectMeta: metav1.ObjectMeta{Name: BuiltinName, Namespace: namespace},
		Spec:       daprv1alpha1.ComponentSpec{Type: TypeName, Version: "v1"},
	}
}

// Options are the store's metadata, Dapr's names.
type Options struct {
	// DefaultNamespace is read when a request names no namespace; it defaults to the
	// sidecar's namespace.
	DefaultNamespace string `metadata:"defaultNamespace"`
	// KubeconfigPath reads another cluster, or this one from outside it.
	KubeconfigPath string `metadata:"kubeconfigPath"`
}

// Store is a Kubernetes secret store.
type Store struct {
	// Config is the API server when the metadata has no kubeconfigPath; nil finds it
	// as the operator does.
	Config *rest.Config

	opts      Options
	namespace string
	secrets   corev1client.SecretsGetter
}

var _ secretstores.Store = (*Store)(nil)

// New returns an uninitialised store for the API server of cfg (nil: see Store.Config).
func New(cfg *rest.Config) *Store { return &Store{Config: cfg} }

func (s *Store) Init(_ context.Context, md components.Metadata) error {
	if err := metadata.Decode(md.Properties, &s.opts); err != nil {
		return err
	}
	s.namespace = s.opts.DefaultNamespace
	if s.namespace == "" {
		s.namespace = md.Namespace
	}
	cfg, err := s.restConfig()
	if err != nil {
		return err
	}
	c, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create a Kubernetes client: %w", err)
	}
	s.secrets = c
	return nil
}

func (s *Store) restConfig() (*rest.Config, error) {
	switch {
	case s.opts.KubeconfigPath != "":
		cfg, err := clientcmd.BuildConfigFromFlags("", s.opts.KubeconfigPath)
		if err != nil {
			return nil, fmt.Errorf("metadata \"kubeconfigPath\": %w", err)
		}
		return cfg, nil
	case s.Config != nil:
		return rest.CopyConfig(s.Config), nil
	}
	cfg, err := ctrlconfig.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("find the Kubernetes API server (set kubeconfigPath, KUBECONFIG, or run in a pod): %w", err)
	}
	return cfg, nil
}

// namespaceFor is the namespace of one request: its metadata "namespace", as in Dapr,
// else the store's.
func (s *Store) namespaceFor(md map[string]string) (string, error) {
	if ns := md["namespace"]; ns != "" {
		return ns, nil
	}
	if s.namespace != "" {
		return s.namespace, nil
	}
	return "", errors.New("no namespace to read secrets from: pass metadata.namespace, or set defaultNamespace or the sidecar's NAMESPACE")
}

// GetSecret returns every key of the Secret name, its values as text.
func (s *Store) GetSecret(ctx context.Context, name string, md map[string]string) (map[string]string, error) {
	ns, err := s.namespaceFor(md)
	if err != nil {
		return nil, err
	}
	secret, err := s.secrets.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, secretstores.NotFound(name)
	}
	if err != nil {
		return nil, fmt.Errorf("get Secret %q in namespace %q: %w", name, ns, err)
	}
	return values(secret), nil
}

// BulkGetSecret returns every Secret of the namespace, by name.
func (s *Store) BulkGetSecret(ctx context.Context, md map[string]string) (map[string]map[string]string, error) {
	ns, err := s.namespaceFor(md)
	if err != nil {
		return nil, err
	}
	list, err := s.secrets.Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Secrets in namespace %q: %w", ns, err)
	}
	out := make(map[string]map[string]string, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].Name] = values(&list.Items[i])
	}
	return out, nil
}

// values gives a Secret's data as text, as Dapr does. stringData never comes back from
// the API server: it is merged into data on write.
func values(s *corev1.Secret) map[string]string {
	out := make(map[string]string, len(s.Data))
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out
}

// Features declares several keys per secret: a Secret holds any number.
func (s *Store) Features() []secretstores.Feature {
	return []secretstores.Feature{secretstores.FeatureMultipleKeyValuesPerSecret}
}

func (s *Store) Close() error { return nil }
