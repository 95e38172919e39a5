package compat

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

func mdValue(name, value string) common.NameValuePair {
	raw, _ := json.Marshal(value)
	return common.NameValuePair{Name: name, Value: common.DynamicValue{JSON: apiextensionsv1.JSON{Raw: raw}}}
}

// A sidecar in --mode kubernetes reads its components from the API server, resolves a
// secretKeyRef through the built-in kubernetes secret store, applies changes to the
// Component resources without a restart, and reports what it loaded as Events.
func TestKubernetesModeSidecar(t *testing.T) {
	// The operator's webhooks are served, as the API server calls them on every write.
	env := testenv.Start(t, validation.SetupWithManager)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ns := env.Namespace(t, "k8smode")
	c := env.Client

	user, err := env.Env.AddUser(envtest.User{Name: "sidecar", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcFile := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcFile, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	dbA := filepath.Join(t.TempDir(), "a.db")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, StringData: map[string]string{"path": dbA}}))
	store := &daprv1alpha1.Component{
		ObjectMeta: metav1.ObjectMeta{Name: "statestore", Namespace: ns},
		Spec: daprv1alpha1.ComponentSpec{Type: "state.sqlite", Version: "v1", Metadata: []common.NameValuePair{
			{Name: "connectionString", SecretKeyRef: common.SecretKeyRef{Name: "db", Key: "path"}},
		}},
	}
	must(c.Create(ctx, store))
	other := &daprv1alpha1.Component{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: ns},
		Spec:       daprv1alpha1.ComponentSpec{Type: "state.in-memory", Version: "v1"},
		Scoped:     common.Scoped{Scopes: []string{"another-app"}},
	}
	must(c.Create(ctx, other))

	// A component whose Secret does not exist yet fails, is reported, and loads once the
	// Secret appears; a change of the Secret gives it a new instance.
	late := &daprv1alpha1.Component{
		ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: ns},
		Spec: daprv1alpha1.ComponentSpec{Type: "state.sqlite", Version: "v1", IgnoreErrors: true, Metadata: []common.NameValuePair{
			{Name: "connectionString", SecretKeyRef: common.SecretKeyRef{Name: "late-db", Key: "path"}},
		}},
	}
	must(c.Create(ctx, late))

	sc := testproc.Start(t, "k8sapp", t.TempDir(), []string{"KUBECONFIG=" + kcFile, "NAMESPACE=" + ns, "POD_NAME=k8sapp-0"},
		"--mode", "kubernetes")
	sc.WaitHealthy(t)

	code, _, body := testproc.Do(t, http.MethodPost, sc.URL("/v1.0/state/statestore"), `[{"key":"k","value":"one"}]`, "Content-Type", "application/json")
	if code != http.StatusNoContent {
		t.Fatalf("save: %d %s", code, body)
	}
	if _, err := os.Stat(dbA); err != nil {
		t.Fatalf("the secretKeyRef did not resolve to the SQLite file: %v", err)
	}
	// The component scoped to another app is not loaded here.
	code, _, body = testproc.Do(t, http.MethodGet, sc.URL("/v1.0/state/elsewhere/k"), "")
	if code != http.StatusBadRequest || !strings.Contains(body, "ERR_STATE_STORE_NOT_FOUND") {
		t.Errorf("scoped-out component: %d %s", code, body)
	}

	code, _, body = testproc.Do(t, http.MethodGet, sc.URL("/v1.0/metadata"), "")
	if !strings.Contains(body, `"failedComponents":[{"name":"late"`) {
		t.Errorf("the component without its Secret is not listed as failed: %s", body)
	}
	lateA, lateB := filepath.Join(t.TempDir(), "late-a.db"), filepath.Join(t.TempDir(), "late-b.db")
	lateSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "late-db", Namespace: ns}, StringData: map[string]string{"path": lateA}}
	must(c.Create(ctx, lateSecret))
	waitFor(ctx, t, "the late component to load once its Secret exists", func() bool {
		code, _, _ := testproc.Do(t, http.MethodPost, sc.URL("/v1.0/state/late"), `[{"key":"k","value":1}]`, "Content-Type", "application/json")
		return code == http.StatusNoContent
	})
	if _, err := os.Stat(lateA); err != nil {
		t.Errorf("the late component did not open the file its Secret names: %v", err)
	}
	must(c.Get(ctx, client.ObjectKeyFromObject(lateSecret), lateSecret))
	lateSecret.Data = map[string][]byte{"path": []byte(lateB)}
	must(c.Update(ctx, lateSecret))
	waitFor(ctx, t, "a new instance on the changed Secret", func() bool {
		_, err := os.Stat(lateB)
		return err == nil
	})

	// Switch the store to in-memory through the API server: the key written before is
	// gone from the new store, with no restart.
	must(c.Get(ctx, client.ObjectKeyFromObject(store), store))
	store.Spec.Type, store.Spec.Metadata = "state.in-memory", nil
	must(c.Update(ctx, store))
	waitFor(ctx, t, "the switch to state.in-memory", func() bool {
		code, _, body := testproc.Do(t, http.MethodGet, sc.URL("/v1.0/metadata"), "")
		return code == http.StatusOK && strings.Contains(body, `"type":"state.in-memory"`)
	})
	code, _, body = testproc.Do(t, http.MethodGet, sc.URL("/v1.0/state/statestore/k"), "")
	if code != http.StatusNoContent {
		t.Errorf("after the switch the old key should be gone: %d %s", code, body)
	}

	// The sidecar reported its loads on the Component.
	waitFor(ctx, t, "a ComponentLoaded event", func() bool {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "statestore" && e.Reason == "ComponentLoaded" {
				return true
			}
		}
		return false
	})

	// Deleting the Component removes it.
	must(c.Delete(ctx, store))
	waitFor(ctx, t, "the removal", func() bool {
		code, _, body := testproc.Do(t, http.MethodGet, sc.URL("/v1.0/state/statestore/k"), "")
		return code != http.StatusNoContent && strings.Contains(body, "ERR_STATE_STORE")
	})
}

func waitFor(ctx context.Context, t *testing.T, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
