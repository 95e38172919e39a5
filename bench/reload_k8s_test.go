package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

// BenchmarkHotReloadKubernetes measures, in Kubernetes mode, the time from a write of a
// Component to the API server to the first call that sees the change, over 30 applies
// of each kind, as BenchmarkHotReload does for files:
//   - added: a new state.sqlite Component created, until a save to it succeeds;
//   - changed: the state store's Component updated to another SQLite database, until a
//     read returns the marker kept in that database;
//   - removed: the added Component deleted, until a save to it is refused with
//     ERR_STATE_STORE_NOT_FOUND.
//
// Each time starts before the write request, so it includes the admission webhooks,
// the write to etcd and the watch delivery to the sidecar's informers. The baseline,
// measured on the same writes, is the time until a plain watch of the Components in
// this process receives the change: what any controller would see, and the floor of
// the sidecar's figures. The local control plane is envtest's, started in the
// benchmark. Run with -benchtime=1x.
func BenchmarkHotReloadKubernetes(b *testing.B) {
	testproc.Binary(b) // build outside the timing
	env := testenv.Start(b, validation.SetupWithManager)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := env.Client
	ns := env.Namespace(b, "bench-reload")

	user, err := env.Env.AddUser(envtest.User{Name: "sidecar", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		b.Fatal(err)
	}
	kcFile := filepath.Join(b.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcFile, kubeconfig, 0o600); err != nil {
		b.Fatal(err)
	}

	dbs := b.TempDir()
	sqlite := func(name, file string) *daprv1alpha1.Component {
		raw, _ := json.Marshal(file)
		return &daprv1alpha1.Component{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: daprv1alpha1.ComponentSpec{Type: "state.sqlite", Version: "v1", Metadata: []common.NameValuePair{
				{Name: "connectionString", Value: common.DynamicValue{JSON: apiextensionsv1.JSON{Raw: raw}}},
			}},
		}
	}
	stores := []string{filepath.Join(dbs, "a.db"), filepath.Join(dbs, "b.db")}
	statestore := sqlite("statestore", stores[0])
	if err := c.Create(ctx, statestore); err != nil {
		b.Fatal(err)
	}
	s := testproc.Start(b, "bench-reload-k8s", b.TempDir(),
		[]string{"KUBECONFIG=" + kcFile, "NAMESPACE=" + ns, "POD_NAME=bench-reload-k8s-0"}, "--mode", "kubernetes")
	s.WaitHealthy(b)

	// The baseline watch records when each change reaches this process.
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	w, err := wc.Watch(ctx, &daprv1alpha1.ComponentList{}, client.InNamespace(ns))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	type seen struct {
		typ  watch.EventType
		name string
		rv   string
		at   time.Time
	}
	// Large enough that the reader never blocks during the run: 3 events per apply.
	watched := make(chan seen, 4*reloadApplies*b.N+64)
	go func() {
		for ev := range w.ResultChan() {
			at := time.Now()
			if o, ok := ev.Object.(*daprv1alpha1.Component); ok {
				watched <- seen{typ: ev.Type, name: o.Name, rv: o.ResourceVersion, at: at}
			}
		}
	}()
	// watchedAfter takes the watch's events in order until the one of this write.
	watchedAfter := func(typ watch.EventType, name, rv string, start time.Time) time.Duration {
		timeout := time.After(30 * time.Second)
		for {
			select {
			case e := <-watched:
				if e.typ == typ && e.name == name && (rv == "" || e.rv == rv) {
					return e.at.Sub(start)
				}
			case <-timeout:
				b.Fatalf("the watch did not see %s %s (resourceVersion %s) within 30s", typ, name, rv)
			}
		}
	}

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, s.URL(path), strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	save := func(store, key, value string) (int, string) {
		return do(http.MethodPost, "/v1.0/state/"+store, fmt.Sprintf(`[{"key":%q,"value":%q}]`, key, value))
	}
	marker := func() string {
		code, body := do(http.MethodGet, "/v1.0/state/statestore/marker", "")
		if code != http.StatusOK {
			return ""
		}
		return strings.Trim(body, `"`)
	}
	// until polls cond every 200µs and returns how long after start it held.
	until := func(what string, start time.Time, cond func() bool) time.Duration {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for !cond() {
			select {
			case <-ctx.Done():
				b.Fatalf("%s: not within 30s:\n%s", what, s.Output())
			case <-time.After(200 * time.Microsecond):
			}
		}
		return time.Since(start)
	}
	// update writes the state store's Component with its database switched to file;
	// only this benchmark writes it, so the copy it holds is current.
	update := func(file string) (start time.Time) {
		statestore.Spec = sqlite("statestore", file).Spec
		start = time.Now()
		if err := c.Update(ctx, statestore); err != nil {
			b.Fatal(err)
		}
		return start
	}

	// Each database holds a marker naming it, so that a read tells which one is in use.
	if code, body := save("statestore", "marker", "store-0"); code != http.StatusNoContent {
		b.Fatalf("save: %d %s", code, body)
	}
	start := update(stores[1])
	until("the first switch", start, func() bool { return marker() == "" })
	watchedAfter(watch.Modified, "statestore", statestore.ResourceVersion, start)
	current := 1
	if code, body := save("statestore", "marker", "store-1"); code != http.StatusNoContent {
		b.Fatalf("save: %d %s", code, body)
	}

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var added, changed, removed, baseline []time.Duration
		for j := 0; j < reloadApplies; j++ {
			extra := sqlite("extra", filepath.Join(dbs, "extra.db"))
			start := time.Now()
			if err := c.Create(ctx, extra); err != nil {
				b.Fatal(err)
			}
			added = append(added, until("added", start, func() bool {
				code, _ := save("extra", "k", "v")
				return code == http.StatusNoContent
			}))
			baseline = append(baseline, watchedAfter(watch.Added, "extra", extra.ResourceVersion, start))

			current = 1 - current
			want := fmt.Sprintf("store-%d", current)
			start = update(stores[current])
			changed = append(changed, until("changed", start, func() bool { return marker() == want }))
			baseline = append(baseline, watchedAfter(watch.Modified, "statestore", statestore.ResourceVersion, start))

			start = time.Now()
			if err := c.Delete(ctx, extra); err != nil {
				b.Fatal(err)
			}
			removed = append(removed, until("removed", start, func() bool {
				code, body := save("extra", "k", "v")
				return code == http.StatusBadRequest && strings.Contains(body, "ERR_STATE_STORE_NOT_FOUND")
			}))
			baseline = append(baseline, watchedAfter(watch.Deleted, "extra", "", start))
		}
		for _, m := range []struct {
			name  string
			times []time.Duration
		}{{"added", added}, {"changed", changed}, {"removed", removed}, {"watch", baseline}} {
			r := loadResult{latencies: m.times}
			sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
			b.ReportMetric(ms(r.percentile(0.50)), m.name+"_p50_ms")
			b.ReportMetric(ms(r.percentile(0.99)), m.name+"_p99_ms")
		}
	}
}
