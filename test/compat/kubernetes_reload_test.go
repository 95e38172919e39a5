package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

// Hot reload in Kubernetes mode: the sidecar watches the dapr.io resources of its
// namespace on the API server and applies each change while it serves, as it does with
// the files of its resources path in self-hosted mode (reload_test.go).

// kubeReload is one control plane with the validating webhooks, shared by the subtests,
// each of which works in a namespace of its own.
type kubeReload struct {
	env        *testenv.Env
	kubeconfig string
}

func startKubeReload(t *testing.T) *kubeReload {
	t.Helper()
	// The API server calls the webhooks on every write, so they must be served.
	env := testenv.Start(t, validation.SetupWithManager)
	user, err := env.Env.AddUser(envtest.User{Name: "sidecar", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(file, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return &kubeReload{env: env, kubeconfig: file}
}

// sidecar starts a Kubernetes-mode sidecar for appID in ns, with the environment the
// injector gives it, and waits until it is healthy.
func (k *kubeReload) sidecar(t *testing.T, ns, appID string, extraArgs ...string) *testproc.Sidecar {
	t.Helper()
	s := testproc.Start(t, appID, t.TempDir(),
		[]string{"KUBECONFIG=" + k.kubeconfig, "NAMESPACE=" + ns, "POD_NAME=" + appID + "-0"},
		append([]string{"--mode", "kubernetes"}, extraArgs...)...)
	s.WaitHealthy(t)
	return s
}

// kubeComponent builds a Component; metadata is name, value pairs.
func kubeComponent(ns, name, typ string, metadata ...string) *daprv1alpha1.Component {
	c := &daprv1alpha1.Component{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       daprv1alpha1.ComponentSpec{Type: typ, Version: "v1"},
	}
	for i := 0; i+1 < len(metadata); i += 2 {
		c.Spec.Metadata = append(c.Spec.Metadata, mdValue(metadata[i], metadata[i+1]))
	}
	return c
}

// updateComponent replaces the spec of a Component through the API server and
// returns the generation the write produced.
func (k *kubeReload) updateComponent(ctx context.Context, t *testing.T, want *daprv1alpha1.Component) int64 {
	t.Helper()
	var gen int64
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &daprv1alpha1.Component{}
		if err := k.env.Client.Get(ctx, client.ObjectKeyFromObject(want), cur); err != nil {
			return err
		}
		cur.Spec = *want.Spec.DeepCopy()
		if err := k.env.Client.Update(ctx, cur); err != nil {
			return err
		}
		gen = cur.Generation
		return nil
	})
	if err != nil {
		t.Fatalf("update Component %s: %v", want.Name, err)
	}
	return gen
}

// componentOf finds a component by name in the metadata, which in Kubernetes mode also
// lists the built-in secret store.
func componentOf(md metadataView, name string) (typ string, ok bool) {
	for _, c := range md.Components {
		if c.Name == name {
			return c.Type, true
		}
	}
	return "", false
}

// reportEvent finds the sidecar's report Event with reason about generation gen of
// the Component name in ns.
func (k *kubeReload) reportEvent(ctx context.Context, ns, name, reason string, gen int64) (*eventsv1.Event, bool) {
	var evs eventsv1.EventList
	if err := k.env.Client.List(ctx, &evs, client.InNamespace(ns)); err != nil {
		return nil, false
	}
	for i, e := range evs.Items {
		if e.Regarding.Kind == "Component" && e.Regarding.Name == name && e.Reason == reason &&
			e.Annotations["outrigger.dev/generation"] == strconv.FormatInt(gen, 10) {
			return &evs.Items[i], true
		}
	}
	return nil, false
}

// TestKubernetesHotReload shares one control plane between its subtests: starting one
// takes seconds.
func TestKubernetesHotReload(t *testing.T) {
	k := startKubeReload(t)
	t.Run("swaps a state store under load", k.swapsAStateStoreUnderLoad)
	t.Run("keeps the old instance when an update fails", k.failedUpdateAndRemoval)
	t.Run("adds a Subscription", k.addsASubscription)
}

// (a) Eight clients save and read without pause while the statestore Component is
// updated through the API server, several times, between state.in-memory and SQLite on
// two files: no call fails, and from each update on the calls reach the new store.
func (k *kubeReload) swapsAStateStoreUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	ns := k.env.Namespace(t, "k8s-reload-load")
	a, b := filepath.Join(t.TempDir(), "a.db"), filepath.Join(t.TempDir(), "b.db")
	if err := k.env.Client.Create(ctx, kubeComponent(ns, "statestore", "state.in-memory")); err != nil {
		t.Fatal(err)
	}
	s := k.sidecar(t, ns, "k8s-reload-load")
	c := newStateClient(s, "statestore")

	var calls, failures atomic.Int64
	var firstErrs sync.Map
	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; load.Err() == nil; i++ {
				key := fmt.Sprintf("w%d-%d", w, i%50)
				err := c.save(load, key, strconv.Itoa(i))
				if err == nil {
					_, err = c.get(load, key)
				}
				if load.Err() != nil {
					return
				}
				calls.Add(2)
				if err != nil {
					failures.Add(1)
					firstErrs.LoadOrStore(w, err)
				}
			}
		}()
	}

	// Each generation is a store; a marker key written in it tells which store the
	// sidecar uses. A store seen before still holds its marker: what was written while
	// it served went to it.
	sqlite := func(file string) *daprv1alpha1.Component {
		return kubeComponent(ns, "statestore", "state.sqlite", "connectionString", file)
	}
	gens := []struct {
		spec *daprv1alpha1.Component
		want string // the marker the store holds when it comes back
	}{
		{sqlite(a), ""},
		{sqlite(b), ""},
		{sqlite(a), "gen-1"},
		{kubeComponent(ns, "statestore", "state.in-memory"), ""},
		{sqlite(b), "gen-2"},
		{sqlite(a), "gen-3"},
	}
	if err := c.save(ctx, "marker", "gen-0"); err != nil {
		t.Fatal(err)
	}
	for i, g := range gens {
		gen := i + 1
		before := calls.Load()
		k.updateComponent(ctx, t, g.spec)
		pollUntil(ctx, t, fmt.Sprintf("generation %d in use", gen), func() bool {
			v, err := c.get(ctx, "marker")
			return err == nil && v == g.want
		})
		if err := c.save(ctx, "marker", "gen-"+strconv.Itoa(gen)); err != nil {
			t.Fatal(err)
		}
		// The load ran across the swap.
		pollUntil(ctx, t, "calls after the swap", func() bool { return calls.Load() > before+16 })
	}

	// A burst of updates, each written before the sidecar can have applied the one
	// before: whatever it skips, it ends on the last. No store of the burst but the last
	// is a.db, so a.db's marker shows the last one applied; a stale update applied after
	// it would send the write checked below elsewhere.
	burst := []*daprv1alpha1.Component{
		sqlite(b), kubeComponent(ns, "statestore", "state.in-memory"), sqlite(b), kubeComponent(ns, "statestore", "state.in-memory"),
		sqlite(b), kubeComponent(ns, "statestore", "state.in-memory"), sqlite(b), sqlite(a),
	}
	before := calls.Load()
	for _, spec := range burst {
		k.updateComponent(ctx, t, spec)
	}
	pollUntil(ctx, t, "the last update of the burst in use", func() bool {
		v, err := c.get(ctx, "marker")
		return err == nil && v == "gen-"+strconv.Itoa(len(gens))
	})
	pollUntil(ctx, t, "calls after the burst", func() bool { return calls.Load() > before+16 })
	stopLoad()
	wg.Wait()
	// Calls cancelled with the load may leave connections dialled but never used, which
	// would hold the sidecar's graceful shutdown for net/http's 5 s on StateNew ones.
	c.http.CloseIdleConnections()

	updates := len(gens) + len(burst)
	if n := failures.Load(); n > 0 {
		firstErrs.Range(func(w, err any) bool { t.Errorf("worker %v: %v", w, err); return true })
		t.Fatalf("%d of %d calls failed across %d updates", n, calls.Load(), updates)
	}
	t.Logf("%d calls across %d updates, none failed", calls.Load(), updates)

	// New writes land in the store now loaded: a.db, which a fresh sidecar of the same
	// app (its keys carry the app ID) reads.
	if err := c.save(ctx, "after-swaps", "in-a"); err != nil {
		t.Fatal(err)
	}
	fresh := testproc.Start(t, "k8s-reload-load", testproc.WriteResources(t, map[string]string{"statestore.yaml": sqliteState(a)}), nil)
	fresh.WaitHealthy(t)
	if v, err := newStateClient(fresh, "statestore").get(ctx, "after-swaps"); err != nil || v != "in-a" {
		t.Errorf("a.db holds %q (%v), want the write made after the updates", v, err)
	}
}

