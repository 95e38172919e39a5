package report

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

// Defaults of the Options.
const (
	// DefaultRefreshInterval keeps each current report well inside the API server's
	// default event TTL of one hour.
	DefaultRefreshInterval = 20 * time.Minute
	// DefaultFlushTimeout bounds Close.
	DefaultFlushTimeout = 5 * time.Second

	callTimeout = 10 * time.Second
	maxRetries  = 8
)

// Option changes a Reporter's defaults.
type Option func(*Reporter)

// WithClock sets the clock that stamps reports; time.Now by default.
func WithClock(now func() time.Time) Option { return func(r *Reporter) { r.now = now } }

// WithRefreshInterval sets how often the current report of each component is
// refreshed; 0 turns refreshing off.
func WithRefreshInterval(d time.Duration) Option { return func(r *Reporter) { r.refreshEvery = d } }

// WithRefreshTicks refreshes on every value received from ticks instead of on an
// interval, for tests.
func WithRefreshTicks(ticks <-chan time.Time) Option { return func(r *Reporter) { r.ticks = ticks } }

// WithFlushTimeout bounds how long Close waits for pending reports.
func WithFlushTimeout(d time.Duration) Option { return func(r *Reporter) { r.flushTimeout = d } }

// Reporter records, as Events on each Component, whether this sidecar loaded it.
// Its methods do not block on the API server: reports are written in the background,
// retried with backoff, and only the latest report per component is kept. A nil
// *Reporter ignores every call, so callers need no check outside Kubernetes.
type Reporter struct {
	events       eventsv1client.EventsGetter
	namespace    string
	pod          string
	appID        string
	log          logr.Logger
	now          func() time.Time
	refreshEvery time.Duration
	ticks        <-chan time.Time
	flushTimeout time.Duration

	mu     sync.Mutex
	latest map[string]*pending // by component name
	closed bool

	queue   workqueue.TypedRateLimitingInterface[string]
	ctx     context.Context
	cancel  context.CancelFunc
	stop    chan struct{}
	stopped sync.WaitGroup // the refresh loop
	// workerDone is closed when the worker has written everything queued.
	workerDone chan struct{}
}

// pending is the latest report about one component.
type pending struct {
	ev *eventsv1.Event
	at time.Time
	// written: the Event exists, so a refresh only patches its reported-at.
	written bool
}

// New starts a Reporter for the sidecar of pod podName, serving appID in namespace.
func New(cfg *rest.Config, namespace, podName, appID string, log logr.Logger, opts ...Option) (*Reporter, error) {
	if namespace == "" || podName == "" {
		return nil, errors.New("component reports need the pod's namespace and name (NAMESPACE and POD_NAME)")
	}
	c, err := eventsv1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("events client: %w", err)
	}
	return newReporter(c, namespace, podName, appID, log, opts...), nil
}

func newReporter(events eventsv1client.EventsGetter, namespace, podName, appID string, log logr.Logger, opts ...Option) *Reporter {
	r := &Reporter{
		events: events, namespace: namespace, pod: podName, appID: appID, log: log,
		now: time.Now, refreshEvery: DefaultRefreshInterval, flushTimeout: DefaultFlushTimeout,
		latest: map[string]*pending{},
		stop:   make(chan struct{}), workerDone: make(chan struct{}),
	}
	for _, o := range opts {
		o(r)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, time.Minute),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "component-reports"})
	r.stopped.Add(1)
	go r.work()
	go r.refresh()
	return r
}

// ComponentLoaded reports that c, at its current generation, initialised and serves.
func (r *Reporter) ComponentLoaded(c *daprv1alpha1.Component) { r.report(c, nil) }

// ComponentFailed reports that c, at its current generation, failed to initialise
// with err; the instance loaded before, if any, keeps serving.
func (r *Reporter) ComponentFailed(c *daprv1alpha1.Component, err error) {
	if err == nil {
		err = errors.New("unknown error")
	}
	r.report(c, err)
}

// ComponentRemoved stops refreshing the reports about c, once it is deleted or no
// longer in this app's scope. Its Events expire with the API server's event TTL.
func (r *Reporter) ComponentRemoved(c *daprv1alpha1.Component) {
	if r == nil || c == nil {
		return
	}
	r.mu.Lock()
	delete(r.latest, c.Name)
	r.mu.Unlock()
}

