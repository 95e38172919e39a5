package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

// Field indexes that map a Secret or a Component to the objects that reference it.
const (
	indexSecretRefs    = "outrigger.refs.secrets"
	indexComponentRefs = "outrigger.refs.components"
)

// refs are the names an object depends on in its namespace.
type refs struct {
	secrets    []string
	components []string
}

// readiness reconciles the Ready condition of one kind. Every kind follows the same
// steps: fetch the object, load what it references, run its pure checks, patch status.
type readiness[T client.Object] struct {
	client   client.Client
	recorder events.EventRecorder
	kind     string
	newObj   func() T
	newList  func() client.ObjectList
	status   func(T) *common.Status
	refs     func(T) refs
	verdict  func(T, namespaceView) verdict
}

func (r *readiness[T]) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	obj := r.newObj()
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	view, err := r.view(ctx, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.patchStatus(ctx, obj, r.verdict(obj, view))
}

func (r *readiness[T]) view(ctx context.Context, obj T) (namespaceView, error) {
	v := namespaceView{secrets: map[string]map[string][]byte{}, components: map[string]*daprv1alpha1.Component{}}
	ns := obj.GetNamespace()
	for _, name := range r.refs(obj).secrets {
		s := &corev1.Secret{}
		err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return v, fmt.Errorf("get Secret %s/%s: %w", ns, name, err)
		default:
			data := map[string][]byte{}
			for k, val := range s.Data {
				data[k] = val
			}
			for k, val := range s.StringData {
				data[k] = []byte(val)
			}
			v.secrets[name] = data
		}
	}
	if len(r.refs(obj).components) > 0 || r.kind == "Component" {
		list := &daprv1alpha1.ComponentList{}
		if err := r.client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return v, fmt.Errorf("list Components in %s: %w", ns, err)
		}
		for i := range list.Items {
			v.components[list.Items[i].Name] = &list.Items[i]
		}
	}
	return v, nil
}

// patchStatus writes the condition and observedGeneration in one patch, and records an
// Event when Ready changes, so `kubectl describe` tells the story.
func (r *readiness[T]) patchStatus(ctx context.Context, obj T, v verdict) error {
	base := obj.DeepCopyObject().(T)
	st := r.status(obj)
	cond := metav1.Condition{
		Type:               common.ConditionReady,
		Status:             metav1.ConditionTrue,
		Reason:             v.reason,
		Message:            v.message,
		ObservedGeneration: obj.GetGeneration(),
	}
	if v.reason != ReasonReady {
		cond.Status = metav1.ConditionFalse
	}
	prev := meta.FindStatusCondition(st.Conditions, common.ConditionReady)
	changed := meta.SetStatusCondition(&st.Conditions, cond)
	if st.ObservedGeneration != obj.GetGeneration() {
		st.ObservedGeneration = obj.GetGeneration()
		changed = true
	}
	if !changed {
		return nil
	}
	if err := r.client.Status().Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsConflict(err) {
			// A newer version is queued and will be reconciled.
			return nil
		}
		return client.IgnoreNotFound(err)
	}
	logf.FromContext(ctx).V(1).Info("Updated Ready condition", r.kind, klog.KObj(obj), "status", cond.Status, "reason", cond.Reason)
	if prev == nil || prev.Status != cond.Status || prev.Reason != cond.Reason {
		eventType := corev1.EventTypeNormal
		if cond.Status == metav1.ConditionFalse {
			eventType = corev1.EventTypeWarning
		}
		r.recorder.Eventf(obj, nil, eventType, cond.Reason, "Validate", "%s", cond.Message)
	}
	return nil
}

// setup registers the indexes, the watches on Secrets and Components that map back to
// the referencing objects, and the controller.
func (r *readiness[T]) setup(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, r.newObj(), indexSecretRefs, func(o client.Object) []string {
		return r.refs(o.(T)).secrets
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, r.newObj(), indexComponentRefs, func(o client.Object) []string {
		return r.refs(o.(T)).components
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(r.kind).
		For(r.newObj()).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.referencing(indexSecretRefs))).
		Watches(&daprv1alpha1.Component{}, handler.EnqueueRequestsFromMapFunc(r.referencing(indexComponentRefs))).
		Complete(r)
}

func (r *readiness[T]) referencing(index string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		list := r.newList()
		if err := r.client.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: o.GetName()}); err != nil {
			logf.FromContext(ctx).Error(err, "Failed to list referencing objects", "kind", r.kind, "index", index)
			return nil
		}
		var reqs []reconcile.Request
		_ = meta.EachListItem(list, func(item runtime.Object) error {
			co := item.(client.Object)
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(co)})
			return nil
		})
		return reqs
	}
}
