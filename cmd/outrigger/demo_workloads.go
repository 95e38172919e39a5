package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/internal/kubelet"
)

// workloads plays, in the demo's namespace, the controllers that the local control plane
// does not run: the Deployment controller (a ReplicaSet per pod template, the old ones
// scaled away at once, as the Recreate strategy does), the ReplicaSet controller (pods
// created through the API server, so that the webhook injects them, as the ReplicaSet
// controller's service account), the scheduler (one node), the ServiceAccount
// controller and admission plugin (the account exists and is named in the pod), the
// garbage collector for these, and the status of Deployments and ReplicaSets. So
// `kubectl apply` of a Deployment, a changed template, `kubectl scale` and `kubectl
// delete pod` behave as in a cluster.
type workloads struct {
	d       *demo
	creator client.Client
	as      string
	// status is the last status patched per object, so that only changes are sent.
	status map[string]string
}

func newWorkloads(d *demo) (*workloads, error) {
	w := &workloads{d: d, status: map[string]string{}}
	cfg := rest.CopyConfig(d.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: replicaSetController}
	c, err := client.New(cfg, client.Options{Scheme: d.scheme})
	if err != nil {
		return nil, err
	}
	w.creator, w.as = c, "the ReplicaSet controller"
	return w, nil
}

// run reconciles every second until ctx ends.
func (w *workloads) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if err := w.reconcileAll(ctx); err != nil && ctx.Err() == nil {
			w.d.say("Workloads: %v", err)
		}
	}
}

func (w *workloads) reconcileAll(ctx context.Context) error {
	c := w.d.c
	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps, client.InNamespace(demoNamespace)); err != nil {
		return err
	}
	live := map[types.UID]bool{}
	var errs []error
	for i := range deps.Items {
		dep := &deps.Items[i]
		live[dep.UID] = true
		if dep.DeletionTimestamp == nil {
			if err := w.reconcile(ctx, dep); err != nil {
				errs = append(errs, fmt.Errorf("deployment %s: %w", dep.Name, err))
			}
		}
	}
	// The garbage collector's part: ReplicaSets whose Deployment is gone go, with their
	// pods.
	var rss appsv1.ReplicaSetList
	if err := c.List(ctx, &rss, client.InNamespace(demoNamespace)); err != nil {
		return errors.Join(append(errs, err)...)
	}
	for i := range rss.Items {
		rs := &rss.Items[i]
		if owner := metav1.GetControllerOf(rs); owner != nil && owner.Kind == "Deployment" && !live[owner.UID] {
			if err := w.scaleAway(ctx, rs, true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// reconcile brings one Deployment to one ReplicaSet of its current template, with
// spec.replicas pods.
func (w *workloads) reconcile(ctx context.Context, dep *appsv1.Deployment) error {
	c := w.d.c
	tmpl := dep.Spec.Template.DeepCopy()
	hash := templateHash(tmpl)
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	selector := dep.Spec.Selector.DeepCopy()
	if selector.MatchLabels == nil {
		selector.MatchLabels = map[string]string{}
	}
	selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	replicas := int32(1)
	if dep.Spec.Replicas != nil {
		replicas = *dep.Spec.Replicas
	}
	// The ServiceAccount admission plugin's part, which envtest's API server leaves out.
	if tmpl.Spec.ServiceAccountName == "" {
		tmpl.Spec.ServiceAccountName = "default"
	}

	// Old ReplicaSets of this Deployment lose their pods first (Recreate).
	var rss appsv1.ReplicaSetList
	if err := c.List(ctx, &rss, client.InNamespace(dep.Namespace)); err != nil {
		return err
	}
	var current *appsv1.ReplicaSet
	for i := range rss.Items {
		rs := &rss.Items[i]
		if owner := metav1.GetControllerOf(rs); owner == nil || owner.UID != dep.UID {
			continue
		}
		if rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash {
			current = rs
			continue
		}
		if err := w.scaleAway(ctx, rs, false); err != nil {
			return err
		}
	}
	if current == nil {
		current = &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Name: dep.Name + "-" + hash, Namespace: dep.Namespace, Labels: tmpl.Labels,
				Annotations:     map[string]string{"deployment.kubernetes.io/revision": strconv.FormatInt(dep.Generation, 10)},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
			},
			Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: selector, Template: *tmpl},
		}
		if err := c.Create(ctx, current); err != nil {
			return err
		}
	} else if current.Spec.Replicas == nil || *current.Spec.Replicas != replicas {
		base := current.DeepCopy()
		current.Spec.Replicas = &replicas
		if err := c.Patch(ctx, current, client.MergeFrom(base)); err != nil {
			return err
		}
	}

	pods, err := w.podsOf(ctx, current)
	if err != nil {
		return err
	}
	if missing := int(replicas) - len(pods); missing > 0 {
		if err := w.d.ensureServiceAccount(ctx, dep.Namespace, tmpl.Spec.ServiceAccountName); err != nil {
			return err
		}
		w.waitSidecarAccess(ctx, dep.Namespace, tmpl.Spec.ServiceAccountName)
		for range missing {
			if err := w.createPod(ctx, current, tmpl); err != nil {
				return err
			}
		}
	} else {
		for _, p := range pods[replicas:] {
			if err := c.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return w.reportStatus(ctx, dep, current)
}

// podsOf lists the ReplicaSet's pods that are not being deleted.
func (w *workloads) podsOf(ctx context.Context, rs *appsv1.ReplicaSet) ([]*corev1.Pod, error) {
	var list corev1.PodList
	if err := w.d.c.List(ctx, &list, client.InNamespace(rs.Namespace), client.MatchingLabels(rs.Spec.Selector.MatchLabels)); err != nil {
		return nil, err
	}
	var pods []*corev1.Pod
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp == nil {
			pods = append(pods, &list.Items[i])
		}
	}
	return pods, nil
}

// scaleAway deletes a ReplicaSet's pods and, when remove is set, the ReplicaSet.
func (w *workloads) scaleAway(ctx context.Context, rs *appsv1.ReplicaSet, remove bool) error {
	pods, err := w.podsOf(ctx, rs)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if err := w.d.c.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		w.d.say("Deleted pod %s of replicaset %s", p.Name, rs.Name)
	}
	if remove {
		if err := w.d.c.Delete(ctx, rs); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	}
	if rs.Spec.Replicas == nil || *rs.Spec.Replicas != 0 {
		base := rs.DeepCopy()
		rs.Spec.Replicas = new(int32(0))
		if err := w.d.c.Patch(ctx, rs, client.MergeFrom(base)); err != nil {
			return err
		}
	}
	_, _, err = w.reportRSStatus(ctx, rs)
	return err
}

