package runtime

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// writeResource writes a manifest into a resources directory the way editors do:
// to a temporary name, then renamed over the file.
func writeResource(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func removeResource(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// logBuffer keeps a sidecar's log lines for the test to wait on, and passes them on.
type logBuffer struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		b.lines = append(b.lines, prefix+" "+args)
		b.mu.Unlock()
		b.t.Log(prefix, args)
	}, funcr.Options{})
}

func (b *logBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// reloadingSidecar starts a sidecar on the resources directory dir.
func reloadingSidecar(t *testing.T, m *mesh, appID, appURL, dir string, extra ...string) *Runtime {
	t.Helper()
	return m.sidecarWith(appID, appURL, func(rt *Runtime) { rt.cfg.ResourcesPaths = []string{dir} }, extra...)
}

func metadataOf(t *testing.T, rt *Runtime) string {
	t.Helper()
	_, _, md := call(t, http.MethodGet, httpURL(rt, "/v1.0/metadata"), nil)
	return md
}

const memoryState = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
`

func TestHotReloadComponents(t *testing.T) {
	dir := t.TempDir()
	// With no state store at all the error would be ERR_STATE_STORE_NOT_CONFIGURED.
	writeResource(t, dir, "other.yaml", strings.Replace(memoryState, "statestore", "other", 1))
	rt := reloadingSidecar(t, newMesh(t), "reload", "", dir)
	save := func() (int, string) {
		code, _, body := call(t, http.MethodPost, httpURL(rt, "/v1.0/state/statestore"), strings.NewReader(`[{"key":"k","value":1}]`))
		return code, body
	}
	if code, body := save(); code != http.StatusBadRequest || !strings.Contains(body, "ERR_STATE_STORE_NOT_FOUND") {
		t.Fatalf("before the file: %d %s", code, body)
	}

	writeResource(t, dir, "statestore.yaml", memoryState)
	eventually(t, "the added store serves", func() bool { code, _ := save(); return code == http.StatusNoContent })
	if md := metadataOf(t, rt); !strings.Contains(md, `"name":"statestore","type":"state.in-memory"`) {
		t.Errorf("metadata after the add: %s", md)
	}

	// An update that cannot initialise keeps the loaded instance and is listed.
	writeResource(t, dir, "statestore.yaml", strings.Replace(memoryState, "state.in-memory", "state.nonexistent", 1))
	eventually(t, "the failure is listed", func() bool {
		return strings.Contains(metadataOf(t, rt), `"failedComponents":[{"name":"statestore"`)
	})
	if code, body := save(); code != http.StatusNoContent {
		t.Errorf("the loaded instance stopped serving: %d %s", code, body)
	}

	removeResource(t, dir, "statestore.yaml")
	eventually(t, "the removed store is gone", func() bool {
		code, body := save()
		return code == http.StatusBadRequest && strings.Contains(body, "ERR_STATE_STORE_NOT_FOUND")
	})
	if md := metadataOf(t, rt); strings.Contains(md, `"statestore"`) {
		t.Errorf("metadata after the removal: %s", md)
	}
}

func TestHotReloadHTTPEndpoints(t *testing.T) {
	server := func(answer string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, answer) }))
		t.Cleanup(s.Close)
		return s
	}
	one, two := server("one"), server("two")
	endpoint := func(url string) string {
		return fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: payments\nspec:\n  baseUrl: %s\n", url)
	}
	dir := t.TempDir()
	rt := reloadingSidecar(t, newMesh(t), "reload", "", dir)
	answer := func() string {
		code, _, body := call(t, http.MethodGet, httpURL(rt, "/v1.0/invoke/payments/method/charge"), nil)
		if code != http.StatusOK {
			return fmt.Sprint(code)
		}
		return body
	}

	writeResource(t, dir, "endpoint.yaml", endpoint(one.URL))
	eventually(t, "the added endpoint answers", func() bool { return answer() == "one" })
	if md := metadataOf(t, rt); !strings.Contains(md, `"httpEndpoints":[{"name":"payments"}]`) {
		t.Errorf("metadata %s", md)
	}
	writeResource(t, dir, "endpoint.yaml", endpoint(two.URL))
	eventually(t, "the changed endpoint answers", func() bool { return answer() == "two" })
	removeResource(t, dir, "endpoint.yaml")
	eventually(t, "the endpoint is gone from the metadata", func() bool {
		return !strings.Contains(metadataOf(t, rt), "payments")
	})
	if got := answer(); got == "two" {
		t.Error("a removed endpoint still answers")
	}
}

func TestHotReloadAccessControl(t *testing.T) {
	config := func(action string) string {
		return "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\nspec:\n" +
			"  accessControl:\n    defaultAction: " + action + "\n    trustDomain: public\n"
	}
	configDir := t.TempDir()
	configFile := filepath.Join(configDir, "config.yaml")
	writeResource(t, configDir, "config.yaml", config("allow"))
	logs := &logBuffer{t: t}
	m := newMesh(t)
	m.sidecarWith("b", echoApp(t).URL, func(rt *Runtime) { rt.log = logs.logger() }, "--config", configFile)
	a := m.sidecar("a", "")
	status := func() int {
		code, _, _ := call(t, http.MethodPost, httpURL(a, "/v1.0/invoke/b/method/orders"), nil)
		return code
	}
	if code := status(); code != http.StatusCreated {
		t.Fatalf("allowed call: %d", code)
	}
	writeResource(t, configDir, "config.yaml", config("deny"))
	eventually(t, "the call is denied", func() bool { return status() == http.StatusForbidden })

	// A file that does not load, then one without a Configuration, keep the policy in
	// effect; the next good Configuration applies.
	writeResource(t, configDir, "config.yaml", "kind: [")
	eventually(t, "the reload fails", func() bool { return logs.contains("Resources did not reload") })
	writeResource(t, configDir, "config.yaml", "# emptied\n")
	eventually(t, "the emptied file is refused", func() bool { return logs.contains("must hold exactly one Configuration") })
	if code := status(); code != http.StatusForbidden {
		t.Fatalf("after an emptied config file: %d", code)
	}
	writeResource(t, configDir, "config.yaml", config("allow"))
	eventually(t, "the call is allowed again", func() bool { return status() == http.StatusCreated })
}

func TestHotReloadSubscriptions(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/subscribe" {
			_, _ = io.WriteString(w, "[]")
			return
		}
		mu.Lock()
		got[r.URL.Path]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(app.Close)
	delivered := func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return got[path]
	}
	subscription := func(route string) string {
		return "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: orders\nspec:\n" +
			"  pubsubname: pubsub\n  topic: orders\n  routes:\n    default: " + route + "\n"
	}
	dir := t.TempDir()
	writeResource(t, dir, "pubsub.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	rt := reloadingSidecar(t, newMesh(t), "reload", app.URL, dir)
	publish := func() {
		if code, _, body := call(t, http.MethodPost, httpURL(rt, "/v1.0/publish/pubsub/orders"), strings.NewReader(`{"n":1}`),
			"Content-Type", "application/json"); code != http.StatusNoContent {
			t.Fatalf("publish: %d %s", code, body)
		}
	}

	writeResource(t, dir, "subscription.yaml", subscription("/orders"))
	eventually(t, "the subscription is listed", func() bool {
		return strings.Contains(metadataOf(t, rt), `"topic":"orders"`)
	})
	// The in-memory broker drops what nobody subscribes to, so publish until the
	// subscription is in force.
	eventually(t, "delivery to /orders", func() bool { publish(); return delivered("/orders") > 0 })

	writeResource(t, dir, "subscription.yaml", subscription("/v2/orders"))
	eventually(t, "delivery to the new route", func() bool { publish(); return delivered("/v2/orders") > 0 })

	removeResource(t, dir, "subscription.yaml")
	eventually(t, "the subscription is gone", func() bool {
		return !strings.Contains(metadataOf(t, rt), `"topic":"orders"`)
	})
}
