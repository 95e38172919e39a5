package runtime

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/resources"
)

// A Resiliency change applies to the calls that start after it: a 50ms timeout on an
// HTTPEndpoint that answers in 300ms makes the calls fail, and its removal lets them
// succeed again. A Resiliency that does not compile keeps the policies in effect.
func TestHotReloadResiliency(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(300 * time.Millisecond):
			_, _ = io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	dir := t.TempDir()
	writeResource(t, dir, "endpoint.yaml", fmt.Sprintf(
		"apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: payments\nspec:\n  baseUrl: %s\n", slow.URL))
	logs := &logBuffer{t: t}
	rt := newMesh(t).sidecarWith("reload", "", func(rt *Runtime) {
		rt.cfg.ResourcesPaths = []string{dir}
		rt.log = logs.logger()
	})
	answer := func() (int, string) {
		code, _, body := call(t, http.MethodGet, httpURL(rt, "/v1.0/invoke/payments/method/charge"), nil)
		return code, body
	}
	if code, body := answer(); code != http.StatusOK || body != "slow" {
		t.Fatalf("without a policy: %d %s", code, body)
	}

	resiliency := func(timeout string) string {
		return "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: policies\nspec:\n" +
			"  policies:\n    timeouts:\n      fast: " + timeout + "\n" +
			"  targets:\n    apps:\n      payments:\n        timeout: fast\n"
	}
	writeResource(t, dir, "resiliency.yaml", resiliency("50ms"))
	eventually(t, "the timeout applies", func() bool {
		code, body := answer()
		return code != http.StatusOK && strings.Contains(body, "deadline exceeded")
	})

	// A Resiliency that does not load leaves the timeout in effect.
	writeResource(t, dir, "resiliency.yaml", strings.Replace(resiliency("50ms"), "timeout: fast", "timeout: missing", 1))
	eventually(t, "the bad Resiliency is refused", func() bool { return logs.contains("Resources did not reload") })
	if code, body := answer(); code == http.StatusOK {
		t.Fatalf("the timeout was dropped: %d %s", code, body)
	}

	writeResource(t, dir, "resiliency.yaml", resiliency("10s"))
	eventually(t, "the longer timeout applies", func() bool { code, _ := answer(); return code == http.StatusOK })
	removeResource(t, dir, "resiliency.yaml")
	eventually(t, "the removal applies", func() bool { return logs.contains(`"resiliencies"=0`) })
	if code, body := answer(); code != http.StatusOK {
		t.Fatalf("after the removal: %d %s", code, body)
	}
}

// A Resiliency change that does not compile (the loader's checks catch these first in
// files; other sources may not) keeps the policies in effect.
func TestResiliencyChangeThatDoesNotCompile(t *testing.T) {
	rt := New(freeConfig(t, t.TempDir()), logr.Discard())
	good := &daprv1alpha1.Resiliency{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: daprv1alpha1.ResiliencySpec{
		Policies: daprv1alpha1.Policies{Timeouts: map[string]string{"fast": "50ms"}},
		Targets:  daprv1alpha1.Targets{Apps: map[string]daprv1alpha1.EndpointPolicyNames{"b": {Timeout: "fast"}}},
	}}
	if err := rt.live.initResiliency(&resources.Set{Resiliencies: []resources.Resource[*daprv1alpha1.Resiliency]{{Object: good}}}, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	before := rt.live.policies.Load()
	bad := good.DeepCopy()
	bad.Spec.Targets.Apps["b"] = daprv1alpha1.EndpointPolicyNames{Timeout: "missing"}
	rt.applyResource(context.Background(), resources.Event{Kind: resources.KindResiliency, Type: resources.Updated, Object: bad})
	if rt.live.policies.Load() != before || rt.live.resiliencies[0] != good {
		t.Error("a change that does not compile replaced the policies")
	}
	other := &daprv1alpha1.Resiliency{ObjectMeta: metav1.ObjectMeta{Name: "other"}}
	rt.applyResource(context.Background(), resources.Event{Kind: resources.KindResiliency, Type: resources.Added, Object: other})
	if rt.live.policies.Load() == before || len(rt.live.resiliencies) != 2 {
		t.Error("an added Resiliency was not applied")
	}
	rt.applyResource(context.Background(), resources.Event{Kind: resources.KindResiliency, Type: resources.Deleted, Object: good})
	if len(rt.live.resiliencies) != 1 || rt.live.resiliencies[0] != other {
		t.Errorf("after the deletion: %v", rt.live.resiliencies)
	}
}

// A Resiliency that names a policy nobody defines stops the start-up.
func TestResiliencyCompileErrorStopsStartUp(t *testing.T) {
	dir := t.TempDir()
	manifest := "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: broken\nspec:\n" +
		"  targets:\n    apps:\n      b:\n        retry: nowhere\n"
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	rt := New(freeConfig(t, dir), logr.Discard())
	rt.RegistryDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := rt.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `Resiliency "broken"`) || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("Run: %v", err)
	}
}

