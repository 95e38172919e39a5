// Package compstore holds the components a sidecar has loaded. It turns Component
// manifests into initialised instances (metadata resolved, Init bounded by
// spec.initTimeout), keeps each in a hot-swap slot by name, and answers the building
// blocks' per-call lookups and the metadata API's listings.
package compstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/api"
	pubsubblock "github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub"
	stateblock "github.com/outrigger-dev/outrigger/sidecar/blocks/state"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/resources"
)

// DefaultInitTimeout bounds a component's initialisation when spec.initTimeout is not
// set, as in Dapr.
const DefaultInitTimeout = 5 * time.Second

// Families whose components this store can load.
const (
	FamilyState        = "state"
	FamilySecretStores = "secretstores"
	FamilyPubsub       = "pubsub"
)

// Registries are the implementations the store creates components from, one registry
// per family. A nil registry makes every type of its family unknown.
type Registries struct {
	State        *components.Registry[state.Store]
	SecretStores *components.Registry[secretstores.Store]
	Pubsub       *components.Registry[pubsub.PubSub]
}

// Store is the set of loaded components of one sidecar. Its exported fields are set
// before Load and not changed afterwards.
type Store struct {
	AppID     string
	Namespace string
	// PodName fills {podName} in metadata values; empty outside Kubernetes, where a value
	// that uses it fails, as in Dapr.
	PodName string
	// DefaultSecretStore resolves secretKeyRef when auth.secretStore is empty: the
	// built-in "kubernetes" store in Kubernetes mode. Empty in self-hosted mode, where
	// such a reference is an error (Dapr would wait for a store that never comes).
	DefaultSecretStore string

	Registries Registries
	// LookupEnv reads the sidecar's environment for envRef; os.LookupEnv by default.
	LookupEnv func(string) (string, bool)
	Log       logr.Logger
	// OnChange, when set, is called after a component was added, replaced or removed
	// while the sidecar runs (Apply), with its family and name; the pub/sub block moves
	// its subscriptions to the new instance.
	OnChange func(family, name string)

	// mutate serialises Load, Apply and Close; mu guards the maps for the readers.
	mutate sync.Mutex
	mu     sync.RWMutex
	loaded map[string]*entry
	order  []string // loaded names, in load order
	failed map[string]*failure
	// failSeq numbers the failures, to list them in the order they happened.
	failSeq int
	closed  bool
	// retiring counts instances swapped out or removed that are still draining.
	retiring sync.WaitGroup
}

// entry is one loaded component: its manifest and the slot of its family.
type entry struct {
	comp   *daprv1alpha1.Component
	origin resources.Origin
	family string
	caps   []string
	state  *components.Slot[*stateInstance]
	secret *components.Slot[secretstores.Store]
	pubsub *components.Slot[*pubsubInstance]
}

// pubsubInstance keeps a pub/sub with its topic scopes, so that a swap changes both.
type pubsubInstance struct {
	pubsub.PubSub
	scopes pubsubblock.Scopes
}

// stateInstance keeps a store with its key prefix, so that a swap changes both at once.
type stateInstance struct {
	state.Store
	keyPrefix string
}

type failure struct {
	seq int // keeps Failed in the order the failures happened
	api.FailedComponent
}

// New returns an empty store creating components from the global family registries.
func New(appID, namespace string, log logr.Logger) *Store {
	return &Store{
		AppID:      appID,
		Namespace:  namespace,
		Registries: Registries{State: state.Registry, SecretStores: secretstores.Registry, Pubsub: pubsub.Registry},
		LookupEnv:  os.LookupEnv,
		Log:        log,
	}
}

func (s *Store) lazyInit() {
	if s.loaded == nil {
		s.loaded = map[string]*entry{}
		s.failed = map[string]*failure{}
	}
	if s.LookupEnv == nil {
		s.LookupEnv = os.LookupEnv
	}
}

