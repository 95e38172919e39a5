package compstore

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores/localfile"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/resources"
)

// fakeStore is a state store whose Init does what its "mode" metadata says: "fail",
// "block" (until its context ends) or "hang" (until the test releases it, ignoring
// its context, as a badly written component would).
type fakeStore struct {
	t       *testing.T
	hang    chan struct{}
	barrier *sync.WaitGroup
	mu      sync.Mutex
	md      components.Metadata
	closed  bool
	initErr error
}

func (f *fakeStore) Init(ctx context.Context, md components.Metadata) error {
	f.mu.Lock()
	f.md = md
	f.mu.Unlock()
	switch md.Properties["mode"] {
	case "fail":
		return errors.New("connection refused")
	case "block":
		<-ctx.Done()
		return ctx.Err()
	case "hang":
		<-f.hang
	case "barrier":
		// Returns once every component in the barrier has started its Init.
		f.barrier.Done()
		all := make(chan struct{})
		go func() { f.barrier.Wait(); close(all) }()
		select {
		case <-all:
		case <-ctx.Done():
			return errors.New("the other components did not start initialising alongside")
		}
	}
	return nil
}

func (f *fakeStore) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeStore) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (f *fakeStore) props() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.md.Properties
}

func (f *fakeStore) Features() []state.Feature { return []state.Feature{state.FeatureETag} }
func (f *fakeStore) Get(context.Context, *state.GetRequest) (*state.GetResponse, error) {
	return nil, nil
}
func (f *fakeStore) Set(context.Context, *state.SetRequest) error       { return nil }
func (f *fakeStore) Delete(context.Context, *state.DeleteRequest) error { return nil }

// harness is a store with registries of its own: the fake state store and the real
// local.file secret store.
type harness struct {
	*Store
	mu      sync.Mutex
	created []*fakeStore
	hang    chan struct{}
	barrier sync.WaitGroup
	env     map[string]string
}

