package resources

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/internal/scheme"
)

// Kubernetes is the source of a sidecar in a pod (--mode kubernetes): the dapr.io
// resources of its namespace, read from the API server with one informer per kind and
// filtered by scopes for its app.
//
// Load starts the informers and waits until each has delivered its initial list; the
// Set it returns is what the informers had delivered at that moment. From then on every
// change the informers deliver is queued (without bound, so an informer never blocks),
// and Watch sends the queue. So a change made between Load and Watch is sent by Watch,
// and none is sent twice: Load and the informers' handlers share one lock, and Load
// empties the queue of what its Set already holds. The informers keep running until
// Watch returns or Close is called.
//
// Objects are those of the API server: already admitted by the validating webhooks, so
// they are not validated again, and with an empty Origin.File. Subscriptions are read at
// v2alpha1, the stored version; the API server converts v1alpha1 ones.
type Kubernetes struct {
	// Client reads the resources; it needs the dapr.io kinds in its scheme.
	Client client.WithWatch
	// Namespace is the sidecar's namespace (NAMESPACE); only its resources are read.
	Namespace string
	// AppID drops the resources whose scopes do not list it.
	AppID string
	// Log receives watch errors and skipped resources. The zero value discards.
	Log logr.Logger
	// ForbiddenGrace is how long Load keeps retrying a list the API server forbids
	// before it gives up: at a pod's start, the Role that lets it read the dapr.io
	// resources may not be bound yet. Zero means DefaultForbiddenGrace.
	ForbiddenGrace time.Duration

	// mu guards run and watching, and all of the state inside run: the informers'
	// handlers, Load and Watch take it.
	mu       sync.Mutex
	run      *kubeRun
	watching bool
}

var _ Source = (*Kubernetes)(nil)

// DefaultForbiddenGrace is the ForbiddenGrace of a zero Kubernetes.
const DefaultForbiddenGrace = 30 * time.Second

// NewKubernetes returns the source for the app appID in namespace, reading the API server
// of cfg with the scheme Outrigger shares (internal/scheme).
func NewKubernetes(cfg *rest.Config, namespace, appID string, log logr.Logger) (*Kubernetes, error) {
	if namespace == "" {
		return nil, errors.New("the Kubernetes resource source needs the sidecar's namespace (NAMESPACE)")
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("create a client for the dapr.io resources: %w", err)
	}
	return &Kubernetes{Client: c, Namespace: namespace, AppID: appID, Log: log}, nil
}

// kubeKind is what the source needs to know of one dapr.io kind.
type kubeKind struct {
	kind     Kind
	resource string // plural, as in RBAC rules and CRD names
	gvk      schema.GroupVersionKind
	newObj   func() client.Object
	newList  func() client.ObjectList
	// scopes returns the object's scopes; nil for a kind without them (Configuration).
	scopes func(Object) []string
	// add appends the object to its list in set.
	add func(set *Set, obj Object)
}

