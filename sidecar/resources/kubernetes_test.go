package resources

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/config"
	"github.com/outrigger-dev/outrigger/internal/localcp"
	"github.com/outrigger-dev/outrigger/internal/scheme"
)

const (
	kubeTestApp   = "orders"
	kubeWaitLimit = 30 * time.Second
)

// kubeEnv is an API server with the dapr.io CRDs and no webhooks: the source reads what
// is stored, and admission is not its concern.
type kubeEnv struct {
	env    *envtest.Environment
	cfg    *rest.Config
	client client.Client
}

func startKubeEnv(t *testing.T) *kubeEnv {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	assets, err := localcp.AssetsDir()
	if err != nil {
		fail("envtest unavailable: %v", err)
	}
	crds, err := config.CRDs()
	if err != nil {
		t.Fatalf("load CRDs: %v", err)
	}
	s := scheme.New()
	env := &envtest.Environment{Scheme: s, BinaryAssetsDirectory: assets, CRDs: crds, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stop control plane: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return &kubeEnv{env: env, cfg: cfg, client: c}
}

func (e *kubeEnv) namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := e.client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

func (e *kubeEnv) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := e.client.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// change fetches the object, applies mutate, and writes it back as a merge patch.
func (e *kubeEnv) change(t *testing.T, obj client.Object, mutate func()) {
	t.Helper()
	ctx := context.Background()
	if err := e.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatalf("get %s: %v", obj.GetName(), err)
	}
	base := obj.DeepCopyObject().(client.Object)
	mutate()
	if err := e.client.Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		t.Fatalf("patch %s: %v", obj.GetName(), err)
	}
}

func (e *kubeEnv) source(t *testing.T, cfg *rest.Config, ns string) *Kubernetes {
	t.Helper()
	k, err := NewKubernetes(cfg, ns, kubeTestApp, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

func kubeComponent(ns, name string, scopes ...string) *daprv1alpha1.Component {
	return &daprv1alpha1.Component{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       daprv1alpha1.ComponentSpec{Type: "state.redis", Version: "v1"},
		Scoped:     common.Scoped{Scopes: scopes},
	}
}

func kubeSubscription(ns, name string, scopes ...string) *daprv2alpha1.Subscription {
	return &daprv2alpha1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       daprv2alpha1.SubscriptionSpec{Pubsubname: "pubsub", Topic: "orders", Routes: daprv2alpha1.Routes{Default: "/orders"}},
		Scoped:     common.Scoped{Scopes: scopes},
	}
}

// kubeWatcher runs Watch until the test ends and hands out its events.
type kubeWatcher struct {
	t      *testing.T
	events chan Event
}

func startKubeWatch(t *testing.T, k *Kubernetes) *kubeWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &kubeWatcher{t: t, events: make(chan Event)}
	done := make(chan error, 1)
	go func() { done <- k.Watch(ctx, w.events) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v, want nil", err)
		}
	})
	return w
}

// next returns the next event, failing the test if none comes in time.
func (w *kubeWatcher) next() Event {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubeWaitLimit)
	defer cancel()
	select {
	case ev := <-w.events:
		return ev
	case <-ctx.Done():
		w.t.Fatalf("no event within %s", kubeWaitLimit)
		return Event{}
	}
}

func (w *kubeWatcher) expect(kind Kind, typ EventType, name string) Event {
	w.t.Helper()
	ev := w.next()
	if ev.Kind != kind || ev.Type != typ || ev.Object.GetName() != name {
		w.t.Fatalf("got %s %s %q, want %s %s %q", ev.Type, ev.Kind, ev.Object.GetName(), typ, kind, name)
	}
	if ev.Origin.File != "" {
		w.t.Errorf("event origin %v, want the API server", ev.Origin)
	}
	return ev
}

func kubeNames[T Object](rs []Resource[T]) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Object.GetName())
	}
	return out
}

func kubeLoadCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), kubeWaitLimit)
	t.Cleanup(cancel)
	return ctx
}

// The subtests share one control plane, which takes seconds to start, and each works in
// its own namespace. The last one deletes a CRD.
func TestKubernetes(t *testing.T) {
	e := startKubeEnv(t)

	t.Run("load filters by namespace and scope, ordered by name", func(t *testing.T) {
		ns, other := e.namespace(t, "load"), e.namespace(t, "other")
		e.create(t,
			kubeComponent(ns, "b-scoped", kubeTestApp, "billing"),
			kubeComponent(ns, "a-everyone"),
			kubeComponent(ns, "c-billing-only", "billing"),
			kubeComponent(other, "z-other-namespace"),
			kubeSubscription(ns, "orders-sub", kubeTestApp),
			kubeSubscription(ns, "billing-sub", "billing"),
			&daprv1alpha1.Configuration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "appconfig"}},
			&daprv1alpha1.Resiliency{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing-res"}, Scoped: common.Scoped{Scopes: []string{"billing"}}},
			&daprv1alpha1.Resiliency{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "res"}},
			&daprv1alpha1.HTTPEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "github"},
				Spec: daprv1alpha1.HTTPEndpointSpec{BaseURL: "https://api.github.com"}},
		)
		set, err := e.source(t, e.cfg, ns).Load(kubeLoadCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			kind      Kind
			got, want []string
		}{
			{KindComponent, kubeNames(set.Components), []string{"a-everyone", "b-scoped"}},
			{KindSubscription, kubeNames(set.Subscriptions), []string{"orders-sub"}},
			{KindConfiguration, kubeNames(set.Configurations), []string{"appconfig"}},
			{KindResiliency, kubeNames(set.Resiliencies), []string{"res"}},
			{KindHTTPEndpoint, kubeNames(set.HTTPEndpoints), []string{"github"}},
		} {
			if !slices.Equal(c.got, c.want) {
				t.Errorf("%s: got %v, want %v", c.kind, c.got, c.want)
			}
		}
		var skipped []string
		for _, s := range set.Skipped {
			skipped = append(skipped, s.Kind+"/"+s.Name)
			if !strings.Contains(s.Reason, "billing") {
				t.Errorf("skipped %s/%s: reason %q does not name the scopes", s.Kind, s.Name, s.Reason)
			}
		}
		if want := []string{"Component/c-billing-only", "Subscription/billing-sub", "Resiliency/billing-res"}; !slices.Equal(skipped, want) {
			t.Errorf("skipped %v, want %v", skipped, want)
		}
		c := set.Components[1]
		if c.Origin.File != "" || c.Object.Namespace != ns || c.Object.Spec.Type != "state.redis" {
			t.Errorf("component %+v from %v", c.Object, c.Origin)
		}
		if gvk := c.Object.GroupVersionKind(); gvk != daprv1alpha1.GroupVersion.WithKind("Component") {
			t.Errorf("component kind %v", gvk)
		}
		if gvk := set.Subscriptions[0].Object.GroupVersionKind(); gvk != daprv2alpha1.GroupVersion.WithKind("Subscription") {
			t.Errorf("subscription kind %v", gvk)
		}
		if len(c.Object.ManagedFields) != 0 {
			t.Errorf("managed fields kept: %v", c.Object.ManagedFields)
		}
	})

	t.Run("watch emits add, update, delete and scope changes", func(t *testing.T) {
		ns := e.namespace(t, "watch")
		k := e.source(t, e.cfg, ns)
		if _, err := k.Load(kubeLoadCtx(t)); err != nil {
			t.Fatal(err)
		}
		w := startKubeWatch(t, k)

		c := kubeComponent(ns, "store")
		e.create(t, c)
		if ev := w.expect(KindComponent, Added, "store"); ev.Object.(*daprv1alpha1.Component).Spec.Type != "state.redis" {
			t.Errorf("added %+v", ev.Object)
		}
		e.change(t, c, func() { c.Spec.Type = "state.postgresql" })
		if ev := w.expect(KindComponent, Updated, "store"); ev.Object.(*daprv1alpha1.Component).Spec.Type != "state.postgresql" {
			t.Errorf("updated %+v", ev.Object)
		}
		e.change(t, c, func() { c.Auth.SecretStore = "vault" })
		w.expect(KindComponent, Updated, "store")
		e.change(t, c, func() { c.Scopes = []string{"billing"} })
		w.expect(KindComponent, Deleted, "store")
		// Out of scope, a change is not this app's concern.
		e.change(t, c, func() { c.Spec.Version = "v2" })
		e.change(t, c, func() { c.Scopes = []string{"billing", kubeTestApp} })
		if ev := w.expect(KindComponent, Added, "store"); ev.Object.(*daprv1alpha1.Component).Spec.Version != "v2" {
			t.Errorf("added back %+v", ev.Object)
		}
		if err := e.client.Delete(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		w.expect(KindComponent, Deleted, "store")

		e.create(t, kubeComponent(ns, "billing-store", "billing"), kubeSubscription(ns, "sub", kubeTestApp))
		w.expect(KindSubscription, Added, "sub")
		e.create(t, &daprv1alpha1.HTTPEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
			Spec: daprv1alpha1.HTTPEndpointSpec{BaseURL: "https://example.com"}})
		w.expect(KindHTTPEndpoint, Added, "api")
	})

	t.Run("status, label and resourceVersion changes emit nothing", func(t *testing.T) {
		ns := e.namespace(t, "status")
		c, sentinel := kubeComponent(ns, "store"), kubeComponent(ns, "sentinel")
		e.create(t, c, sentinel)
		k := e.source(t, e.cfg, ns)
		set, err := k.Load(kubeLoadCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if got := kubeNames(set.Components); !slices.Equal(got, []string{"sentinel", "store"}) {
			t.Fatalf("loaded %v", got)
		}
		w := startKubeWatch(t, k)

		ctx := context.Background()
		if err := e.client.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
			t.Fatal(err)
		}
		base := c.DeepCopy()
		meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: common.ConditionReady, Status: metav1.ConditionTrue,
			Reason: "Accepted", Message: "ok"})
		c.Status.ObservedGeneration = c.Generation
		if err := e.client.Status().Patch(ctx, c, client.MergeFrom(base)); err != nil {
			t.Fatal(err)
		}
		e.change(t, c, func() { c.Labels = map[string]string{"team": "orders"} })
		e.change(t, c, func() { c.Annotations = map[string]string{"note": "x"} })
		// Events come in order, so the sentinel's update proves nothing came before it.
		e.change(t, sentinel, func() { sentinel.Spec.Version = "v2" })
		w.expect(KindComponent, Updated, "sentinel")
	})

	t.Run("no change is missed between Load and Watch", func(t *testing.T) {
		ns := e.namespace(t, "race")
		k := e.source(t, e.cfg, ns)
		const n = 40
		half := make(chan struct{})
		writerDone := make(chan struct{})
		var writeErr error
		// The writer runs across Load and stops before Watch starts: every change after
		// Load's snapshot must come from Watch, and none twice.
		ctx := kubeLoadCtx(t) // bounds every write, and so the wait for the writer
		go func() {
			defer close(writerDone)
			for i := range n {
				c := kubeComponent(ns, fmt.Sprintf("c-%02d", i))
				if err := e.client.Create(ctx, c); err != nil {
					writeErr = err
					return
				}
				if i%3 == 0 {
					base := c.DeepCopy()
					c.Spec.Version = "v2"
					if err := e.client.Patch(ctx, c, client.MergeFrom(base)); err != nil {
						writeErr = err
						return
					}
				}
				if i%5 == 0 {
					if err := e.client.Delete(ctx, c); err != nil {
						writeErr = err
						return
					}
				}
				if i == n/2 {
					close(half)
				}
			}
		}()
		select {
		case <-half:
		case <-writerDone:
		}
		set, err := k.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		<-writerDone
		if writeErr != nil {
			t.Fatal(writeErr)
		}
		state := map[string]string{}
		for _, c := range set.Components {
			state[c.Object.Name] = c.Object.Spec.Version
		}
		want := map[string]string{}
		for i := range n {
			if i%5 == 0 {
				continue
			}
			want[fmt.Sprintf("c-%02d", i)] = map[bool]string{true: "v2", false: "v1"}[i%3 == 0]
		}
		t.Logf("Load saw %d of %d components", len(state), len(want))

		w := startKubeWatch(t, k)
		for !maps.Equal(state, want) {
			ev := w.next()
			c := ev.Object.(*daprv1alpha1.Component)
			_, had := state[c.Name]
			switch ev.Type {
			case Added:
				if had {
					t.Fatalf("Added %s, which Load or an earlier event already gave", c.Name)
				}
				state[c.Name] = c.Spec.Version
			case Updated:
				if !had {
					t.Fatalf("Updated %s, which is unknown", c.Name)
				}
				state[c.Name] = c.Spec.Version
			case Deleted:
				if !had {
					t.Fatalf("Deleted %s, which is unknown", c.Name)
				}
				delete(state, c.Name)
			}
		}
		// Nothing more is pending: a fresh change is the very next event.
		e.create(t, kubeComponent(ns, "sentinel"))
		w.expect(KindComponent, Added, "sentinel")
	})

	t.Run("a second Watch is refused, and Load while watching", func(t *testing.T) {
		ns := e.namespace(t, "twice")
		k := e.source(t, e.cfg, ns)
		if _, err := k.Load(kubeLoadCtx(t)); err != nil {
			t.Fatal(err)
		}
		w := startKubeWatch(t, k)
		e.create(t, kubeComponent(ns, "first"))
		w.expect(KindComponent, Added, "first") // Watch is running by now
		if err := k.Watch(context.Background(), make(chan Event)); err == nil {
			t.Error("a second Watch was accepted")
		}
		if _, err := k.Load(context.Background()); err == nil {
			t.Error("Load while watching was accepted")
		}
	})

	t.Run("watch without load sends the initial list as Added", func(t *testing.T) {
		ns := e.namespace(t, "noload")
		e.create(t, kubeComponent(ns, "present"))
		w := startKubeWatch(t, e.source(t, e.cfg, ns))
		w.expect(KindComponent, Added, "present")
	})

	t.Run("forbidden names the kind", func(t *testing.T) {
		ns := e.namespace(t, "rbac")
		user, err := e.env.AddUser(envtest.User{Name: "sidecar-" + ns}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Everything the sidecar reads but HTTPEndpoints.
		e.create(t,
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sidecar"}, Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{"dapr.io"}, Verbs: []string{"get", "list", "watch"},
				Resources: []string{"components", "configurations", "subscriptions", "resiliencies"},
			}}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sidecar"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "sidecar"},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "sidecar-" + ns}}},
		)
		k := e.source(t, user.Config(), ns)
		k.ForbiddenGrace = 200 * time.Millisecond
		_, err = k.Load(kubeLoadCtx(t))
		if err == nil {
			t.Fatal("Load succeeded without access to HTTPEndpoints")
		}
		t.Logf("Load: %v", err)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "list httpendpoints in namespace") ||
			!strings.Contains(err.Error(), "httpendpoints.dapr.io") || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %q does not say that listing httpendpoints is forbidden", err)
		}
	})

	t.Run("forbidden until the Role is bound, then loaded", func(t *testing.T) {
		ns := e.namespace(t, "late-rbac")
		e.create(t, kubeComponent(ns, "present"))
		user, err := e.env.AddUser(envtest.User{Name: "sidecar-" + ns}, nil)
		if err != nil {
			t.Fatal(err)
		}
		k := e.source(t, user.Config(), ns)
		k.ForbiddenGrace = time.Hour // the load's context bounds the test
		type result struct {
			set *Set
			err error
		}
		loaded := make(chan result, 1)
		go func() {
			set, err := k.Load(kubeLoadCtx(t))
			loaded <- result{set, err}
		}()
		// Bind the Role only once a list has been refused.
		ctx := kubeLoadCtx(t)
		for forbidden := false; !forbidden; {
			k.mu.Lock()
			if k.run != nil {
				_, forbidden = k.run.forbiddenSince[KindComponent]
			}
			k.mu.Unlock()
			select {
			case r := <-loaded:
				t.Fatalf("Load ended before the Role was bound: %v", r.err)
			case <-ctx.Done():
				t.Fatal("no list was refused before the deadline")
			case <-time.After(10 * time.Millisecond):
			}
		}
		e.create(t,
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sidecar"}, Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{"dapr.io"}, Verbs: []string{"get", "list", "watch"},
				Resources: []string{"components", "configurations", "subscriptions", "resiliencies", "httpendpoints"},
			}}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sidecar"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "sidecar"},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "sidecar-" + ns}}},
		)
		r := <-loaded
		if r.err != nil {
			t.Fatalf("Load after the Role was bound: %v", r.err)
		}
		if len(r.set.Components) != 1 || r.set.Components[0].Object.Name != "present" {
			t.Errorf("loaded %+v, want the component present", r.set.Components)
		}
	})

	// Last: it removes a CRD from the shared control plane.
	t.Run("a missing CRD names the kind", func(t *testing.T) {
		ns := e.namespace(t, "nocrd")
		crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: "resiliencies.dapr.io"}}
		if err := e.client.Delete(context.Background(), crd); err != nil {
			t.Fatal(err)
		}
		ctx := kubeLoadCtx(t)
		// The API server drops the resource shortly after the CRD; until then a Load may
		// still succeed.
		for {
			_, err := e.source(t, e.cfg, ns).Load(ctx)
			if err != nil {
				t.Logf("Load: %v", err)
				if !strings.Contains(err.Error(), "list resiliencies in namespace") ||
					!strings.Contains(err.Error(), "resiliencies.dapr.io") || !strings.Contains(err.Error(), "not installed") {
					t.Errorf("error %q does not say that the Resiliency CRD is missing", err)
				}
				return
			}
			select {
			case <-ctx.Done():
				t.Fatal("Load kept succeeding after the Resiliency CRD was deleted")
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

func TestSameContent(t *testing.T) {
	base := kubeComponent("ns", "store", "a")
	base.ResourceVersion, base.Generation = "1", 1
	tests := []struct {
		name   string
		change func(c *daprv1alpha1.Component)
		same   bool
	}{
		{name: "resourceVersion and generation", same: true, change: func(c *daprv1alpha1.Component) {
			c.ResourceVersion, c.Generation = "2", 2
		}},
		{name: "labels and annotations", same: true, change: func(c *daprv1alpha1.Component) {
			c.Labels, c.Annotations = map[string]string{"a": "b"}, map[string]string{"c": "d"}
		}},
		{name: "status", same: true, change: func(c *daprv1alpha1.Component) { c.Status.ObservedGeneration = 1 }},
		{name: "type meta", same: true, change: func(c *daprv1alpha1.Component) { c.Kind = "Component" }},
		{name: "spec", change: func(c *daprv1alpha1.Component) { c.Spec.Version = "v2" }},
		{name: "scopes", change: func(c *daprv1alpha1.Component) { c.Scopes = []string{"a", "b"} }},
		{name: "auth", change: func(c *daprv1alpha1.Component) { c.Auth.SecretStore = "vault" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base.DeepCopy()
			tt.change(c)
			if got := sameContent(base, c); got != tt.same {
				t.Errorf("sameContent = %v, want %v", got, tt.same)
			}
		})
	}
}