// Load initialises the components of set: the secret stores first, each after any
// secret store its own secretKeyRefs go through, then every other component, in
// parallel. A component that fails is listed by Failed; Load returns an error naming
// every failed component whose ignoreErrors is false. On error the caller closes the
// store, which closes what did load.
func (s *Store) Load(ctx context.Context, set *resources.Set) error {
	s.mutate.Lock()
	defer s.mutate.Unlock()
	s.lazyInit()
	if s.closed {
		return errors.New("component store is closed")
	}
	if len(s.loaded) > 0 || len(s.failed) > 0 {
		return errors.New("components are already loaded; apply changes with Apply")
	}

	if set == nil {
		set = &resources.Set{}
	}
	var secretStores, others []resources.Resource[*daprv1alpha1.Component]
	for _, r := range set.Components {
		if family, _, _ := components.SplitType(r.Object.Spec.Type); family == FamilySecretStores {
			secretStores = append(secretStores, r)
		} else {
			others = append(others, r)
		}
	}

	var fatal []error
	record := func(r resources.Resource[*daprv1alpha1.Component], b *built, err error) {
		if err != nil {
			if s.fail(r, err) {
				fatal = append(fatal, err)
			}
			return
		}
		s.publish(r, b)
	}

	// A secret store may read its own metadata through another secret store; Dapr
	// defers such a store until the one it needs is loaded. Each pass loads the stores
	// whose dependency is no longer pending; what is left when a pass makes no progress
	// waits on itself.
	pending := secretStores
	for len(pending) > 0 {
		var waiting []resources.Resource[*daprv1alpha1.Component]
		for _, r := range pending {
			if dep := s.secretDependency(r.Object); dep != "" && dep != r.Object.Name && slices.ContainsFunc(pending, func(p resources.Resource[*daprv1alpha1.Component]) bool {
				return p.Object.Name == dep && !s.attempted(dep)
			}) {
				waiting = append(waiting, r)
				continue
			}
			b, err := s.build(ctx, r.Object)
			record(r, b, err)
		}
		if len(waiting) == len(pending) {
			for _, r := range waiting {
				record(r, nil, s.wrap(r.Object, fmt.Errorf("its secretKeyRefs go through secret store %q, which cannot load first: "+
					"the auth.secretStore references of these secret stores form a cycle", s.secretDependency(r.Object))))
			}
			break
		}
		pending = waiting
	}

	// The other families do not depend on each other: initialise them together, so
	// start-up takes as long as the slowest component rather than the sum, then record
	// the results in manifest order.
	type result struct {
		b   *built
		err error
	}
	results := make([]result, len(others))
	var wg sync.WaitGroup
	for i, r := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := s.build(ctx, r.Object)
			results[i] = result{b, err}
		}()
	}
	wg.Wait()
	for i, r := range others {
		record(r, results[i].b, results[i].err)
	}
	return errors.Join(fatal...)
}

// attempted reports whether a component has been loaded or has failed.
func (s *Store) attempted(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.loaded[name] != nil || s.failed[name] != nil
}

// fail records a failure and reports whether it is fatal (ignoreErrors false).
func (s *Store) fail(r resources.Resource[*daprv1alpha1.Component], err error) bool {
	c := r.Object
	cause := err
	var ie *InitError
	if errors.As(err, &ie) {
		cause = ie.Err
	}
	s.mu.Lock()
	s.failSeq++
	s.failed[c.Name] = &failure{seq: s.failSeq, FailedComponent: api.FailedComponent{
		Name: c.Name, Type: c.Spec.Type, Version: c.Spec.Version, Error: cause.Error(),
	}}
	s.mu.Unlock()
	s.Log.Error(cause, "Component failed to initialise", "Component", c.Name, "type", c.Spec.Type,
		"version", c.Spec.Version, "file", r.Origin.File, "ignoreErrors", c.Spec.IgnoreErrors)
	return !c.Spec.IgnoreErrors
}

