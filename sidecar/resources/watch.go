package resources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

// DefaultDebounce is the quiet period after a change to the resources paths before
// Watch reloads them, and so the floor of every hot reload's latency. One save is a
// burst of events microseconds apart (a plain write truncates then writes; an editor
// may rename the old file away and write a new one), and copying several files takes
// a few milliseconds. Reading in the middle of such a burst would see a file empty or
// missing, and briefly remove what it holds. The gaps only grow when the writer is
// preempted between two system calls, for a scheduler time slice of a few
// milliseconds on a busy machine: 10 ms outlasts two or three of them, yet keeps a
// change well ahead of Dapr's (15 to 20 ms to add or remove a component, 120 to
// 320 ms to change one) and far below what a person notices.
const DefaultDebounce = 10 * time.Millisecond

// maxDebounce bounds how long a stream of changes that never pauses (a file written
// slowly) holds the reload back.
const maxDebounce = time.Second

// Watch sends an Event for each resource added, changed or removed since the last Load
// (or, without one, since Watch started), until ctx ends; then it returns nil. It
// watches the files directly in every path with fsnotify, so that a file written in
// place, written to a temporary name and renamed over (as editors and atomic writers
// do), created, renamed or removed is noticed. After each burst of changes has been
// quiet for Debounce it reloads every path with Load's rules and compares the result
// with the last good set, by kind and name:
//   - Added and Deleted for resources that appeared or went (a resource whose scopes
//     no longer include this app goes, so it is Deleted);
//   - Updated only when the resource itself changed: rewriting a file with the same
//     content, or moving a resource to another file or line, sends nothing.
//
// A reload that fails (a file saved half-way, malformed YAML, a duplicate name) sends
// nothing and logs the error with its file and line; the last good set stays, and the
// next successful reload is compared with it. Deletions come first, Subscriptions
// before the Components they use, then additions and updates, secret stores before
// the other Components and Components before what uses them. Run one Watch at a time.
//
// A resources path that is removed and created again is not watched again until the
// sidecar restarts.
func (d *Dir) Watch(ctx context.Context, events chan<- Event) error {
	log := d.Log
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch resources paths: %w", err)
	}
	defer w.Close()
	m, err := d.watchPaths(w)
	if err != nil {
		return err
	}
	// A change made between Load and the watches being added has sent no fsnotify
	// event: compare once now.
	if err := d.reload(ctx, events, log); err != nil {
		return nil
	}

	debounce := d.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	pending := false
	var first time.Time
	schedule := func() {
		now := time.Now()
		if !pending {
			pending, first = true, now
		}
		timer.Reset(max(0, min(debounce, maxDebounce-now.Sub(first))))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watch resources paths: the file watcher stopped")
			}
			if m.matches(ev.Name) {
				log.V(2).Info("Resource file changed", "file", ev.Name, "op", ev.Op.String())
				schedule()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch resources paths: the file watcher stopped")
			}
			// An overflow means changes went unreported: reloading catches up with them.
			log.Error(err, "Watching the resources paths")
			schedule()
		case <-timer.C:
			pending = false
			if err := d.reload(ctx, events, log); err != nil {
				return nil
			}
		}
	}
}

// pathMatcher says which fsnotify events concern the resources paths.
type pathMatcher struct {
	dirs  map[string]bool // resources paths that are directories
	files map[string]bool // resources paths that are single files
}

// watchPaths adds a watch on every directory path, and on the parent of every file
// path: a file replaced by a rename is a new inode, which a watch on the file itself
// would lose.
func (d *Dir) watchPaths(w *fsnotify.Watcher) (*pathMatcher, error) {
	m := &pathMatcher{dirs: map[string]bool{}, files: map[string]bool{}}
	for _, p := range d.Paths {
		p = filepath.Clean(p)
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("watch resources path %s: %w", p, err)
		}
		dir := p
		if info.IsDir() {
			m.dirs[p] = true
		} else {
			m.files[p] = true
			dir = filepath.Dir(p)
		}
		if err := w.Add(dir); err != nil {
			return nil, fmt.Errorf("watch resources path %s: %w", p, err)
		}
	}
	return m, nil
}