var kubeKinds = []kubeKind{
	{
		kind: KindComponent, resource: "components", gvk: daprv1alpha1.GroupVersion.WithKind(string(KindComponent)),
		newObj:  func() client.Object { return &daprv1alpha1.Component{} },
		newList: func() client.ObjectList { return &daprv1alpha1.ComponentList{} },
		scopes:  func(o Object) []string { return o.(*daprv1alpha1.Component).Scopes },
		add: func(s *Set, o Object) {
			s.Components = append(s.Components, Resource[*daprv1alpha1.Component]{Object: o.(*daprv1alpha1.Component)})
		},
	},
	{
		kind: KindSubscription, resource: "subscriptions", gvk: daprv2alpha1.GroupVersion.WithKind(string(KindSubscription)),
		newObj:  func() client.Object { return &daprv2alpha1.Subscription{} },
		newList: func() client.ObjectList { return &daprv2alpha1.SubscriptionList{} },
		scopes:  func(o Object) []string { return o.(*daprv2alpha1.Subscription).Scopes },
		add: func(s *Set, o Object) {
			s.Subscriptions = append(s.Subscriptions, Resource[*daprv2alpha1.Subscription]{Object: o.(*daprv2alpha1.Subscription)})
		},
	},
	{
		kind: KindConfiguration, resource: "configurations", gvk: daprv1alpha1.GroupVersion.WithKind(string(KindConfiguration)),
		newObj:  func() client.Object { return &daprv1alpha1.Configuration{} },
		newList: func() client.ObjectList { return &daprv1alpha1.ConfigurationList{} },
		scopes:  func(Object) []string { return nil },
		add: func(s *Set, o Object) {
			s.Configurations = append(s.Configurations, Resource[*daprv1alpha1.Configuration]{Object: o.(*daprv1alpha1.Configuration)})
		},
	},
	{
		kind: KindResiliency, resource: "resiliencies", gvk: daprv1alpha1.GroupVersion.WithKind(string(KindResiliency)),
		newObj:  func() client.Object { return &daprv1alpha1.Resiliency{} },
		newList: func() client.ObjectList { return &daprv1alpha1.ResiliencyList{} },
		scopes:  func(o Object) []string { return o.(*daprv1alpha1.Resiliency).Scopes },
		add: func(s *Set, o Object) {
			s.Resiliencies = append(s.Resiliencies, Resource[*daprv1alpha1.Resiliency]{Object: o.(*daprv1alpha1.Resiliency)})
		},
	},
	{
		kind: KindHTTPEndpoint, resource: "httpendpoints", gvk: daprv1alpha1.GroupVersion.WithKind(string(KindHTTPEndpoint)),
		newObj:  func() client.Object { return &daprv1alpha1.HTTPEndpoint{} },
		newList: func() client.ObjectList { return &daprv1alpha1.HTTPEndpointList{} },
		scopes:  func(o Object) []string { return o.(*daprv1alpha1.HTTPEndpoint).Scopes },
		add: func(s *Set, o Object) {
			s.HTTPEndpoints = append(s.HTTPEndpoints, Resource[*daprv1alpha1.HTTPEndpoint]{Object: o.(*daprv1alpha1.HTTPEndpoint)})
		},
	},
}

type kubeKey struct {
	kind Kind
	name string
}

// kubeRun is one run of the informers, from the first Load (or Watch) until Watch
// returns or Close is called. Everything but cancel and done is guarded by
// Kubernetes.mu.
type kubeRun struct {
	cancel context.CancelFunc
	done   chan struct{} // closed once every informer has stopped
	synced []kubeSynced

	// known are the resources in scope, as last reported: in the Set of Load or by an
	// Event. outOfScope are the others, for Set.Skipped.
	known      map[kubeKey]Object
	outOfScope map[kubeKey]Object
	// queue holds the Events not yet sent by Watch; notify has a value when it grew.
	queue  []Event
	notify chan struct{}
	// errs is the last list or watch error of each kind; errNotify has a value when
	// one was recorded.
	errs      map[Kind]error
	errNotify chan struct{}
	// forbiddenSince is when each kind's list was first forbidden.
	forbiddenSince map[Kind]time.Time
}

type kubeSynced struct {
	kind    kubeKind
	checker toolscache.DoneChecker
}

func (k *Kubernetes) log() logr.Logger {
	if k.Log.GetSink() == nil {
		return logr.Discard()
	}
	return k.Log
}