// publish makes a built component available under its name, swapping out any
// instance of the same family and closing it once its in-flight calls finish.
func (s *Store) publish(r resources.Resource[*daprv1alpha1.Component], b *built) {
	c := r.Object
	s.mu.Lock()
	old := s.loaded[c.Name]
	delete(s.failed, c.Name)
	if old != nil && old.family == b.family {
		old.comp, old.origin, old.caps = c, r.Origin, b.caps
		switch b.family {
		case FamilyState:
			s.retire(c.Name, old.state.Swap(b.state))
		case FamilySecretStores:
			s.retire(c.Name, old.secret.Swap(b.secret))
		case FamilyPubsub:
			s.retire(c.Name, old.pubsub.Swap(b.pubsub))
		}
		s.mu.Unlock()
		s.Log.Info("Component updated", "Component", c.Name, "type", c.Spec.Type, "version", c.Spec.Version)
		return
	}
	if old != nil {
		s.removeLocked(c.Name)
	}
	e := &entry{comp: c, origin: r.Origin, family: b.family, caps: b.caps}
	switch b.family {
	case FamilyState:
		e.state = components.NewSlot(b.state)
	case FamilySecretStores:
		e.secret = components.NewSlot(b.secret)
	case FamilyPubsub:
		e.pubsub = components.NewSlot(b.pubsub)
	}
	s.loaded[c.Name] = e
	s.order = append(s.order, c.Name)
	s.mu.Unlock()
	s.Log.Info("Component loaded", "Component", c.Name, "type", c.Spec.Type, "version", c.Spec.Version)
}

// removeLocked takes a component out and closes it once drained; mu is held.
func (s *Store) removeLocked(name string) {
	e := s.loaded[name]
	if e == nil {
		return
	}
	delete(s.loaded, name)
	s.order = slices.DeleteFunc(s.order, func(n string) bool { return n == name })
	s.retire(name, e.close())
}

func (e *entry) close() <-chan error {
	switch {
	case e.state != nil:
		return e.state.Close()
	case e.secret != nil:
		return e.secret.Close()
	case e.pubsub != nil:
		return e.pubsub.Close()
	}
	done := make(chan error)
	close(done)
	return done
}

// retire waits in the background for an old instance to drain and close.
func (s *Store) retire(name string, done <-chan error) {
	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		if err := <-done; err != nil {
			s.Log.Error(err, "Closing a replaced component failed", "Component", name)
		}
	}()
}

// Apply applies one change of a Component while the sidecar runs: an added or updated
// component is initialised next to the current instance and swapped in; if that
// fails, the current instance keeps serving and the failure is listed by Failed. A
// deleted component is removed and closed once its in-flight calls finish. Events of
// other kinds are ignored. Components that read secrets through a changed secret store
// are not re-resolved (yet).
func (s *Store) Apply(ctx context.Context, ev resources.Event) error {
	if ev.Kind != resources.KindComponent {
		return nil
	}
	c, ok := ev.Object.(*daprv1alpha1.Component)
	if !ok {
		return fmt.Errorf("apply %s event: object is a %T, not a Component", ev.Type, ev.Object)
	}
	s.mutate.Lock()
	defer s.mutate.Unlock()
	s.lazyInit()
	if s.closed {
		return errors.New("component store is closed")
	}
	r := resources.Resource[*daprv1alpha1.Component]{Object: c, Origin: ev.Origin}
	switch ev.Type {
	case resources.Deleted:
		s.mu.Lock()
		s.removeLocked(c.Name)
		delete(s.failed, c.Name)
		s.mu.Unlock()
		s.Log.Info("Component removed", "Component", c.Name)
		s.changed(c)
		return nil
	case resources.Added, resources.Updated:
		b, err := s.build(ctx, c)
		if err != nil {
			s.fail(r, err)
			return err
		}
		s.publish(r, b)
		s.changed(c)
		return nil
	}
	return fmt.Errorf("apply Component %q: unknown event type %s", c.Name, ev.Type)
}