// matches reports whether a change to name can change what Load reads: a YAML file
// directly in a watched directory, a watched file, a watched directory itself, or the
// ..data link through which Kubernetes' atomic writer swaps a mounted ConfigMap.
func (m *pathMatcher) matches(name string) bool {
	name = filepath.Clean(name)
	if m.files[name] || m.dirs[name] {
		return true
	}
	base := filepath.Base(name)
	return m.dirs[filepath.Dir(name)] && (isYAML(base) || base == "..data")
}

// reload loads every path and sends what changed since the last good set. It returns
// an error only when ctx ended.
func (d *Dir) reload(ctx context.Context, events chan<- Event, log logr.Logger) error {
	// What a reload leaves out was already reported by the first Load.
	set, err := d.load(ctx, log.V(1))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Error(err, "Resources did not reload; the last good set stays in effect until the files load again")
		d.notify(nil, err)
		return nil
	}
	d.mu.Lock()
	old := d.last
	d.last = set
	d.mu.Unlock()
	var evs []Event
	if old != nil {
		evs = diffSets(old, set)
	}
	for _, ev := range evs {
		log.V(1).Info("Resource changed", "kind", ev.Kind, "name", ev.Object.GetName(), "event", ev.Type.String(), "file", ev.Origin.File)
		select {
		case events <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.notify(evs, nil)
	return nil
}

func (d *Dir) notify(evs []Event, err error) {
	if d.reloaded != nil {
		d.reloaded(evs, err)
	}
}

// item is one resource of a Set, of any kind.
type item struct {
	kind   Kind
	obj    Object
	origin Origin
}

type itemKey struct {
	kind Kind
	name string
}

// items lists a set's resources in the order changes to them apply: secret stores,
// which other Components may read their metadata through, then the other Components,
// then what uses Components.
func (s *Set) items() []item {
	var out []item
	for _, secrets := range []bool{true, false} {
		for _, r := range s.Components {
			if isSecretStore(r.Object) == secrets {
				out = append(out, item{KindComponent, r.Object, r.Origin})
			}
		}
	}
	for _, r := range s.Configurations {
		out = append(out, item{KindConfiguration, r.Object, r.Origin})
	}
	for _, r := range s.Resiliencies {
		out = append(out, item{KindResiliency, r.Object, r.Origin})
	}
	for _, r := range s.HTTPEndpoints {
		out = append(out, item{KindHTTPEndpoint, r.Object, r.Origin})
	}
	for _, r := range s.Subscriptions {
		out = append(out, item{KindSubscription, r.Object, r.Origin})
	}
	return out
}

func isSecretStore(c *daprv1alpha1.Component) bool {
	return strings.HasPrefix(c.Spec.Type, "secretstores.")
}

// diffSets returns the events that turn old into cur: deletions in the reverse of the
// apply order, then additions and updates in it. Resources compare by content, never
// by where they were read.
func diffSets(old, cur *Set) []Event {
	before, after := old.items(), cur.items()
	prev := make(map[itemKey]item, len(before))
	for _, it := range before {
		prev[itemKey{it.kind, it.obj.GetName()}] = it
	}
	kept := make(map[itemKey]bool, len(after))
	for _, it := range after {
		kept[itemKey{it.kind, it.obj.GetName()}] = true
	}
	var out []Event
	for i := len(before) - 1; i >= 0; i-- {
		it := before[i]
		if !kept[itemKey{it.kind, it.obj.GetName()}] {
			out = append(out, Event{Kind: it.kind, Type: Deleted, Object: it.obj, Origin: it.origin})
		}
	}
	for _, it := range after {
		p, ok := prev[itemKey{it.kind, it.obj.GetName()}]
		switch {
		case !ok:
			out = append(out, Event{Kind: it.kind, Type: Added, Object: it.obj, Origin: it.origin})
		case !apiequality.Semantic.DeepEqual(p.obj, it.obj):
			out = append(out, Event{Kind: it.kind, Type: Updated, Object: it.obj, Origin: it.origin})
		}
	}
	return out
}
