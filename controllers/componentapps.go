package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/report"
	"github.com/outrigger-dev/outrigger/webhooks/injector"
)

// ConditionAppsLoaded is the Component condition that sums up the sidecars' reports
// about its current generation.
const ConditionAppsLoaded = "AppsLoaded"

// Reasons of the AppsLoaded condition.
const (
	// ReasonAppsLoaded: every sidecar that reported on the current generation loaded it.
	ReasonAppsLoaded = "AppsLoaded"
	// ReasonAppsFailed: at least one sidecar failed to initialise the current generation.
	ReasonAppsFailed = "AppsFailed"
	// ReasonNoReports: no running sidecar has reported on the current generation.
	ReasonNoReports = "NoReports"
)

const (
	// maxFailedApps bounds status.apps.failedApps (the CRD says so too).
	maxFailedApps = 5
	// maxNamedInMessage bounds the app/pod names in the AppsFailed message.
	maxNamedInMessage = 3
)

// Field indexes of the report Events: the Component each is about, and the pod that
// made it.
const (
	indexReportComponent = "outrigger.report.component"
	indexReportPod       = "outrigger.report.pod"
)

// componentAppsStatus decides status.apps and the AppsLoaded condition of a Component at
// generation gen with uid from the sidecars' reports about it, counting only the pods
// in live. Each pod counts once, by its latest report; a report about an older
// generation counts as no report yet.
func componentAppsStatus(gen int64, uid types.UID, reports []report.Report, live map[string]bool) (daprv1alpha1.ComponentApps, metav1.Condition) {
	latest := map[string]report.Report{}
	for _, r := range reports {
		// Reports about an earlier Component of the same name do not count.
		if !live[r.Pod] || (r.ComponentUID != "" && uid != "" && r.ComponentUID != uid) {
			continue
		}
		if cur, ok := latest[r.Pod]; !ok || newer(r, cur) {
			latest[r.Pod] = r
		}
	}
	var apps daprv1alpha1.ComponentApps
	var failed []report.Report
	for _, r := range latest {
		switch {
		case r.Generation != gen:
		case r.Loaded:
			apps.Loaded++
		default:
			apps.Failed++
			failed = append(failed, r)
		}
	}
	slices.SortFunc(failed, func(a, b report.Report) int { return strings.Compare(a.App(), b.App()) })
	for _, r := range failed[:min(len(failed), maxFailedApps)] {
		apps.FailedApps = append(apps.FailedApps, r.App())
	}

	cond := metav1.Condition{Type: ConditionAppsLoaded, ObservedGeneration: gen}
	switch {
	case apps.Failed > 0:
		var names []string
		for _, r := range failed[:min(len(failed), maxNamedInMessage)] {
			names = append(names, r.App())
		}
		list := strings.Join(names, ", ")
		if more := len(failed) - len(names); more > 0 {
			list += fmt.Sprintf(" and %d more", more)
		}
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonAppsFailed
		cond.Message = fmt.Sprintf("%s failed to initialise generation %d (%s), %d loaded it; first error: %s",
			sidecars(apps.Failed), gen, list, apps.Loaded, failed[0].Error)
	case apps.Loaded > 0:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonAppsLoaded
		cond.Message = fmt.Sprintf("%s loaded generation %d", sidecars(apps.Loaded), gen)
	default:
		cond.Status, cond.Reason = metav1.ConditionUnknown, ReasonNoReports
		cond.Message = fmt.Sprintf("No sidecar has reported on generation %d yet", gen)
	}
	return apps, cond
}

// newer orders two reports of one pod: the later one wins, and on a tie the failure,
// then the Event name, so that the outcome does not depend on list order.
func newer(a, b report.Report) bool {
	if c := a.At.Compare(b.At); c != 0 {
		return c > 0
	}
	if a.Loaded != b.Loaded {
		return !a.Loaded
	}
	return a.Event > b.Event
}

func sidecars(n int32) string {
	if n == 1 {
		return "1 sidecar"
	}
	return fmt.Sprintf("%d sidecars", n)
}

// componentAppsReconciler keeps status.apps and the AppsLoaded condition of each
// Component from the sidecars' report Events. It reads the Events and the injected
// Pods from a cache of its own that holds only those, so the operator does not cache
// every Event and Pod of the cluster.
type componentAppsReconciler struct {
	client  client.Client
	reports client.Reader
}

// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