func (r *Reporter) report(c *daprv1alpha1.Component, err error) {
	if r == nil || c == nil {
		return
	}
	at := r.now()
	p := &pending{ev: newEvent(c, r.namespace, r.appID, r.pod, err, at), at: at}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.log.V(1).Info("Dropped a component report: the reporter is closed", "Component", c.Name)
		return
	}
	r.latest[c.Name] = p
	r.queue.Add(c.Name)
}

// Close writes the reports still pending, for at most the flush timeout, and stops
// the Reporter. It returns an error when some were left unwritten.
func (r *Reporter) Close() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)

	// After ShutDown the worker still takes what is queued, and returns once the queue
	// is empty. A report waiting out a retry backoff is dropped.
	r.queue.ShutDown()
	timer := time.NewTimer(r.flushTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-r.workerDone:
	case <-timer.C:
		err = fmt.Errorf("component reports not written within %s", r.flushTimeout)
		r.cancel()
		<-r.workerDone
	}
	r.cancel()
	r.stopped.Wait()
	return err
}

func (r *Reporter) work() {
	defer close(r.workerDone)
	for {
		name, shutdown := r.queue.Get()
		if shutdown {
			return
		}
		err := r.write(name)
		switch {
		case err == nil:
			r.queue.Forget(name)
		case r.ctx.Err() == nil && r.queue.NumRequeues(name) < maxRetries && !permanent(err):
			r.log.V(1).Info("Retrying a component report", "Component", name, "error", err.Error())
			r.queue.AddRateLimited(name)
		default:
			// The next refresh tries again.
			r.queue.Forget(name)
			r.log.Error(err, "Failed to record a component report as an Event", "Component", name)
		}
		r.queue.Done(name)
	}
}

func permanent(err error) bool {
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)
}

// write records the latest report about one component: it creates the Event, or, when
// it exists already (the same report made before, or a refresh), moves its
// reported-at to the time of this report or refresh.
func (r *Reporter) write(name string) error {
	r.mu.Lock()
	p := r.latest[name]
	var ev *eventsv1.Event
	var written bool
	at := r.now()
	if p != nil {
		ev, written = p.ev.DeepCopy(), p.written
		if !written {
			at = p.at
		}
	}
	r.mu.Unlock()
	if ev == nil {
		return nil // removed meanwhile
	}
	ctx, cancel := context.WithTimeout(r.ctx, callTimeout)
	defer cancel()
	ev.Annotations[AnnotationReportedAt] = at.UTC().Format(time.RFC3339Nano)
	client := r.events.Events(ev.Namespace)
	patch := func() error {
		data := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, AnnotationReportedAt, ev.Annotations[AnnotationReportedAt])
		_, err := client.Patch(ctx, ev.Name, types.MergePatchType, data, metav1.PatchOptions{})
		return err
	}
	create := func() error {
		_, err := client.Create(ctx, ev, metav1.CreateOptions{})
		return err
	}
	var err error
	if written {
		// The Event may have expired or been deleted since.
		if err = patch(); apierrors.IsNotFound(err) {
			err = create()
		}
	} else if err = create(); apierrors.IsAlreadyExists(err) {
		err = patch()
	}
	if err != nil {
		return fmt.Errorf("record Event %s/%s: %w", ev.Namespace, ev.Name, err)
	}
	r.mu.Lock()
	if r.latest[name] == p {
		p.written = true
	}
	r.mu.Unlock()
	r.log.V(1).Info("Recorded a component report", "Component", name, "reason", ev.Reason, "event", ev.Name)
	return nil
}

// refresh re-records the current report of every component, so that its Event
// outlives the event TTL for as long as the report holds.
func (r *Reporter) refresh() {
	defer r.stopped.Done()
	ticks := r.ticks
	if ticks == nil {
		if r.refreshEvery <= 0 {
			return
		}
		t := time.NewTicker(r.refreshEvery)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-r.stop:
			return
		case <-ticks:
			r.mu.Lock()
			for name := range r.latest {
				r.queue.Add(name)
			}
			r.mu.Unlock()
		}
	}
}