func newHarness(t *testing.T) *harness {
	h := &harness{hang: make(chan struct{}), env: map[string]string{}}
	stateReg := &components.Registry[state.Store]{}
	stateReg.Register("state.fake", func() state.Store {
		f := &fakeStore{t: t, hang: h.hang, barrier: &h.barrier}
		h.mu.Lock()
		h.created = append(h.created, f)
		h.mu.Unlock()
		return f
	})
	secretReg := &components.Registry[secretstores.Store]{}
	localfile.Register(secretReg)
	h.Store = New("myapp", "ns1", logr.Discard())
	h.Registries = Registries{State: stateReg, SecretStores: secretReg}
	h.LookupEnv = func(k string) (string, bool) { v, ok := h.env[k]; return v, ok }
	t.Cleanup(func() {
		select {
		case <-h.hang:
		default:
			close(h.hang)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// fake returns the instance created for the component of that name.
func (h *harness) fake(name string) *fakeStore {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.created) - 1; i >= 0; i-- {
		if f := h.created[i]; f.props() != nil && f.md.Name == name {
			return f
		}
	}
	return nil
}

func item(name, value string) common.NameValuePair {
	raw, _ := json.Marshal(value)
	return common.NameValuePair{Name: name, Value: common.DynamicValue{JSON: apiextensionsv1.JSON{Raw: raw}}}
}

func secretItem(name, secret, key string) common.NameValuePair {
	return common.NameValuePair{Name: name, SecretKeyRef: common.SecretKeyRef{Name: secret, Key: key}}
}

func envItem(name, env string) common.NameValuePair {
	return common.NameValuePair{Name: name, EnvRef: env}
}

func component(name, typ string, items ...common.NameValuePair) *daprv1alpha1.Component {
	return &daprv1alpha1.Component{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       daprv1alpha1.ComponentSpec{Type: typ, Version: "v1", Metadata: items},
	}
}

func set(comps ...*daprv1alpha1.Component) *resources.Set {
	s := &resources.Set{}
	for i, c := range comps {
		s.Components = append(s.Components, resources.Resource[*daprv1alpha1.Component]{
			Object: c, Origin: resources.Origin{File: "components.yaml", Document: i + 1, Line: 1},
		})
	}
	return s
}

func secretsFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadResolvesMetadata(t *testing.T) {
	h := newHarness(t)
	h.env["REDIS_HOST"] = "redis.local:6379"
	file := secretsFile(t, `{"redisPassword": "s3cret", "db": {"user": "admin"}}`)

	store := component("statestore", "state.fake",
		item("plain", "value"),
		secretItem("password", "redisPassword", ""),
		secretItem("user", "db:user", "db:user"),
		envItem("host", "REDIS_HOST"),
		envItem("unset", "NOT_SET"),
		item("consumer", "{appID}-{namespace}"),
		item("id", "{uuid}"),
	)
	store.Auth.SecretStore = "localsecrets"
	// Listed before the secret store it needs: secret stores load first.
	err := h.Load(context.Background(), set(store, component("localsecrets", "secretstores.local.file", item("secretsFile", file))))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	got := h.fake("statestore").props()
	want := map[string]string{
		"plain": "value", "password": "s3cret", "user": "admin", "host": "redis.local:6379", "consumer": "myapp-ns1.myapp",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("property %s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["unset"]; ok {
		t.Error("an envRef to an unset variable should leave the property out, as in Dapr")
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(got["id"]) {
		t.Errorf("{uuid} = %q", got["id"])
	}
	md := h.fake("statestore").md
	if md.AppID != "myapp" || md.Namespace != "ns1" || md.Type != "state.fake" || md.Version != "v1" {
		t.Errorf("metadata identity = %+v", md)
	}

	comps := h.Components()
	if len(comps) != 2 || comps[0].Name != "localsecrets" || comps[1].Name != "statestore" ||
		strings.Join(comps[1].Capabilities, ",") != "ETAG" || comps[1].Type != "state.fake" || comps[1].Version != "v1" {
		t.Errorf("Components() = %+v", comps)
	}
	if len(h.Failed()) != 0 {
		t.Errorf("Failed() = %+v", h.Failed())
	}
}

func TestSecretStoreThroughAnotherSecretStore(t *testing.T) {
	h := newHarness(t)
	inner := secretsFile(t, `{"token": "t0k3n"}`)
	outer := secretsFile(t, `{"outerPath": "`+inner+`"}`)

	// "second" reads its secretsFile path from "first", which is listed after it.
	second := component("second", "secretstores.local.file", secretItem("secretsFile", "outerPath", ""))
	second.Auth.SecretStore = "first"
	first := component("first", "secretstores.local.file", item("secretsFile", outer))
	s := component("statestore", "state.fake", secretItem("token", "token", ""))
	s.Auth.SecretStore = "second"

	if err := h.Load(context.Background(), set(second, s, first)); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := h.fake("statestore").props()["token"]; got != "t0k3n" {
		t.Errorf("token = %q", got)
	}
	if names := h.SecretStores().Names(); strings.Join(names, ",") != "first,second" {
		t.Errorf("secret stores = %v, want first,second (load order)", names)
	}
}

func TestSecretStoresWaitingOnEachOther(t *testing.T) {
	h := newHarness(t)
	a := component("a", "secretstores.local.file", secretItem("secretsFile", "x", ""))
	a.Auth.SecretStore = "b"
	b := component("b", "secretstores.local.file", secretItem("secretsFile", "x", ""))
	b.Auth.SecretStore = "a"
	err := h.Load(context.Background(), set(a, b))
	if err == nil || !strings.Contains(err.Error(), `init secret store "a" (secretstores.local.file/v1): its secretKeyRefs go through secret store "b", which cannot load first`) {
		t.Errorf("Load = %v", err)
	}
}

func TestLoadFailures(t *testing.T) {
	blocking := component("slow", "state.fake", item("mode", "block"))
	blocking.Spec.InitTimeout = "20ms"
	hanging := component("stuck", "state.fake", item("mode", "hang"))
	hanging.Spec.InitTimeout = "20ms"
	noStore := component("nostore", "state.fake", secretItem("password", "pw", ""))
	missingStore := component("missingstore", "state.fake", secretItem("password", "pw", ""))
	missingStore.Auth.SecretStore = "vault"
	failedStore := component("failedstore", "state.fake", secretItem("password", "pw", ""))
	failedStore.Auth.SecretStore = "broken"
	missingKey := component("missingkey", "state.fake", secretItem("password", "pw", "nokey"))
	missingKey.Auth.SecretStore = "local"
	missingSecret := component("missingsecret", "state.fake", secretItem("password", "nope", ""))
	missingSecret.Auth.SecretStore = "local"

	tests := []struct {
		name  string
		comp  *daprv1alpha1.Component
		extra []*daprv1alpha1.Component
		want  string
	}{
		{name: "init fails", comp: component("redis", "state.fake", item("mode", "fail")),
			want: `init state store "redis" (state.fake/v1): connection refused`},
		{name: "unknown type", comp: component("pg", "state.nope"),
			want: `init state store "pg" (state.nope/v1): component type state.nope/v1 is not implemented by Outrigger (available: state.fake/v1)`},
		{name: "family not loaded yet", comp: component("binding", "bindings.kafka"),
			want: `init binding "binding" (bindings.kafka/v1): Outrigger does not load bindings components yet`},
		{name: "pub/sub type not registered", comp: component("pubsub", "pubsub.kafka"),
			want: `init pub/sub "pubsub" (pubsub.kafka/v1): component type pubsub.kafka/v1 is not implemented by Outrigger`},
		{name: "init timeout", comp: blocking,
			want: `init state store "slow" (state.fake/v1): init did not finish within 20ms (spec.initTimeout)`},
		{name: "init ignores its context", comp: hanging,
			want: `init state store "stuck" (state.fake/v1): init did not finish within 20ms (spec.initTimeout)`},
		{name: "secretKeyRef without auth.secretStore", comp: noStore,
			want: `metadata "password": secretKeyRef "pw" needs auth.secretStore, the name of a secret store component (in self-hosted mode there is no default secret store)`},
		{name: "secret store not loaded", comp: missingStore,
			want: `metadata "password": secretKeyRef "pw": secret store "vault" is not loaded`},
		{name: "secret store failed", comp: failedStore,
			extra: []*daprv1alpha1.Component{ignoring(component("broken", "secretstores.local.file", item("secretsFile", "/nonexistent.json")))},
			want:  `secretKeyRef "pw": secret store "broken" failed to initialise: read secrets file`},
		{name: "secret without the key", comp: missingKey,
			want: `secretKeyRef "pw": secret store "local" has no key "nokey" in that secret`},
		{name: "missing secret", comp: missingSecret,
			want: `secretKeyRef "nope": read from secret store "local": secret "nope" not found`},
		{name: "envRef to the sidecar's variables", comp: component("envs", "state.fake", envItem("token", "DAPR_API_TOKEN")),
			want: `metadata "token": envRef "DAPR_API_TOKEN": the sidecar's DAPR_* and APP_API_TOKEN variables cannot be read by components`},
		{name: "podName outside Kubernetes", comp: component("pod", "state.fake", item("consumerID", "{podName}")),
			want: `metadata "consumerID": the value uses {podName}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, ignore := range []bool{false, true} {
				h := newHarness(t)
				file := secretsFile(t, `{"pw": "x"}`)
				c := tt.comp.DeepCopy()
				c.Spec.IgnoreErrors = ignore
				comps := append([]*daprv1alpha1.Component{component("local", "secretstores.local.file", item("secretsFile", file)), c}, tt.extra...)
				err := h.Load(context.Background(), set(comps...))
				if ignore {
					if err != nil {
						t.Errorf("ignoreErrors: Load = %v, want nil", err)
					}
				} else if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Load error = %v\nwant it to contain %s", err, tt.want)
				}
				var ie *InitError
				if err != nil && (!errors.As(err, &ie) || ie.Name != c.Name) {
					t.Errorf("error does not carry an *InitError for %s: %v", c.Name, err)
				}
				failed := h.Failed()
				i := len(failed) - 1
				if i < 0 || failed[i].Name != c.Name || failed[i].Type != c.Spec.Type || failed[i].Version != "v1" {
					t.Fatalf("Failed() = %+v", failed)
				}
				// The metadata API shows the cause; with the component's identity it reads
				// as the start-up error does.
				f := failed[i]
				if full := (&InitError{Name: f.Name, Type: f.Type, Version: f.Version, Err: errors.New(f.Error)}).Error(); !strings.Contains(full, tt.want) {
					t.Errorf("Failed() cause %q, want %s", f.Error, tt.want)
				}
				if _, _, ok := h.Acquire(c.Name); ok {
					t.Error("a failed component can be acquired")
				}
				// The secret store still loaded; the runtime decides whether to go on.
				if len(h.Components()) != 1 {
					t.Errorf("Components() = %+v", h.Components())
				}
			}
		})
	}
}

func ignoring(c *daprv1alpha1.Component) *daprv1alpha1.Component {
	c.Spec.IgnoreErrors = true
	return c
}

// An instance whose Init returns after its timeout is closed, not leaked.
func TestAbandonedInitIsClosed(t *testing.T) {
	h := newHarness(t)
	c := component("stuck", "state.fake", item("mode", "hang"))
	c.Spec.InitTimeout = "10ms"
	if err := h.Load(context.Background(), set(c)); err == nil {
		t.Fatal("no timeout")
	}
	f := h.fake("stuck")
	close(h.hang)
	deadline := time.Now().Add(5 * time.Second)
	for !f.isClosed() {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned instance was not closed")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAcquireAndClose(t *testing.T) {
	h := newHarness(t)
	custom := component("custom", "state.fake", item("keyPrefix", "shared"))
	if err := h.Load(context.Background(), set(component("default", "state.fake"), custom,
		component("secrets", "secretstores.local.file", item("secretsFile", secretsFile(t, `{}`))))); err != nil {
		t.Fatal(err)
	}
	if names := strings.Join(h.Names(), ","); names != "default,custom" {
		t.Errorf("Names() = %s", names)
	}
	hd, release, ok := h.Acquire("default")
	if !ok || hd.KeyPrefix != "appid" || hd.Store != h.fake("default") {
		t.Errorf("Acquire(default) = %+v, %v", hd, ok)
	}
	hc, releaseCustom, ok := h.Acquire("custom")
	if !ok || hc.KeyPrefix != "shared" {
		t.Errorf("Acquire(custom) = %+v, %v", hc, ok)
	}
	releaseCustom()
	if _, _, ok := h.Acquire("secrets"); ok {
		t.Error("a secret store is acquired as a state store")
	}
	if _, _, ok := h.SecretStores().Acquire("default"); ok {
		t.Error("a state store is acquired as a secret store")
	}
	if _, _, ok := h.Acquire("nope"); ok {
		t.Error("an unknown name is acquired")
	}

	closed := make(chan error, 1)
	go func() { closed <- h.Close(context.Background()) }()
	// Close has begun once the component can no longer be acquired; it must then
	// still be waiting for the call in flight.
	waitFor(t, func() bool {
		_, rel, ok := h.Acquire("custom")
		if ok {
			rel()
		}
		return !ok
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a call was in flight", err)
	default:
	}
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if !h.fake("default").isClosed() || !h.fake("custom").isClosed() {
		t.Error("Close did not close the instances")
	}
	if err := h.Load(context.Background(), set()); err == nil {
		t.Error("Load after Close")
	}
}

func TestApply(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.Load(ctx, set(component("statestore", "state.fake", item("v", "1")))); err != nil {
		t.Fatal(err)
	}
	first := h.fake("statestore")
	_, releaseFirst, _ := h.Acquire("statestore")

	ev := func(typ resources.EventType, c *daprv1alpha1.Component) resources.Event {
		return resources.Event{Kind: resources.KindComponent, Type: typ, Object: c}
	}

	// An update swaps the instance at once and closes the old one when its call ends.
	if err := h.Apply(ctx, ev(resources.Updated, component("statestore", "state.fake", item("v", "2"), item("keyPrefix", "none")))); err != nil {
		t.Fatal(err)
	}
	hd, release, _ := h.Acquire("statestore")
	if hd.Store == first || hd.KeyPrefix != "none" {
		t.Errorf("after the update Acquire = %+v", hd)
	}
	release()
	if first.isClosed() {
		t.Error("the old instance closed while a call was in flight")
	}
	releaseFirst()
	waitFor(t, first.isClosed)

	// A failed update keeps the current instance serving and is reported.
	second := h.fake("statestore")
	err := h.Apply(ctx, ev(resources.Updated, component("statestore", "state.fake", item("mode", "fail"))))
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("failed update: %v", err)
	}
	if hd, release, ok := h.Acquire("statestore"); !ok || hd.Store != second {
		t.Error("the old instance does not serve after a failed update")
	} else {
		release()
	}
	if f := h.Failed(); len(f) != 1 || f[0].Name != "statestore" {
		t.Errorf("Failed() = %+v", f)
	}

	// Added, then Deleted.
	if err := h.Apply(ctx, ev(resources.Added, component("other", "state.fake"))); err != nil {
		t.Fatal(err)
	}
	if names := strings.Join(h.Names(), ","); names != "statestore,other" {
		t.Errorf("Names() = %s", names)
	}
	if err := h.Apply(ctx, ev(resources.Deleted, component("statestore", "state.fake"))); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := h.Acquire("statestore"); ok || len(h.Failed()) != 0 {
		t.Errorf("after delete: acquired %v, failed %+v", ok, h.Failed())
	}
	waitFor(t, second.isClosed)

	// Other kinds are not the component store's business.
	if err := h.Apply(ctx, resources.Event{Kind: resources.KindSubscription, Type: resources.Added}); err != nil {
		t.Error(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(time.Millisecond)
	}
}

// Components initialise in parallel: each of these returns only once all have started.
func TestLoadInitialisesInParallel(t *testing.T) {
	h := newHarness(t)
	var comps []*daprv1alpha1.Component
	for _, n := range []string{"a", "b", "c", "d"} {
		comps = append(comps, component(n, "state.fake", item("mode", "barrier")))
	}
	h.barrier.Add(len(comps))
	if err := h.Load(context.Background(), set(comps...)); err != nil {
		t.Fatal(err)
	}
	if names := strings.Join(h.Names(), ","); names != "a,b,c,d" {
		t.Errorf("Names() = %s, want manifest order", names)
	}
}

// From files to a loaded store, as the sidecar starts: values of every YAML type, a
// secret through local.file, an envRef.
func TestLoadFromManifests(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets.json")
	if err := os.WriteFile(secrets, []byte(`{"redis": {"password": "pw"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	manifest := `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.fake
  version: v1
  initTimeout: 1s
  metadata:
  - name: redisDB
    value: 3
  - name: enableTLS
    value: false
  - name: redisPassword
    secretKeyRef:
      name: redis:password
  - name: redisHost
    envRef: REDIS_HOST
auth:
  secretStore: local
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: local
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - name: secretsFile
    value: ` + secrets + `
`
	if err := os.WriteFile(filepath.Join(dir, "components.yaml"), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := resources.LoadDir([]string{dir}, "myapp")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	h.env["REDIS_HOST"] = "localhost:6379"
	if err := h.Load(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	got := h.fake("statestore").props()
	want := map[string]string{"redisDB": "3", "enableTLS": "false", "redisPassword": "pw", "redisHost": "localhost:6379"}
	if len(got) != len(want) {
		t.Errorf("properties = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