func (w *workloads) createPod(ctx context.Context, rs *appsv1.ReplicaSet, tmpl *corev1.PodTemplateSpec) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: rs.Name + "-", Namespace: rs.Namespace,
			Labels: tmpl.Labels, Annotations: tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))},
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	// The scheduler's part: there is one node.
	pod.Spec.NodeName = kubelet.DefaultNodeName
	if err := w.creator.Create(ctx, pod); err != nil {
		if !apierrors.IsForbidden(err) || w.creator == w.d.c {
			return err
		}
		// An API server that will not let the admin act as the ReplicaSet controller:
		// the admin creates the pods (system:masters may have them injected too).
		w.creator, w.as = w.d.c, "admin"
		if err := w.creator.Create(ctx, pod); err != nil {
			return err
		}
	}
	injected := "not injected"
	for _, c := range pod.Spec.Containers {
		if c.Name == "daprd" {
			injected = "daprd injected by the webhook"
		}
	}
	w.d.say("Created pod %s (as %s; %s)", pod.Name, w.as, injected)
	return nil
}

// sidecarResources are what a sidecar lists at start-up, through the operator's Role.
var sidecarResources = []string{"components", "configurations", "subscriptions", "resiliencies", "httpendpoints"}

// waitSidecarAccess waits until the service account may list the dapr.io resources.
// The operator grants that once it sees the Deployment; a pod that started before would
// have its sidecar refused, and restarted.
func (w *workloads) waitSidecarAccess(ctx context.Context, namespace, sa string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	user := "system:serviceaccount:" + namespace + ":" + sa
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	allowed := func() bool {
		for _, res := range sidecarResources {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: groups,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "list", Group: "dapr.io", Resource: res},
			}}
			if err := w.d.c.Create(ctx, sar); err != nil || !sar.Status.Allowed {
				return false
			}
		}
		return true
	}
	for !allowed() {
		select {
		case <-ctx.Done():
			w.d.say("Service account %s/%s still may not read the dapr.io resources; the sidecars may restart until the operator grants it", namespace, sa)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reportRSStatus writes the ReplicaSet's status from its pods and returns the counts.
func (w *workloads) reportRSStatus(ctx context.Context, rs *appsv1.ReplicaSet) (n, ready int32, err error) {
	pods, err := w.podsOf(ctx, rs)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range pods {
		n++
		if podReady(p) {
			ready++
		}
	}
	err = w.patchStatus(ctx, rs, "ReplicaSet", appsv1.ReplicaSetStatus{
		Replicas: n, FullyLabeledReplicas: n, ReadyReplicas: ready, AvailableReplicas: ready, ObservedGeneration: rs.Generation,
	})
	return n, ready, err
}

// reportStatus writes the current ReplicaSet's and the Deployment's status.
func (w *workloads) reportStatus(ctx context.Context, dep *appsv1.Deployment, rs *appsv1.ReplicaSet) error {
	n, ready, err := w.reportRSStatus(ctx, rs)
	if err != nil {
		return err
	}
	available := corev1.ConditionFalse
	reason := "MinimumReplicasUnavailable"
	if dep.Spec.Replicas == nil || ready >= *dep.Spec.Replicas {
		available, reason = corev1.ConditionTrue, "MinimumReplicasAvailable"
	}
	cond := appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: available, Reason: reason}
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == available {
			cond.LastTransitionTime, cond.LastUpdateTime = c.LastTransitionTime, c.LastUpdateTime
		}
	}
	if cond.LastTransitionTime.IsZero() {
		cond.LastTransitionTime, cond.LastUpdateTime = metav1.Now(), metav1.Now()
	}
	return w.patchStatus(ctx, dep, "Deployment", appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation, Replicas: n, UpdatedReplicas: n,
		ReadyReplicas: ready, AvailableReplicas: ready, UnavailableReplicas: max(0, n-ready),
		Conditions: []appsv1.DeploymentCondition{cond},
	})
}

func (w *workloads) patchStatus(ctx context.Context, obj client.Object, kind string, status any) error {
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	key := kind + "/" + obj.GetName() + "/" + string(obj.GetUID())
	if w.status[key] == string(body) {
		return nil
	}
	if err := w.d.c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)); err != nil {
		return err
	}
	w.status[key] = string(body)
	return nil
}

// templateHash names a template's ReplicaSet, as the Deployment controller does (an FNV
// hash, in the alphabet of generated names).
func templateHash(t *corev1.PodTemplateSpec) string {
	data, _ := json.Marshal(t)
	h := fnv.New32a()
	_, _ = h.Write(data)
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}
