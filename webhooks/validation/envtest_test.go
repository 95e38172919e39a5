package validation_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/internal/testenv"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// readYAML decodes every document of a file into unstructured objects.
func readYAML(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(doc), "---")) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, u)
	}
	return out
}

// contains reports whether every field of want appears with the same value in got, and
// returns the first path that differs.
func contains(got, want any, path string) (string, bool) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, false
		}
		for k, wv := range w {
			if p, ok := contains(g[k], wv, path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path, false
		}
		for i := range w {
			if p, ok := contains(g[i], w[i], path+"["+string(rune('0'+i))+"]"); !ok {
				return p, false
			}
		}
		return "", true
	default:
		return path, reflect.DeepEqual(normalise(got), normalise(want))
	}
}

// normalise makes YAML and JSON numbers comparable.
func normalise(v any) any {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case float64:
		return n
	}
	return v
}

func TestSamplesApplyAndRoundTrip(t *testing.T) {
	e := env(t)
	files, err := filepath.Glob("../../config/samples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			ns := e.Namespace(t, "samples")
			for _, obj := range readYAML(t, f) {
				want := obj.DeepCopy()
				obj.SetNamespace(ns)
				if err := e.Client.Create(ctx(t), obj); err != nil {
					t.Fatalf("apply %s %s: %v", obj.GetKind(), obj.GetName(), err)
				}
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(want.GroupVersionKind())
				if err := e.Client.Get(ctx(t), types.NamespacedName{Namespace: ns, Name: want.GetName()}, got); err != nil {
					t.Fatal(err)
				}
				delete(want.Object, "metadata")
				if p, ok := contains(got.Object, want.Object, ""); !ok {
					t.Errorf("%s %s lost or changed %s on the round trip:\nwant %v\ngot  %v", want.GetKind(), want.GetName(), p, want.Object, got.Object)
				}
			}
		})
	}
}

func TestRejectsMalformedObjects(t *testing.T) {
	e := env(t)
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{
			name: "component type without family",
			yaml: `
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: bad}
spec: {type: redis, version: v1}`,
			want: []string{"spec.type", `"redis"`, "<family>.<name>"},
		},
		{
			name: "component type with unknown family",
			yaml: `
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: bad}
spec: {type: cache.redis, version: v1}`,
			want: []string{"spec.type", "cache.redis"},
		},
		{
			name: "metadata item with value and secretKeyRef",
			yaml: `
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: bad}
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    value: hunter2
    secretKeyRef: {name: redis, key: password}`,
			want: []string{"spec.metadata[1]", "only one of value, secretKeyRef and envRef"},
		},
		{
			name: "component initTimeout that does not parse",
			yaml: `
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: bad}
spec: {type: state.redis, version: v1, initTimeout: 5 parsecs}`,
			want: []string{"spec.initTimeout", "5 parsecs", "duration"},
		},
		{
			name: "resiliency target with undefined policy",
			yaml: `
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: bad}
spec:
  policies:
    retries:
      retryForever: {policy: constant, duration: 5s, maxRetries: -1}
  targets:
    apps:
      nodeapp: {retry: retryForever, timeout: general}`,
			want: []string{"spec.targets.apps[nodeapp].timeout", "general", "spec.policies.timeouts"},
		},
		{
			name: "resiliency duration that does not parse",
			yaml: `
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: bad}
spec:
  policies:
    timeouts: {general: fivesec}`,
			want: []string{"spec.policies.timeouts[general]", "fivesec"},
		},
		{
			name: "v1alpha1 subscription with no route",
			yaml: `
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata: {name: bad}
spec: {pubsubname: pubsub, topic: orders, route: ""}`,
			want: []string{"spec.routes", "needs a route"},
		},
		{
			name: "v2alpha1 subscription with no route",
			yaml: `
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: bad}
spec: {pubsubname: pubsub, topic: orders, routes: {}}`,
			want: []string{"spec.routes", "needs a route"},
		},
		{
			name: "configuration with a bad mtls duration and action",
			yaml: `
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: bad}
spec:
  mtls: {enabled: true, workloadCertTTL: 1day}
  accessControl: {defaultAction: maybe}`,
			want: []string{"spec.mtls.workloadCertTTL", "1day", "spec.accessControl.defaultAction", "maybe"},
		},
		{
			name: "httpendpoint with a relative base URL",
			yaml: `
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: bad}
spec: {baseUrl: /orders}`,
			want: []string{"spec.baseUrl", "absolute http"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := e.Namespace(t, "reject")
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(tc.yaml), &u.Object); err != nil {
				t.Fatal(err)
			}
			u.SetNamespace(ns)
			err := e.Client.Create(ctx(t), u)
			if err == nil {
				t.Fatal("created; want a rejection")
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err.Error(), w)
				}
			}
		})
	}
}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

