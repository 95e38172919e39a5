package resources

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
)

// component is a Component manifest; scopes, when given, are listed.
func component(name, typ, value string, scopes ...string) string {
	s := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: %s
  version: v1
  metadata:
  - name: value
    value: %q
`, name, typ, value)
	if len(scopes) > 0 {
		s += "scopes:\n"
		for _, sc := range scopes {
			s += "- " + sc + "\n"
		}
	}
	return s
}

const subscription = `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    default: /orders
`

// reload is what one reload of a Watch reported.
type reload struct {
	events []Event
	err    error
}

// watching is a running Watch whose reloads the test reads one by one.
type watching struct {
	t       *testing.T
	ctx     context.Context
	events  chan Event
	reloads chan reload
	done    chan error
	stop    context.CancelFunc
}

// startWatch runs d.Watch (after a Load, unless noLoad) and returns once the paths
// are watched. Every wait is bounded by the test's deadline.
func startWatch(t *testing.T, d *Dir, noLoad bool) *watching {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if d.Debounce == 0 {
		// Longer than the default so that a slow test machine never splits one write
		// of a test into two reloads; no assertion depends on it.
		d.Debounce = 50 * time.Millisecond
	}
	w := &watching{t: t, ctx: ctx, events: make(chan Event, 64), reloads: make(chan reload, 64), done: make(chan error, 1)}
	d.reloaded = func(evs []Event, err error) {
		select {
		case w.reloads <- reload{evs, err}:
		case <-ctx.Done():
		}
	}
	if !noLoad {
		if _, err := d.Load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	watchCtx, stop := context.WithCancel(ctx)
	w.stop = stop
	go func() { w.done <- d.Watch(watchCtx, w.events) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-w.done:
		case <-ctx.Done():
			t.Error("Watch did not return after its context ended")
		}
	})
	// The first reload comes once every path is watched.
	if r := w.next(); r.err != nil || len(r.events) != 0 {
		t.Fatalf("first reload: %v %s", r.err, describe(r.events))
	}
	return w
}

// next waits for the next reload and checks that its events were sent, in order.
func (w *watching) next() reload {
	w.t.Helper()
	select {
	case r := <-w.reloads:
		for _, want := range r.events {
			select {
			case got := <-w.events:
				if got.Kind != want.Kind || got.Type != want.Type || got.Object != want.Object {
					w.t.Fatalf("sent %s, reported %s", describe([]Event{got}), describe([]Event{want}))
				}
			default:
				w.t.Fatalf("reported %s, which was not sent", describe([]Event{want}))
			}
		}
		return r
	case err := <-w.done:
		w.t.Fatalf("Watch returned: %v", err)
	case <-w.ctx.Done():
		w.t.Fatal("no reload before the deadline")
	}
	return reload{}
}

// expect reads reloads until they have sent as many events as want, skipping reloads
// that sent none (a write seen in two parts), and compares them.
func (w *watching) expect(want ...string) []Event {
	w.t.Helper()
	var got []Event
	for len(got) < len(want) {
		r := w.next()
		if r.err != nil {
			w.t.Fatalf("reload failed: %v", r.err)
		}
		got = append(got, r.events...)
	}
	if g, wnt := describe(got), strings.Join(want, ", "); g != wnt {
		w.t.Fatalf("events = %s, want %s", g, wnt)
	}
	return got
}

// expectQuiet waits for one reload and checks that it sent nothing.
func (w *watching) expectQuiet() {
	w.t.Helper()
	if r := w.next(); r.err != nil || len(r.events) > 0 {
		w.t.Fatalf("reload after a change of nothing: %v, events %s", r.err, describe(r.events))
	}
}

// expectFailure waits for a failed reload, skipping ones that sent nothing, and
// returns its error.
func (w *watching) expectFailure() error {
	w.t.Helper()
	for {
		r := w.next()
		if len(r.events) > 0 {
			w.t.Fatalf("events %s, want a failed reload", describe(r.events))
		}
		if r.err != nil {
			return r.err
		}
	}
}

func describe(evs []Event) string {
	var parts []string
	for _, ev := range evs {
		parts = append(parts, fmt.Sprintf("%s %s/%s", ev.Type, ev.Kind, ev.Object.GetName()))
	}
	return strings.Join(parts, ", ")
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func valueOf(t *testing.T, ev Event) string {
	t.Helper()
	c, ok := ev.Object.(*daprv1alpha1.Component)
	if !ok || len(c.Spec.Metadata) == 0 {
		t.Fatalf("event object %T has no metadata", ev.Object)
	}
	return c.Spec.Metadata[0].Value.String()
}

func TestWatchAddEditTouchDelete(t *testing.T) {
	dir := writeFiles(t, map[string]string{"statestore.yaml": component("statestore", "state.in-memory", "one")})
	w := startWatch(t, &Dir{Paths: []string{dir}, AppID: "app"}, false)
	state := filepath.Join(dir, "statestore.yaml")

	write(t, filepath.Join(dir, "pubsub.yaml"), component("pubsub", "pubsub.in-memory", "x"))
	w.expect("Added Component/pubsub")

	write(t, state, component("statestore", "state.in-memory", "two"))
	if ev := w.expect("Updated Component/statestore")[0]; valueOf(t, ev) != "two" || ev.Origin.File != state {
		t.Errorf("updated object: value %s, origin %v", valueOf(t, ev), ev.Origin)
	}

	// A touch, the same content written again, and the same resource moved down by a
	// comment change nothing.
	now := time.Now()
	if err := os.Chtimes(state, now, now); err != nil {
		t.Fatal(err)
	}
	w.expectQuiet()
	write(t, state, component("statestore", "state.in-memory", "two"))
	w.expectQuiet()
	write(t, state, "# the state store\n\n"+component("statestore", "state.in-memory", "two"))
	w.expectQuiet()

	// A file that is not YAML is not watched: the next reload is the deletion's.
	write(t, filepath.Join(dir, "notes.txt"), "not a manifest")
	if err := os.Remove(filepath.Join(dir, "pubsub.yaml")); err != nil {
		t.Fatal(err)
	}
	if ev := w.expect("Deleted Component/pubsub")[0]; valueOf(t, ev) != "x" {
		t.Errorf("a deletion carries the last known object, got value %s", valueOf(t, ev))
	}

	// Two resources in one file, one of them edited: only that one is sent.
	write(t, state, component("statestore", "state.in-memory", "two")+"---\n"+subscription)
	w.expect("Added Subscription/orders")
	write(t, state, component("statestore", "state.in-memory", "three")+"---\n"+subscription)
	w.expect("Updated Component/statestore")
}

func TestWatchKeepsTheLastGoodSetWhileAFileIsMalformed(t *testing.T) {
	dir := writeFiles(t, map[string]string{"statestore.yaml": component("statestore", "state.in-memory", "one")})
	w := startWatch(t, &Dir{Paths: []string{dir}, AppID: "app"}, false)
	state := filepath.Join(dir, "statestore.yaml")

	write(t, state, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: [statestore\n")
	err := w.expectFailure()
	if !strings.Contains(err.Error(), state+":") || !strings.Contains(err.Error(), "malformed YAML") {
		t.Errorf("error does not place the problem: %v", err)
	}
	// Invalid, though well-formed: a field problem names its line.
	write(t, state, strings.Replace(component("statestore", "state.in-memory", "one"), "  type: state.in-memory\n", "", 1))
	if err := w.expectFailure(); !strings.Contains(err.Error(), state+":5:") {
		t.Errorf("error does not name the line: %v", err)
	}

	// Fixed back to what was loaded: nothing changed since the last good set.
	write(t, state, component("statestore", "state.in-memory", "one"))
	w.expectQuiet()

	write(t, state, "kind: [")
	w.expectFailure()
	write(t, state, component("statestore", "state.in-memory", "two"))
	if ev := w.expect("Updated Component/statestore")[0]; valueOf(t, ev) != "two" {
		t.Errorf("value %s", valueOf(t, ev))
	}
}

func TestWatchRenames(t *testing.T) {
	dir := writeFiles(t, map[string]string{"statestore.yaml": component("statestore", "state.in-memory", "one")})
	w := startWatch(t, &Dir{Paths: []string{dir}, AppID: "app"}, false)
	state := filepath.Join(dir, "statestore.yaml")

	// An atomic write: a temporary file next to the target, renamed over it.
	tmp := filepath.Join(dir, ".statestore.yaml.tmp-123")
	write(t, tmp, component("statestore", "state.in-memory", "two"))
	if err := os.Rename(tmp, state); err != nil {
		t.Fatal(err)
	}
	if ev := w.expect("Updated Component/statestore")[0]; valueOf(t, ev) != "two" {
		t.Errorf("value %s", valueOf(t, ev))
	}

	// A file written elsewhere and moved in.
	elsewhere := filepath.Join(t.TempDir(), "pubsub.yaml")
	write(t, elsewhere, component("pubsub", "pubsub.in-memory", "x"))
	if err := os.Rename(elsewhere, filepath.Join(dir, "pubsub.yaml")); err != nil {
		t.Fatal(err)
	}
	w.expect("Added Component/pubsub")

	// An editor that keeps a backup: the original is renamed away, then written anew.
	if err := os.Rename(state, state+"~"); err != nil {
		t.Fatal(err)
	}
	write(t, state, component("statestore", "state.in-memory", "three"))
	got := w.expect("Updated Component/statestore")
	if valueOf(t, got[0]) != "three" {
		t.Errorf("value %s", valueOf(t, got[0]))
	}

	// Renamed to a name that is not YAML: the resource is gone.
	if err := os.Rename(filepath.Join(dir, "pubsub.yaml"), filepath.Join(dir, "pubsub.yaml.disabled")); err != nil {
		t.Fatal(err)
	}
	w.expect("Deleted Component/pubsub")
}

func TestWatchScopeChangesAddAndDelete(t *testing.T) {
	dir := writeFiles(t, map[string]string{"statestore.yaml": component("statestore", "state.in-memory", "one", "app")})
	w := startWatch(t, &Dir{Paths: []string{dir}, AppID: "app"}, false)
	state := filepath.Join(dir, "statestore.yaml")

	write(t, state, component("statestore", "state.in-memory", "one", "other"))
	w.expect("Deleted Component/statestore")
	write(t, state, component("statestore", "state.in-memory", "one", "other", "app"))
	w.expect("Added Component/statestore")
	// A scope change that keeps the app in scope is an update.
	write(t, state, component("statestore", "state.in-memory", "one"))
	w.expect("Updated Component/statestore")
}

func TestWatchAFilePath(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"config.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\nspec: {}\n",
	})
	config := filepath.Join(dir, "config.yaml")
	w := startWatch(t, &Dir{Paths: []string{config}, AppID: "app"}, false)

	// Another file of the directory is not a resources path.
	write(t, filepath.Join(dir, "statestore.yaml"), component("statestore", "state.in-memory", "one"))
	write(t, config, "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\n"+
		"spec:\n  accessControl:\n    defaultAction: deny\n")
	ev := w.expect("Updated Configuration/appconfig")[0]
	if c := ev.Object.(*daprv1alpha1.Configuration); c.Spec.AccessControl == nil || c.Spec.AccessControl.DefaultAction != "deny" {
		t.Errorf("configuration = %+v", c.Spec)
	}
}

func TestWatchWithoutLoadStartsFromTheFirstReload(t *testing.T) {
	dir := writeFiles(t, map[string]string{"statestore.yaml": component("statestore", "state.in-memory", "one")})
	w := startWatch(t, &Dir{Paths: []string{dir}, AppID: "app"}, true)
	write(t, filepath.Join(dir, "statestore.yaml"), component("statestore", "state.in-memory", "two"))
	w.expect("Updated Component/statestore")
}

func TestWatchCatchesUpWithChangesMadeBeforeItStarted(t *testing.T) {
	dir := writeFiles(t, map[string]string{"statestore.yaml": component("statestore", "state.in-memory", "one")})
	d := &Dir{Paths: []string{dir}, AppID: "app"}
	if _, err := d.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "statestore.yaml"), component("statestore", "state.in-memory", "two"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events := make(chan Event, 8)
	done := make(chan error, 1)
	go func() { done <- d.Watch(ctx, events) }()
	select {
	case ev := <-events:
		if ev.Type != Updated || valueOf(t, ev) != "two" {
			t.Errorf("event %s value %s", describe([]Event{ev}), valueOf(t, ev))
		}
	case <-ctx.Done():
		t.Fatal("no event for the change made between Load and Watch")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch returned %v after its context ended, want nil", err)
	}
}

func TestDiffSets(t *testing.T) {
	comp := func(name, typ, value string, line int) Resource[*daprv1alpha1.Component] {
		set, err := LoadDir([]string{writeFiles(t, map[string]string{"c.yaml": component(name, typ, value)})}, "app")
		if err != nil {
			t.Fatal(err)
		}
		r := set.Components[0]
		r.Origin.Line = line
		return r
	}
	sub := Resource[*daprv2alpha1.Subscription]{Object: &daprv2alpha1.Subscription{}}
	sub.Object.Name = "orders"
	endpoint := Resource[*daprv1alpha1.HTTPEndpoint]{Object: &daprv1alpha1.HTTPEndpoint{}}
	endpoint.Object.Name = "external"

	old := &Set{
		Components:    []Resource[*daprv1alpha1.Component]{comp("a", "state.redis", "1", 1), comp("gone", "state.redis", "1", 5), comp("vault", "secretstores.local.env", "1", 9)},
		Subscriptions: []Resource[*daprv2alpha1.Subscription]{sub},
	}
	cur := &Set{
		Components: []Resource[*daprv1alpha1.Component]{
			comp("a", "state.redis", "1", 40), // moved, not changed
			comp("new", "state.redis", "1", 1),
			comp("vault", "secretstores.local.env", "2", 9),
			comp("files", "secretstores.local.file", "1", 12),
		},
		HTTPEndpoints: []Resource[*daprv1alpha1.HTTPEndpoint]{endpoint},
	}
	got := describe(diffSets(old, cur))
	want := "Deleted Subscription/orders, Deleted Component/gone, " +
		"Updated Component/vault, Added Component/files, Added Component/new, Added HTTPEndpoint/external"
	if got != want {
		t.Errorf("diff =\n%s\nwant\n%s", got, want)
	}
	if evs := diffSets(cur, cur); len(evs) != 0 {
		t.Errorf("a set against itself: %s", describe(evs))
	}
	if evs := diffSets(&Set{}, &Set{}); len(evs) != 0 {
		t.Errorf("empty sets: %s", describe(evs))
	}
}