// Close removes every component and waits, until ctx ends, for each to finish its
// in-flight calls and close. Secret stores close last, as they were loaded first.
func (s *Store) Close(ctx context.Context) error {
	s.mutate.Lock()
	defer s.mutate.Unlock()
	s.lazyInit()
	s.mu.Lock()
	s.closed = true
	var waits []<-chan error
	var names []string
	order := slices.Clone(s.order)
	slices.SortStableFunc(order, func(a, b string) int {
		return boolCmp(s.loaded[a].family == FamilySecretStores, s.loaded[b].family == FamilySecretStores)
	})
	for _, name := range order {
		waits = append(waits, s.loaded[name].close())
		names = append(names, name)
	}
	clear(s.loaded)
	s.order = nil
	s.mu.Unlock()

	var errs []error
	for i, done := range waits {
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, fmt.Errorf("close component %q: %w", names[i], err))
			}
		case <-ctx.Done():
			return errors.Join(append(errs, fmt.Errorf("close components: %w", ctx.Err()))...)
		}
	}
	drained := make(chan struct{})
	go func() { s.retiring.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("close replaced components: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

func (s *Store) changed(c *daprv1alpha1.Component) {
	if s.OnChange == nil {
		return
	}
	family, _, _ := components.SplitType(c.Spec.Type)
	s.OnChange(family, c.Name)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// Acquire implements the state block's Stores: the state store loaded under name, and
// its key prefix setting.
func (s *Store) Acquire(name string) (stateblock.Handle, func(), bool) {
	e := s.lookup(name)
	if e == nil || e.state == nil {
		return stateblock.Handle{}, func() {}, false
	}
	inst, release, ok := e.state.Acquire()
	if !ok {
		return stateblock.Handle{}, release, false
	}
	return stateblock.Handle{Store: inst.Store, KeyPrefix: inst.keyPrefix}, release, true
}

// Names lists the loaded state stores.
func (s *Store) Names() []string { return s.names(FamilyState) }

var _ stateblock.Stores = (*Store)(nil)

// SecretStores is the view of the loaded secret stores that the secrets block uses.
func (s *Store) SecretStores() SecretStores { return SecretStores{s} }

// SecretStores looks secret stores up by name, per call.
type SecretStores struct{ s *Store }

// Acquire returns the secret store loaded under name; release must be called when the
// call is done.
func (v SecretStores) Acquire(name string) (secretstores.Store, func(), bool) {
	e := v.s.lookup(name)
	if e == nil || e.secret == nil {
		return nil, func() {}, false
	}
	return e.secret.Acquire()
}

// Names lists the loaded secret stores.
func (v SecretStores) Names() []string { return v.s.names(FamilySecretStores) }

// PubSubs is the view of the loaded pub/sub components that the pub/sub block uses.
func (s *Store) PubSubs() PubSubs { return PubSubs{s} }

// PubSubs looks pub/sub components up by name, per call or per subscription.
type PubSubs struct{ s *Store }

// Acquire returns the pub/sub loaded under name with its scopes; release must be called
// when the call or subscription is done.
func (v PubSubs) Acquire(name string) (pubsubblock.Handle, func(), bool) {
	e := v.s.lookup(name)
	if e == nil || e.pubsub == nil {
		return pubsubblock.Handle{}, func() {}, false
	}
	inst, release, ok := e.pubsub.Acquire()
	if !ok {
		return pubsubblock.Handle{}, release, false
	}
	return pubsubblock.Handle{PubSub: inst.PubSub, Scopes: inst.scopes}, release, true
}

// Names lists the loaded pub/sub components.
func (v PubSubs) Names() []string { return v.s.names(FamilyPubsub) }

var _ pubsubblock.Components = PubSubs{}

func (s *Store) lookup(name string) *entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.loaded[name]
}

func (s *Store) names(family string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for _, n := range s.order {
		if s.loaded[n].family == family {
			out = append(out, n)
		}
	}
	return out
}

// Components lists the loaded components, in load order, as the metadata API reports
// them.
func (s *Store) Components() []api.Component {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]api.Component, 0, len(s.order))
	for _, n := range s.order {
		e := s.loaded[n]
		out = append(out, api.Component{Name: n, Type: e.comp.Spec.Type, Version: e.comp.Spec.Version, Capabilities: slices.Clone(e.caps)})
	}
	return out
}

// Failed lists the components whose last initialisation failed, and why. A component
// whose update failed is listed here while its previous instance keeps serving.
func (s *Store) Failed() []api.FailedComponent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fs := make([]*failure, 0, len(s.failed))
	for _, f := range s.failed {
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(a, b *failure) int { return a.seq - b.seq })
	out := make([]api.FailedComponent, len(fs))
	for i, f := range fs {
		out[i] = f.FailedComponent
	}
	return out
}
