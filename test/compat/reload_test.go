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

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

// Hot reload in self-hosted mode: the sidecar watches its --resources-path and applies
// each changed file while it serves, without a restart.

// replaceFile writes a resource file as editors and `kubectl`-style tools do: to a
// temporary name in the same directory, then renamed over the old one.
func replaceFile(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func stateComponent(name, typ string, metadata ...string) string {
	s := fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n", name, typ)
	if len(metadata) > 0 {
		s += "  metadata:\n"
		for i := 0; i+1 < len(metadata); i += 2 {
			s += fmt.Sprintf("  - name: %s\n    value: %q\n", metadata[i], metadata[i+1])
		}
	}
	return s
}

func sqliteState(file string) string {
	return stateComponent("statestore", "state.sqlite", "connectionString", file)
}

// pollUntil polls cond every few milliseconds until it holds, or fails at the deadline.
func pollUntil(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not before the deadline", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stateClient makes the state calls of the reload tests with one pooled client.
type stateClient struct {
	http *http.Client
	base string
}

func newStateClient(s *testproc.Sidecar, store string) *stateClient {
	return &stateClient{
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second},
		base: s.URL("/v1.0/state/" + store),
	}
}

func (c *stateClient) save(ctx context.Context, key, value string) error {
	body, _ := json.Marshal([]map[string]string{{"key": key, "value": value}})
	code, resp, err := c.do(ctx, http.MethodPost, c.base, string(body))
	if err != nil {
		return err
	}
	if code != http.StatusNoContent {
		return fmt.Errorf("save %s: %d %s", key, code, resp)
	}
	return nil
}

// get returns the value of key, "" when it is absent.
func (c *stateClient) get(ctx context.Context, key string) (string, error) {
	code, resp, err := c.do(ctx, http.MethodGet, c.base+"/"+key, "")
	if err != nil {
		return "", err
	}
	switch code {
	case http.StatusNoContent:
		return "", nil
	case http.StatusOK:
		var v string
		if err := json.Unmarshal([]byte(resp), &v); err != nil {
			return "", fmt.Errorf("get %s: %s is not a JSON string", key, resp)
		}
		return v, nil
	}
	return "", fmt.Errorf("get %s: %d %s", key, code, resp)
}

func (c *stateClient) do(ctx context.Context, method, url, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// (a) Eight clients save and read without pause while the state store's file is
// rewritten to another store, several times: no call fails, and from each swap on the
// calls reach the new store.
func TestHotReloadSwapsAStateStoreUnderLoad(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(t.TempDir(), "a.db"), filepath.Join(t.TempDir(), "b.db")
	replaceFile(t, dir, "statestore.yaml", stateComponent("statestore", "state.in-memory"))
	s := testproc.Start(t, "reload-load", dir, nil)
	s.WaitHealthy(t)
	c := newStateClient(s, "statestore")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var calls, failures atomic.Int64
	var firstErrs sync.Map
	load, stopLoad := context.WithCancel(ctx)
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
	// sidecar uses. A store seen before still holds its marker: what was written
	// while it served went to it.
	gens := []struct {
		manifest string
		want     string // the marker the store holds when it comes back
	}{
		{sqliteState(a), ""},
		{sqliteState(b), ""},
		{sqliteState(a), "gen-1"},
		{stateComponent("statestore", "state.in-memory"), ""},
		{sqliteState(b), "gen-2"},
		{sqliteState(a), "gen-3"},
	}
	if err := c.save(ctx, "marker", "gen-0"); err != nil {
		t.Fatal(err)
	}
	for i, g := range gens {
		gen := i + 1
		before := calls.Load()
		replaceFile(t, dir, "statestore.yaml", g.manifest)
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
	stopLoad()
	wg.Wait()

	if n := failures.Load(); n > 0 {
		firstErrs.Range(func(w, err any) bool { t.Errorf("worker %v: %v", w, err); return true })
		t.Fatalf("%d of %d calls failed across %d swaps", n, calls.Load(), len(gens))
	}
	t.Logf("%d calls across %d swaps, none failed", calls.Load(), len(gens))

	// New writes land in the store now loaded: a.db, which a fresh sidecar reads.
	if err := c.save(ctx, "after-swaps", "in-a"); err != nil {
		t.Fatal(err)
	}
	fresh := testproc.Start(t, "reload-load", testproc.WriteResources(t, map[string]string{"statestore.yaml": sqliteState(a)}), nil)
	fresh.WaitHealthy(t)
	if v, err := newStateClient(fresh, "statestore").get(ctx, "after-swaps"); err != nil || v != "in-a" {
		t.Errorf("a.db holds %q (%v), want the write made after the swaps", v, err)
	}
}

// metadataView is the part of GET /v1.0/metadata these tests read.
type metadataView struct {
	Components []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"components"`
	FailedComponents []struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Error string `json:"error"`
	} `json:"failedComponents"`
	Subscriptions []struct {
		PubsubName string `json:"pubsubname"`
		Topic      string `json:"topic"`
	} `json:"subscriptions"`
}

func readMetadata(t *testing.T, s *testproc.Sidecar) metadataView {
	t.Helper()
	code, _, body := testproc.Do(t, http.MethodGet, s.URL("/v1.0/metadata"), "")
	if code != http.StatusOK {
		t.Fatalf("metadata: %d %s", code, body)
	}
	var md metadataView
	if err := json.Unmarshal([]byte(body), &md); err != nil {
		t.Fatalf("metadata %s: %v", body, err)
	}
	return md
}

// (b) An update that cannot initialise keeps the instance loaded before, and the
// metadata lists the failure until a good update replaces it. (c) Removing the file
// removes the store: calls get Dapr's not-found error.
func TestHotReloadFailedUpdateAndRemoval(t *testing.T) {
	dir := t.TempDir()
	// A second store, so that the removed one is "not found" rather than "no state
	// store configured".
	replaceFile(t, dir, "other.yaml", stateComponent("other", "state.in-memory"))
	replaceFile(t, dir, "statestore.yaml", sqliteState(filepath.Join(t.TempDir(), "state.db")))
	s := testproc.Start(t, "reload-fail", dir, nil)
	s.WaitHealthy(t)
	c := newStateClient(s, "statestore")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.save(ctx, "kept", "v1"); err != nil {
		t.Fatal(err)
	}

	closed := testproc.FreePort(t) // nothing listens there
	replaceFile(t, dir, "statestore.yaml", stateComponent("statestore", "state.redis",
		"redisHost", fmt.Sprintf("127.0.0.1:%d", closed), "redisMaxRetries", "-1"))
	var md metadataView
	pollUntil(ctx, t, "the failed update is listed", func() bool {
		md = readMetadata(t, s)
		return len(md.FailedComponents) > 0
	})
	if f := md.FailedComponents[0]; f.Name != "statestore" || f.Type != "state.redis" || f.Error == "" {
		t.Errorf("failedComponents = %+v", md.FailedComponents)
	}
	if len(md.Components) != 2 || md.Components[1].Name != "statestore" || md.Components[1].Type != "state.sqlite" {
		t.Errorf("components = %+v, want the sqlite store still loaded", md.Components)
	}
	if v, err := c.get(ctx, "kept"); err != nil || v != "v1" {
		t.Errorf("the loaded store stopped serving: %q %v", v, err)
	}
	if err := c.save(ctx, "kept", "v2"); err != nil {
		t.Errorf("the loaded store stopped serving: %v", err)
	}

	// A good update clears the failure.
	replaceFile(t, dir, "statestore.yaml", stateComponent("statestore", "state.in-memory"))
	pollUntil(ctx, t, "the good update applies", func() bool {
		md = readMetadata(t, s)
		return len(md.FailedComponents) == 0 && len(md.Components) == 2 && md.Components[1].Type == "state.in-memory"
	})

	if err := os.Remove(filepath.Join(dir, "statestore.yaml")); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	pollUntil(ctx, t, "the removed store is not found", func() bool {
		code, _, body = testproc.Do(t, http.MethodGet, s.URL("/v1.0/state/statestore/kept"), "")
		return code != http.StatusNoContent && code != http.StatusOK
	})
	var e struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	if code != http.StatusBadRequest || e.ErrorCode != "ERR_STATE_STORE_NOT_FOUND" || !strings.Contains(e.Message, "statestore") {
		t.Errorf("after the removal: %d %s", code, body)
	}
	if md := readMetadata(t, s); len(md.Components) != 1 || md.Components[0].Name != "other" || len(md.FailedComponents) != 0 {
		t.Errorf("metadata after the removal: %+v", md)
	}
}

// (d) A Subscription file added while the sidecar runs starts delivery to its route.
func TestHotReloadAddsADeclarativeSubscription(t *testing.T) {
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

	dir := t.TempDir()
	replaceFile(t, dir, "pubsub.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	s := testproc.Start(t, "reload-sub", dir, nil, "--app-port", port)
	s.WaitHealthy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if md := readMetadata(t, s); len(md.Subscriptions) != 0 {
		t.Fatalf("subscriptions before the file: %+v", md.Subscriptions)
	}

	replaceFile(t, dir, "subscription.yaml", `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    default: /orders
`)
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
}