// Load waits for the informers' initial lists and returns the resources in scope, each
// kind ordered by name. A kind the sidecar may not list, or whose CRD is missing, fails
// it at once with an error naming the kind; other errors (the API server unreachable)
// are retried until ctx ends. Calling Load again while the informers run returns the
// current state; calling it while Watch runs is refused, since Watch would lose the
// changes that Load took.
func (k *Kubernetes) Load(ctx context.Context) (*Set, error) {
	k.mu.Lock()
	if k.watching {
		k.mu.Unlock()
		return nil, errors.New("load dapr.io resources: Watch is running; Load before Watch")
	}
	run, err := k.startLocked()
	k.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := k.waitSynced(ctx, run); err != nil {
		k.stop(run)
		return nil, err
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if k.watching {
		// Watch started meanwhile and may already have sent what the Set would hold.
		return nil, errors.New("load dapr.io resources: Watch started during Load; Load before Watch")
	}
	set := &Set{}
	for _, kk := range kubeKinds {
		for _, obj := range kubeSorted(run.known, kk.kind) {
			kk.add(set, obj.DeepCopyObject().(Object))
		}
	}
	for _, kk := range kubeKinds {
		for _, obj := range kubeSorted(run.outOfScope, kk.kind) {
			set.Skipped = append(set.Skipped, Skipped{Kind: string(kk.kind), Name: obj.GetName(), Reason: k.scopeReason(kk, obj)})
		}
	}
	// The Set holds every change delivered so far; Watch sends the later ones.
	run.queue = nil
	return set, nil
}

func kubeSorted(m map[kubeKey]Object, kind Kind) []Object {
	var out []Object
	for key, obj := range m {
		if key.kind == kind {
			out = append(out, obj)
		}
	}
	slices.SortFunc(out, func(a, b Object) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}

func (k *Kubernetes) scopeReason(kk kubeKind, obj Object) string {
	return fmt.Sprintf("scoped to %s, not to app %q", strings.Join(kk.scopes(obj), ", "), k.AppID)
}

// Watch sends an Event for each change after Load until ctx ends, then stops the
// informers and returns nil. An update that changes neither spec nor the top-level
// fields beside it (scopes, auth) sends nothing: status, labels, annotations and
// resourceVersion are not the sidecar's concern. An update that takes a resource out of
// scope sends Deleted, one that brings it into scope Added. Without a Load first, Watch
// starts the informers itself and sends Added for every resource of the initial lists.
func (k *Kubernetes) Watch(ctx context.Context, events chan<- Event) error {
	k.mu.Lock()
	if k.watching {
		k.mu.Unlock()
		return errors.New("watch dapr.io resources: already watching")
	}
	run, err := k.startLocked()
	if err != nil {
		k.mu.Unlock()
		return err
	}
	k.watching = true
	k.mu.Unlock()
	defer func() {
		k.stop(run)
		k.mu.Lock()
		k.watching = false
		k.mu.Unlock()
	}()

	for {
		k.mu.Lock()
		batch := run.queue
		run.queue = nil
		k.mu.Unlock()
		for _, ev := range batch {
			select {
			case events <- ev:
			case <-ctx.Done():
				return nil
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-run.notify:
		case <-ctx.Done():
			return nil
		}
	}
}

// Close stops the informers a Load started when Watch will not be called. Watch stops
// them itself when it returns.
func (k *Kubernetes) Close() error {
	k.mu.Lock()
	run := k.run
	k.mu.Unlock()
	if run != nil {
		k.stop(run)
	}
	return nil
}

// stop ends a run and waits for its informers; a later Load starts afresh.
func (k *Kubernetes) stop(run *kubeRun) {
	run.cancel()
	<-run.done
	k.mu.Lock()
	if k.run == run {
		k.run = nil
	}
	k.mu.Unlock()
}

// startLocked starts the informers unless they run already. k.mu is held.
func (k *Kubernetes) startLocked() (*kubeRun, error) {
	if k.run != nil {
		return k.run, nil
	}
	if k.Client == nil {
		return nil, errors.New("the Kubernetes resource source has no client")
	}
	if k.Namespace == "" {
		return nil, errors.New("the Kubernetes resource source needs the sidecar's namespace (NAMESPACE)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &kubeRun{
		cancel:         cancel,
		done:           make(chan struct{}),
		known:          map[kubeKey]Object{},
		outOfScope:     map[kubeKey]Object{},
		notify:         make(chan struct{}, 1),
		errs:           map[Kind]error{},
		forbiddenSince: map[Kind]time.Time{},
		errNotify:      make(chan struct{}, 1),
	}
	var informers []toolscache.SharedIndexInformer
	for _, kk := range kubeKinds {
		inf := toolscache.NewSharedIndexInformerWithOptions(k.listWatch(kk), kk.newObj(), toolscache.SharedIndexInformerOptions{})
		// Informers that have not run yet accept both; errors cannot happen here.
		_ = inf.SetTransform(stripManagedFields)
		_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *toolscache.Reflector, err error) {
			k.watchError(run, kk, err)
		})
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { k.observe(run, kk, obj, false) },
			UpdateFunc: func(_, obj any) { k.observe(run, kk, obj, false) },
			DeleteFunc: func(obj any) { k.observe(run, kk, obj, true) },
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("watch %s: %w", kk.resource, err)
		}
		run.synced = append(run.synced, kubeSynced{kind: kk, checker: reg.HasSyncedChecker()})
		informers = append(informers, inf)
	}
	var wg sync.WaitGroup
	for _, inf := range informers {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	go func() {
		wg.Wait()
		close(run.done)
	}()
	k.run = run
	return run, nil
}

func (k *Kubernetes) listWatch(kk kubeKind) *toolscache.ListWatch {
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			list := kk.newList()
			if err := k.Client.List(ctx, list, &client.ListOptions{Namespace: k.Namespace, Raw: &opts}); err != nil {
				return nil, err
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return k.Client.Watch(ctx, kk.newList(), &client.ListOptions{Namespace: k.Namespace, Raw: &opts})
		},
	}
}

// stripManagedFields keeps the informers' stores small: the sidecar never reads them.
func stripManagedFields(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}

// waitSynced waits until every informer has delivered its initial list to the handlers,
// failing early on an error that retrying cannot fix.
func (k *Kubernetes) waitSynced(ctx context.Context, run *kubeRun) error {
	for {
		var pending []kubeKind
		var wait <-chan struct{}
		for _, s := range run.synced {
			select {
			case <-s.checker.Done():
			default:
				pending = append(pending, s.kind)
				if wait == nil {
					wait = s.checker.Done()
				}
			}
		}
		if len(pending) == 0 {
			return nil
		}
		k.mu.Lock()
		err, recheck := k.fatalErrorLocked(run, pending)
		k.mu.Unlock()
		if err != nil {
			return err
		}
		var graceOver <-chan time.Time
		if !recheck.IsZero() {
			t := time.NewTimer(time.Until(recheck))
			defer t.Stop()
			graceOver = t.C
		}
		select {
		case <-wait:
		case <-graceOver:
		case <-run.errNotify:
		case <-ctx.Done():
			k.mu.Lock()
			defer k.mu.Unlock()
			for _, kk := range pending {
				if last := run.errs[kk.kind]; last != nil {
					return fmt.Errorf("list %s in namespace %q: %w (last error: %v)", kk.resource, k.Namespace, ctx.Err(), last)
				}
			}
			return fmt.Errorf("list %s in namespace %q: %w", pending[0].resource, k.Namespace, ctx.Err())
		}
	}
}

// fatalErrorLocked returns the first error recorded for the kinds not yet synced that
// retrying cannot fix, described for whoever runs the sidecar. A forbidden list is
// retried for ForbiddenGrace first; recheck is when the earliest such grace ends.
// Kubernetes.mu is held.
func (k *Kubernetes) fatalErrorLocked(run *kubeRun, pending []kubeKind) (error, time.Time) {
	var recheck time.Time
	grace := k.ForbiddenGrace
	if grace <= 0 {
		grace = DefaultForbiddenGrace
	}
	for _, kk := range pending {
		err := run.errs[kk.kind]
		if err == nil {
			continue
		}
		crd := kk.resource + "." + kk.gvk.Group
		switch {
		case meta.IsNoMatchError(err), apierrors.IsNotFound(err):
			return fmt.Errorf("list %s in namespace %q: the CustomResourceDefinition %s (version %s) is not installed; install Outrigger's CRDs: %w",
				kk.resource, k.Namespace, crd, kk.gvk.Version, err), time.Time{}
		case apierrors.IsForbidden(err):
			if until := run.forbiddenSince[kk.kind].Add(grace); time.Now().Before(until) {
				if recheck.IsZero() || until.Before(recheck) {
					recheck = until
				}
				continue
			}
			return fmt.Errorf("list %s in namespace %q: forbidden; the pod's service account needs get, list and watch on %s (the operator's sidecar Role grants them): %w",
				kk.resource, k.Namespace, crd, err), time.Time{}
		case apierrors.IsUnauthorized(err):
			return fmt.Errorf("list %s in namespace %q: the API server refused the sidecar's credentials: %w", kk.resource, k.Namespace, err), time.Time{}
		}
	}
	return nil, recheck
}

func (k *Kubernetes) watchError(run *kubeRun, kk kubeKind, err error) {
	k.log().Error(err, "Listing or watching dapr.io resources failed; retrying", "kind", kk.kind, "namespace", k.Namespace)
	k.mu.Lock()
	run.errs[kk.kind] = err
	if _, seen := run.forbiddenSince[kk.kind]; !seen && apierrors.IsForbidden(err) {
		run.forbiddenSince[kk.kind] = time.Now()
	}
	k.mu.Unlock()
	select {
	case run.errNotify <- struct{}{}:
	default:
	}
}

// observe is every informer notification: it compares the object with what was last
// reported and queues the Event, if any, that brings a consumer up to date.
func (k *Kubernetes) observe(run *kubeRun, kk kubeKind, obj any, deleted bool) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		if _, isObject := tomb.Obj.(Object); !isObject {
			// The informer missed the deletion and lost the object: its key still names it.
			_, name, err := toolscache.SplitMetaNamespaceKey(tomb.Key)
			if err != nil {
				k.log().Error(err, "Ignoring a deletion with a malformed key", "kind", kk.kind, "key", tomb.Key)
				return
			}
			k.forget(run, kk, name)
			return
		}
		obj = tomb.Obj
	}
	o, ok := obj.(Object)
	if !ok {
		k.log().Info("Ignoring an informer notification without an object", "kind", kk.kind, "type", fmt.Sprintf("%T", obj))
		return
	}
	if deleted {
		k.forget(run, kk, o.GetName())
		return
	}
	// The informer's object is shared with its store: consumers get their own copy.
	o = o.DeepCopyObject().(Object)
	o.GetObjectKind().SetGroupVersionKind(kk.gvk)
	key := kubeKey{kind: kk.kind, name: o.GetName()}
	inScope := InScope(kk.scopes(o), k.AppID)

	k.mu.Lock()
	defer k.mu.Unlock()
	prev, had := run.known[key]
	switch {
	case !inScope:
		run.outOfScope[key] = o
		if had {
			delete(run.known, key)
			run.push(Event{Kind: kk.kind, Type: Deleted, Object: o})
		}
		k.log().V(1).Info("Skipping a resource that is not for this sidecar", "kind", kk.kind, "name", key.name,
			"reason", k.scopeReason(kk, o))
	default:
		delete(run.outOfScope, key)
		run.known[key] = o
		switch {
		case !had:
			run.push(Event{Kind: kk.kind, Type: Added, Object: o})
		case !sameContent(prev, o):
			run.push(Event{Kind: kk.kind, Type: Updated, Object: o})
		}
	}
}