// warningClient is a client whose admission warnings the test can read.
func warningClient(t *testing.T, e *testenv.Env) (client.Client, *warnings) {
	t.Helper()
	cfg := rest.CopyConfig(e.Config)
	w := &warnings{}
	cfg.WarningHandlerWithContext = w
	c, err := client.New(cfg, client.Options{Scheme: e.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

func TestUnimplementedComponentTypeIsAcceptedWithWarning(t *testing.T) {
	e := env(t)
	c, w := warningClient(t, e)
	comp := &daprv1alpha1.Component{}
	comp.Name, comp.Namespace = "exotic", e.Namespace(t, "warn")
	comp.Spec.Type, comp.Spec.Version = "bindings.carrier-pigeon", "v1"
	if err := c.Create(ctx(t), comp); err != nil {
		t.Fatalf("want it accepted, got %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.msgs) != 1 || !strings.Contains(w.msgs[0], "bindings.carrier-pigeon") || !strings.Contains(w.msgs[0], "does not implement") {
		t.Errorf("want one warning naming the type, got %q", w.msgs)
	}
}

// A type a sidecar of this build can load gets no warning.
func TestImplementedComponentTypeHasNoWarning(t *testing.T) {
	e := env(t)
	c, w := warningClient(t, e)
	comp := &daprv1alpha1.Component{}
	comp.Name, comp.Namespace = "statestore", e.Namespace(t, "nowarn")
	comp.Spec.Type, comp.Spec.Version = "state.redis", "v1"
	if err := c.Create(ctx(t), comp); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.msgs) != 0 {
		t.Errorf("warnings for state.redis: %q", w.msgs)
	}
}

func TestSubscriptionStoredAsV2ReadBackAsV1(t *testing.T) {
	e := env(t)
	ns := e.Namespace(t, "convert")
	v1 := &daprv1alpha1.Subscription{}
	v1.Name, v1.Namespace = "orders", ns
	v1.Spec.Pubsubname, v1.Spec.Topic, v1.Spec.Route = "pubsub", "orders", "/orders"
	v1.Spec.DeadLetterTopic = "poison"
	v1.Spec.Metadata = map[string]string{"rawPayload": "true"}
	v1.Spec.BulkSubscribe.Enabled, v1.Spec.BulkSubscribe.MaxMessagesCount = true, 50
	v1.Scopes = []string{"nodeapp"}
	want := v1.Spec.DeepCopy()
	if err := e.Client.Create(ctx(t), v1); err != nil {
		t.Fatal(err)
	}

	v2 := &daprv2alpha1.Subscription{}
	if err := e.Client.Get(ctx(t), client.ObjectKeyFromObject(v1), v2); err != nil {
		t.Fatal(err)
	}
	if v2.Spec.Routes.Default != "/orders" || len(v2.Spec.Routes.Rules) != 0 {
		t.Errorf("v2alpha1 routes = %+v, want default /orders", v2.Spec.Routes)
	}
	if v2.Spec.DeadLetterTopic != "poison" || v2.Spec.BulkSubscribe.MaxMessagesCount != 50 || !reflect.DeepEqual(v2.Scopes, []string{"nodeapp"}) {
		t.Errorf("v2alpha1 lost fields: %+v scopes %v", v2.Spec, v2.Scopes)
	}

	back := &daprv1alpha1.Subscription{}
	if err := e.Client.Get(ctx(t), client.ObjectKeyFromObject(v1), back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back.Spec, want) || !reflect.DeepEqual(back.Scopes, []string{"nodeapp"}) {
		t.Errorf("v1alpha1 read back\n got %+v\nwant %+v", back.Spec, *want)
	}

	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := e.Client.Get(ctx(t), types.NamespacedName{Name: "subscriptions.dapr.io"}, crd); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(crd.Status.StoredVersions, []string{"v2alpha1"}) {
		t.Errorf("stored versions = %v, want only v2alpha1", crd.Status.StoredVersions)
	}
}
