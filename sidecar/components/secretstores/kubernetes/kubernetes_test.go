package kubernetes

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// fixture is a namespace with two Secrets, and a neighbour namespace with one.
type fixture struct {
	env       *testenv.Env
	ns, other string
}

func setUp(t *testing.T) fixture {
	t.Helper()
	e := testenv.Shared(t)
	f := fixture{env: e, ns: e.Namespace(t, "secrets"), other: e.Namespace(t, "neighbour")}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "db"},
			Data: map[string][]byte{"user": []byte("admin"), "password": []byte("s3cret")}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "token"},
			StringData: map[string]string{"token": "abc"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: f.other, Name: "db"},
			Data: map[string][]byte{"password": []byte("neighbour's")}},
	} {
		if err := e.Client.Create(ctx(t), s); err != nil {
			t.Fatalf("create Secret %s/%s: %v", s.Namespace, s.Name, err)
		}
	}
	return f
}

func (f fixture) store(t *testing.T, props map[string]string) *Store {
	t.Helper()
	s := New(f.env.Config)
	if err := s.Init(ctx(t), components.Metadata{Name: BuiltinName, Type: TypeName, Namespace: f.ns, Properties: props}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGetSecret(t *testing.T) {
	f := setUp(t)
	tests := []struct {
		name   string
		props  map[string]string // component metadata
		secret string
		md     map[string]string // request metadata
		want   map[string]string
	}{
		{name: "every key, as text", secret: "db", want: map[string]string{"user": "admin", "password": "s3cret"}},
		{name: "stringData is read back as data", secret: "token", want: map[string]string{"token": "abc"}},
		{name: "the request's namespace wins", secret: "db", md: map[string]string{"namespace": f.other},
			want: map[string]string{"password": "neighbour's"}},
		{name: "defaultNamespace replaces the sidecar's", props: map[string]string{"defaultNamespace": f.other}, secret: "db",
			want: map[string]string{"password": "neighbour's"}},
		{name: "an empty request namespace is ignored", secret: "db", md: map[string]string{"namespace": ""},
			want: map[string]string{"user": "admin", "password": "s3cret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.store(t, tt.props).GetSecret(ctx(t), tt.secret, tt.md)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGetSecretMissing(t *testing.T) {
	f := setUp(t)
	s := f.store(t, nil)
	for _, md := range []map[string]string{nil, {"namespace": f.other + "-absent"}} {
		_, err := s.GetSecret(ctx(t), "nope", md)
		if !errors.Is(err, secretstores.ErrSecretNotFound) {
			t.Errorf("namespace %q: got %v, want a not-found error", md["namespace"], err)
		}
	}
}

func TestBulkGetSecret(t *testing.T) {
	f := setUp(t)
	s := f.store(t, nil)
	got, err := s.BulkGetSecret(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"db":    {"user": "admin", "password": "s3cret"},
		"token": {"token": "abc"},
	}
	if !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("got %v, want %v", got, want)
	}
	got, err = s.BulkGetSecret(ctx(t), map[string]string{"namespace": f.other})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]map[string]string{"db": {"password": "neighbour's"}}; !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("namespace %s: got %v, want %v", f.other, got, want)
	}
}

func TestKubeconfigPath(t *testing.T) {
	f := setUp(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, f.env.Env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	// No config at registration: kubeconfigPath alone must find the API server.
	s := New(nil)
	if err := s.Init(ctx(t), components.Metadata{Namespace: f.ns, Properties: map[string]string{"kubeconfigPath": kubeconfig}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSecret(ctx(t), "token", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got["token"] != "abc" {
		t.Errorf("got %v", got)
	}

	err = New(f.env.Config).Init(ctx(t), components.Metadata{Namespace: f.ns,
		Properties: map[string]string{"kubeconfigPath": filepath.Join(t.TempDir(), "missing")}})
	if err == nil || !strings.Contains(err.Error(), "kubeconfigPath") {
		t.Errorf("a missing kubeconfig file gave %v, want an error naming kubeconfigPath", err)
	}
}

func TestNoNamespace(t *testing.T) {
	e := testenv.Shared(t)
	s := New(e.Config)
	if err := s.Init(ctx(t), components.Metadata{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSecret(ctx(t), "db", nil); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("got %v, want an error asking for a namespace", err)
	}
	if _, err := s.BulkGetSecret(ctx(t), nil); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("bulk: got %v, want an error asking for a namespace", err)
	}
}

func TestRegistryAndFeatures(t *testing.T) {
	r := &components.Registry[secretstores.Store]{}
	Register(r)
	s, err := r.Create(TypeName, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if !secretstores.Has(s, secretstores.FeatureMultipleKeyValuesPerSecret) {
		t.Errorf("features %v lack %s", s.Features(), secretstores.FeatureMultipleKeyValuesPerSecret)
	}
	if !components.IsImplemented(TypeName) {
		t.Errorf("%s is not listed as implemented", TypeName)
	}
	c := BuiltinComponent("shop")
	if c.Name != BuiltinName || c.Namespace != "shop" || c.Spec.Type != TypeName || c.Spec.Version != "v1" {
		t.Errorf("built-in component %+v", c)
	}
}