// Retry `matching` through real sidecars: with httpStatusCodes "503", an app (or an
// HTTPEndpoint) that answers 503 and then 200 is called again with the whole body and
// the caller gets the 200; a 404 is not retried and reaches the caller as it was.
func TestRetryMatchingStatusCodes(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]string{} // path: the body of each call
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := len(got[r.URL.Path]) == 0
		mu.Unlock()
		var body []byte
		if !(first && strings.HasSuffix(r.URL.Path, "/early-flaky")) {
			// The early one answers before it reads anything.
			body, _ = io.ReadAll(r.Body)
		}
		mu.Lock()
		got[r.URL.Path] = append(got[r.URL.Path], string(body))
		mu.Unlock()
		switch {
		case !strings.HasSuffix(r.URL.Path, "flaky"):
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, "no such order")
		case first:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "busy")
		default:
			_, _ = io.WriteString(w, "done")
		}
	}))
	t.Cleanup(app.Close)
	calls := func(path string) []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got[path])
	}

	dir := t.TempDir()
	writeResource(t, dir, "endpoint.yaml", fmt.Sprintf(
		"apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: shop\nspec:\n  baseUrl: %s/shop\n", app.URL))
	writeResource(t, dir, "resiliency.yaml", `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: retry503
spec:
  policies:
    retries:
      only503:
        policy: constant
        duration: 10ms
        maxRetries: 3
        matching:
          httpStatusCodes: "503"
  targets:
    apps:
      b: {retry: only503}
      shop: {retry: only503}
`)
	m := newMesh(t)
	m.sidecar("b", app.URL)
	a := m.sidecarWith("a", "", func(rt *Runtime) { rt.cfg.ResourcesPaths = []string{dir} })

	const order = `{"order":42}`
	// A body larger than one frame between the sidecars streams while the answer comes.
	big := strings.Repeat("x", 256<<10)
	for _, tt := range []struct {
		target, path string // the target's method, and the path the app sees
		body         string
	}{
		{"b", "/flaky", order},
		{"shop", "/shop/flaky", order},
		{"b", "/big-flaky", big},
		{"b", "/early-flaky", big},
	} {
		method := strings.TrimPrefix(tt.path, "/shop")
		code, _, body := call(t, http.MethodPost, httpURL(a, "/v1.0/invoke/"+tt.target+"/method"+method), strings.NewReader(tt.body))
		if code != http.StatusOK || body != "done" {
			t.Errorf("%s%s: %d %q, want 200 done", tt.target, method, code, body)
		}
		want := []string{tt.body, tt.body}
		if strings.HasSuffix(tt.path, "/early-flaky") {
			want[0] = ""
		}
		if seen := calls(tt.path); !slices.Equal(seen, want) {
			var sizes []int
			for _, b := range seen {
				sizes = append(sizes, len(b))
			}
			t.Errorf("%s%s: the app read bodies of %v bytes, want the whole body each time it read", tt.target, method, sizes)
		}
		if tt.body == big {
			continue
		}

		code, _, body = call(t, http.MethodPost, httpURL(a, "/v1.0/invoke/"+tt.target+"/method/missing"), strings.NewReader(order))
		if code != http.StatusNotFound || body != "no such order" {
			t.Errorf("%s: %d %q, want 404 no such order", tt.target, code, body)
		}
		if seen := calls(strings.Replace(tt.path, "flaky", "missing", 1)); !slices.Equal(seen, []string{order}) {
			t.Errorf("%s: the app saw %q, want one call", tt.target, seen)
		}
	}
}