func (r *componentAppsReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	comp := &daprv1alpha1.Component{}
	if err := r.client.Get(ctx, req.NamespacedName, comp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	events := &eventsv1.EventList{}
	if err := r.reports.List(ctx, events, client.InNamespace(comp.Namespace), client.MatchingFields{indexReportComponent: comp.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list report Events of Component %s/%s: %w", comp.Namespace, comp.Name, err)
	}
	var reports []report.Report
	live := map[string]bool{}
	for i := range events.Items {
		rep, ok := report.Decode(&events.Items[i])
		if !ok {
			continue
		}
		reports = append(reports, rep)
		if _, seen := live[rep.Pod]; seen {
			continue
		}
		pod := &corev1.Pod{}
		err := r.reports.Get(ctx, types.NamespacedName{Namespace: comp.Namespace, Name: rep.Pod}, pod)
		if err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("get Pod %s/%s: %w", comp.Namespace, rep.Pod, err)
		}
		live[rep.Pod] = err == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
	}
	apps, cond := componentAppsStatus(comp.Generation, comp.UID, reports, live)
	return ctrl.Result{}, r.patchStatus(ctx, comp, apps, cond)
}

// patchStatus changes only the AppsLoaded condition and status.apps. A merge patch
// replaces the whole conditions list, so it carries the resourceVersion: on a
// conflict the Component has changed, and that change has queued another reconcile.
func (r *componentAppsReconciler) patchStatus(ctx context.Context, comp *daprv1alpha1.Component, apps daprv1alpha1.ComponentApps, cond metav1.Condition) error {
	base := comp.DeepCopy()
	changed := meta.SetStatusCondition(&comp.Status.Conditions, cond)
	if comp.Status.Apps == nil || !equality.Semantic.DeepEqual(*comp.Status.Apps, apps) {
		comp.Status.Apps = &apps
		changed = true
	}
	if !changed {
		return nil
	}
	err := r.client.Status().Patch(ctx, comp, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patch status of Component %s/%s: %w", comp.Namespace, comp.Name, err)
	}
	logf.FromContext(ctx).V(1).Info("Updated AppsLoaded condition", "Component", klog.KObj(comp),
		"status", cond.Status, "reason", cond.Reason, "loaded", apps.Loaded, "failed", apps.Failed)
	return nil
}

// setupComponentApps starts the cache of report Events and injected Pods, and the
// controller, triggered by Components, by report Events and by pods that stop.
func setupComponentApps(ctx context.Context, mgr ctrl.Manager) error {
	reports, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(),
		Scheme:     mgr.GetScheme(),
		Mapper:     mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&eventsv1.Event{}: {Label: labels.SelectorFromSet(labels.Set{report.LabelReport: report.LabelReportComponent})},
			&corev1.Pod{}:     {Label: labels.SelectorFromSet(labels.Set{injector.LabelSidecarInjected: "true"}), Transform: slimPod},
		},
		// Only the informers set up here; a read of any other kind is a bug.
		ReaderFailOnMissingInformer: true,
	})
	if err != nil {
		return fmt.Errorf("report cache: %w", err)
	}
	if err := mgr.Add(reports); err != nil {
		return err
	}
	if err := reports.IndexField(ctx, &eventsv1.Event{}, indexReportComponent, func(o client.Object) []string {
		if rep, ok := report.Decode(o.(*eventsv1.Event)); ok {
			return []string{rep.Component}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := reports.IndexField(ctx, &eventsv1.Event{}, indexReportPod, func(o client.Object) []string {
		if rep, ok := report.Decode(o.(*eventsv1.Event)); ok {
			return []string{rep.Pod}
		}
		return nil
	}); err != nil {
		return err
	}
	// Pods enter the cache's informer only through this watch, so Get it up front:
	// the reconciler lists Pods as soon as it runs.
	if _, err := reports.GetInformer(ctx, &corev1.Pod{}); err != nil {
		return err
	}

	r := &componentAppsReconciler{client: mgr.GetClient(), reports: reports}
	aboutComponent := handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, ev *eventsv1.Event) []reconcile.Request {
		rep, ok := report.Decode(ev)
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ev.Namespace, Name: rep.Component}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("component-apps").
		For(&daprv1alpha1.Component{}).
		WatchesRawSource(source.Kind(reports, &eventsv1.Event{}, aboutComponent)).
		WatchesRawSource(source.Kind(reports, &corev1.Pod{}, podStopped(reports))).
		Complete(r)
}

// podStopped queues the Components a pod reported on when the pod is deleted or
// reaches a terminal phase, so its reports stop counting.
func podStopped(reports client.Reader) handler.TypedEventHandler[*corev1.Pod, reconcile.Request] {
	enqueue := func(ctx context.Context, pod *corev1.Pod, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		events := &eventsv1.EventList{}
		if err := reports.List(ctx, events, client.InNamespace(pod.Namespace), client.MatchingFields{indexReportPod: pod.Name}); err != nil {
			logf.FromContext(ctx).Error(err, "Failed to list the reports of a pod", "Pod", klog.KObj(pod))
			return
		}
		for i := range events.Items {
			if rep, ok := report.Decode(&events.Items[i]); ok {
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: pod.Namespace, Name: rep.Component}})
			}
		}
	}
	terminal := func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	return handler.TypedFuncs[*corev1.Pod, reconcile.Request]{
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[*corev1.Pod], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if terminal(e.ObjectNew) && !terminal(e.ObjectOld) {
				enqueue(ctx, e.ObjectNew, q)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[*corev1.Pod], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q)
		},
	}
}

// slimPod keeps only what the reconciler reads of a pod: its identity and phase.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone
	}
	return &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp,
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}, nil
}