// (b) An update that cannot initialise keeps the instance loaded before serving; the
// metadata lists the failure and the sidecar reports it as a ComponentInitFailed Event
// on the Component, until a good update replaces it. Deleting the Component then
// removes the store: calls get Dapr's not-found error.
func (k *kubeReload) failedUpdateAndRemoval(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ns := k.env.Namespace(t, "k8s-reload-fail")
	store := kubeComponent(ns, "statestore", "state.sqlite", "connectionString", filepath.Join(t.TempDir(), "state.db"))
	// A second store, so that the deleted one is "not found" rather than "no state store
	// configured".
	for _, obj := range []client.Object{store, kubeComponent(ns, "other", "state.in-memory")} {
		if err := k.env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	s := k.sidecar(t, ns, "k8s-reload-fail")
	c := newStateClient(s, "statestore")
	if err := c.save(ctx, "kept", "v1"); err != nil {
		t.Fatal(err)
	}

	// Two updates that cannot initialise, one after the other: a store whose server is
	// down, and a metadata value the webhook accepts (it does not know each component's
	// metadata) but the component rejects. Each replaces the failure listed before.
	closed := testproc.FreePort(t) // nothing listens there
	bad := []struct {
		what    string
		spec    *daprv1alpha1.Component
		typ     string
		errHint string // in the error, when the component names the cause
	}{
		{"an unreachable Redis", kubeComponent(ns, "statestore", "state.redis",
			"redisHost", fmt.Sprintf("127.0.0.1:%d", closed), "redisMaxRetries", "-1"), "state.redis", ""},
		{"a bad metadata value", kubeComponent(ns, "statestore", "state.sqlite",
			"connectionString", filepath.Join(t.TempDir(), "other.db"), "timeout", "soon"), "state.sqlite", "timeout"},
	}
	for i, u := range bad {
		value := "v" + strconv.Itoa(i+1) // what the loaded store holds
		gen := k.updateComponent(ctx, t, u.spec)
		var md metadataView
		pollUntil(ctx, t, u.what+": the failed update is listed", func() bool {
			md = readMetadata(t, s)
			return len(md.FailedComponents) == 1 && md.FailedComponents[0].Type == u.typ
		})
		if f := md.FailedComponents[0]; f.Name != "statestore" || f.Error == "" || !strings.Contains(f.Error, u.errHint) {
			t.Errorf("%s: failedComponents = %+v", u.what, md.FailedComponents)
		}
		if typ, ok := componentOf(md, "statestore"); !ok || typ != "state.sqlite" {
			t.Errorf("%s: components = %+v, want the sqlite store still loaded", u.what, md.Components)
		}
		if v, err := c.get(ctx, "kept"); err != nil || v != value {
			t.Errorf("%s: the loaded store stopped serving: %q %v, want %q", u.what, v, err, value)
		}
		if err := c.save(ctx, "kept", "v"+strconv.Itoa(i+2)); err != nil {
			t.Errorf("%s: the loaded store stopped serving: %v", u.what, err)
		}
		var failed *eventsv1.Event
		pollUntil(ctx, t, u.what+": a ComponentInitFailed Event on the Component", func() bool {
			var ok bool
			failed, ok = k.reportEvent(ctx, ns, "statestore", "ComponentInitFailed", gen)
			return ok
		})
		if failed.Type != "Warning" || !strings.Contains(failed.Note, "k8s-reload-fail") || failed.Regarding.UID != store.UID {
			t.Errorf("%s: ComponentInitFailed Event: type %s, note %q, regarding %+v", u.what, failed.Type, failed.Note, failed.Regarding)
		}
	}

	// A good update clears the failure.
	goodGen := k.updateComponent(ctx, t, kubeComponent(ns, "statestore", "state.in-memory"))
	var md metadataView
	pollUntil(ctx, t, "the good update applies", func() bool {
		md = readMetadata(t, s)
		typ, _ := componentOf(md, "statestore")
		return len(md.FailedComponents) == 0 && typ == "state.in-memory"
	})
	if v, err := c.get(ctx, "kept"); err != nil || v != "" {
		t.Errorf("the new in-memory store holds kept=%q (%v), want it empty", v, err)
	}
	pollUntil(ctx, t, "a ComponentLoaded Event for the good update", func() bool {
		_, ok := k.reportEvent(ctx, ns, "statestore", "ComponentLoaded", goodGen)
		return ok
	})

	if err := k.env.Client.Delete(ctx, store); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	pollUntil(ctx, t, "the deleted store is not found", func() bool {
		code, _, body = testproc.Do(t, http.MethodGet, s.URL("/v1.0/state/statestore/kept"), "")
		return code != http.StatusNoContent && code != http.StatusOK
	})
	var e struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	if code != http.StatusBadRequest || e.ErrorCode != "ERR_STATE_STORE_NOT_FOUND" || !strings.Contains(e.Message, "statestore") {
		t.Errorf("after the deletion: %d %s", code, body)
	}
	md = readMetadata(t, s)
	if _, ok := componentOf(md, "statestore"); ok || len(md.FailedComponents) != 0 {
		t.Errorf("metadata after the deletion: %+v", md)
	}
	if _, ok := componentOf(md, "other"); !ok {
		t.Errorf("the other store went with the deleted one: %+v", md.Components)
	}
}

// (c) A Subscription created while the sidecar runs starts delivery to its route.
func (k *kubeReload) addsASubscription(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := map[string][]string{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/subscribe" {
			_, _ = io.WriteString(w, "[]")
			return
		}
		var ev struct {
			Data any `json:"data"`
		}
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		got[r.URL.Path] = append(got[r.URL.Path], fmt.Sprint(ev.Data))
		mu.Unlock()
		_, _ = io.WriteString(w, `{"status":"SUCCESS"}`)
	}))
	t.Cleanup(app.Close)
	_, port, err := net.SplitHostPort(app.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	ns := k.env.Namespace(t, "k8s-reload-sub")
	if err := k.env.Client.Create(ctx, kubeComponent(ns, "pubsub", "pubsub.in-memory")); err != nil {
		t.Fatal(err)
	}
	s := k.sidecar(t, ns, "k8s-reload-sub", "--app-port", port)
	if md := readMetadata(t, s); len(md.Subscriptions) != 0 {
		t.Fatalf("subscriptions before the resource: %+v", md.Subscriptions)
	}

	sub := &daprv2alpha1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns},
		Spec: daprv2alpha1.SubscriptionSpec{
			Pubsubname: "pubsub", Topic: "orders", Routes: daprv2alpha1.Routes{Default: "/orders"},
		},
		Scoped: common.Scoped{Scopes: []string{"k8s-reload-sub"}},
	}
	if err := k.env.Client.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	pollUntil(ctx, t, "the subscription is listed", func() bool {
		md := readMetadata(t, s)
		return len(md.Subscriptions) == 1 && md.Subscriptions[0].PubsubName == "pubsub" && md.Subscriptions[0].Topic == "orders"
	})
	code, _, body := testproc.Do(t, http.MethodPost, s.URL("/v1.0/publish/pubsub/orders"), `{"orderId":1}`, "Content-Type", "application/json")
	if code != http.StatusNoContent {
		t.Fatalf("publish: %d %s", code, body)
	}
	pollUntil(ctx, t, "delivery to /orders", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["/orders"]) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if d := got["/orders"][0]; !strings.Contains(d, "orderId:1") {
		t.Errorf("delivered data %s", d)
	}
	select {
	case <-s.Done():
		t.Errorf("the sidecar exited:\n%s", s.Output())
	default:
	}
}