// forget is a deletion: Deleted, with the last state reported, if the resource was in
// scope.
func (k *Kubernetes) forget(run *kubeRun, kk kubeKind, name string) {
	key := kubeKey{kind: kk.kind, name: name}
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(run.outOfScope, key)
	if prev, had := run.known[key]; had {
		delete(run.known, key)
		run.push(Event{Kind: kk.kind, Type: Deleted, Object: prev})
	}
}

// push queues an event with its own copy of the object, so that what a consumer does
// with it cannot change what later updates are compared with. Kubernetes.mu is held.
func (r *kubeRun) push(ev Event) {
	ev.Object = ev.Object.DeepCopyObject().(Object)
	r.queue = append(r.queue, ev)
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// sameContent reports whether two versions of a resource differ only in what the
// sidecar ignores: metadata (resourceVersion, generation, labels, annotations) and
// status. Every other top-level field, spec and those Dapr puts beside it (scopes,
// auth), counts, including ones a later API version adds.
func sameContent(a, b Object) bool {
	return equality.Semantic.DeepEqual(withoutMetaAndStatus(a), withoutMetaAndStatus(b))
}

func withoutMetaAndStatus(o Object) runtime.Object {
	c := o.DeepCopyObject()
	v := reflect.ValueOf(c).Elem()
	for _, name := range []string{"TypeMeta", "ObjectMeta", "Status"} {
		if f := v.FieldByName(name); f.IsValid() && f.CanSet() {
			f.SetZero()
		}
	}
	return c
}
