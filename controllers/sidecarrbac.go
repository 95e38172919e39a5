package controllers

import (
	"context"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/outrigger-dev/outrigger/webhooks/injector"
)

// Names of the Roles and RoleBindings kept in each namespace with annotated workloads.
const (
	// SidecarRoleName grants read access to the dapr.io resources of the namespace, and
	// lets sidecars record their reports on Components as Events.
	SidecarRoleName = "outrigger-sidecar"
	// SidecarSecretsRoleName grants read access to Secrets, for the built-in kubernetes
	// secret store; workloads that disable it are not bound to it.
	SidecarSecretsRoleName = "outrigger-sidecar-secrets"
)

// sidecarRules is exactly what a sidecar in Kubernetes mode needs: it reads the dapr.io
// resources and reports on each Component it loads with an Event (sidecar/report),
// which it creates, or patches when the same report is made again.
// The operator holds the same events verbs itself, as RBAC lets it grant no more.
var sidecarRules = []rbacv1.PolicyRule{{
	APIGroups: []string{"dapr.io"},
	Resources: []string{"components", "configurations", "subscriptions", "resiliencies", "httpendpoints"},
	Verbs:     []string{"get", "list", "watch"},
}, {
	APIGroups: []string{"events.k8s.io"},
	Resources: []string{"events"},
	Verbs:     []string{"create", "patch"},
}}

var sidecarSecretRules = []rbacv1.PolicyRule{{
	APIGroups: []string{""},
	Resources: []string{"secrets"},
	Verbs:     []string{"get", "list", "watch"},
}}

// sidecarSubjects decides, from a namespace's workloads, which service accounts get
// each Role. It is pure: the reconciler lists, this decides.
func sidecarSubjects(templates []*corev1.PodTemplateSpec) (all, withSecrets []string) {
	for _, t := range templates {
		if !injector.Enabled(t.Annotations) {
			continue
		}
		sa := t.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		if !slices.Contains(all, sa) {
			all = append(all, sa)
		}
		// A malformed annotation leaves the default (the store enabled), as the
		// injector would refuse such a pod anyway.
		cfg, err := injector.ParseAnnotations("rbac", t.Annotations, injector.Defaults{Image: "unused"})
		if (err != nil || !cfg.DisableBuiltinK8sSecretStore) && !slices.Contains(withSecrets, sa) {
			withSecrets = append(withSecrets, sa)
		}
	}
	slices.Sort(all)
	slices.Sort(withSecrets)
	return all, withSecrets
}

// sidecarRBACReconciler works per namespace: the request's name is ignored.
type sidecarRBACReconciler struct{ client client.Client }

// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs;cronjobs,verbs=get;list;watch

func (r *sidecarRBACReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	ns := req.Namespace
	var templates []*corev1.PodTemplateSpec
	deps := &appsv1.DeploymentList{}
	if err := r.client.List(ctx, deps, client.InNamespace(ns)); err != nil {
		return ctrl.Result{}, err
	}
	for i := range deps.Items {
		if deps.Items[i].DeletionTimestamp.IsZero() {
			templates = append(templates, &deps.Items[i].Spec.Template)
		}
	}
	sets := &appsv1.StatefulSetList{}
	if err := r.client.List(ctx, sets, client.InNamespace(ns)); err != nil {
		return ctrl.Result{}, err
	}
	for i := range sets.Items {
		if sets.Items[i].DeletionTimestamp.IsZero() {
			templates = append(templates, &sets.Items[i].Spec.Template)
		}
	}
	// The injector also serves the pods of DaemonSets, Jobs and CronJobs.
	daemons := &appsv1.DaemonSetList{}
	if err := r.client.List(ctx, daemons, client.InNamespace(ns)); err != nil {
		return ctrl.Result{}, err
	}
	for i := range daemons.Items {
		if daemons.Items[i].DeletionTimestamp.IsZero() {
			templates = append(templates, &daemons.Items[i].Spec.Template)
		}
	}
	jobs := &batchv1.JobList{}
	if err := r.client.List(ctx, jobs, client.InNamespace(ns)); err != nil {
		return ctrl.Result{}, err
	}
	for i := range jobs.Items {
		if jobs.Items[i].DeletionTimestamp.IsZero() {
			templates = append(templates, &jobs.Items[i].Spec.Template)
		}
	}
	crons := &batchv1.CronJobList{}
	if err := r.client.List(ctx, crons, client.InNamespace(ns)); err != nil {
		return ctrl.Result{}, err
	}
	for i := range crons.Items {
		if crons.Items[i].DeletionTimestamp.IsZero() {
			templates = append(templates, &crons.Items[i].Spec.JobTemplate.Spec.Template)
		}
	}
	all, withSecrets := sidecarSubjects(templates)
	if err := r.keep(ctx, ns, SidecarRoleName, sidecarRules, all); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.keep(ctx, ns, SidecarSecretsRoleName, sidecarSecretRules, withSecrets)
}

// keep makes the Role and its RoleBinding match, or removes both when no service
// account needs them.
func (r *sidecarRBACReconciler) keep(ctx context.Context, ns, name string, rules []rbacv1.PolicyRule, accounts []string) error {
	log := logf.FromContext(ctx)
	meta := metav1.ObjectMeta{Namespace: ns, Name: name}
	if len(accounts) == 0 {
		for _, obj := range []client.Object{&rbacv1.RoleBinding{ObjectMeta: meta}, &rbacv1.Role{ObjectMeta: meta}} {
			err := r.client.Delete(ctx, obj)
			if err == nil {
				log.Info("Deleted sidecar RBAC", "namespace", ns, "name", name)
			} else if !apierrors.IsNotFound(err) {
				return err
			}
		}
		return nil
	}
	role := &rbacv1.Role{ObjectMeta: meta}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.client, role, func() error {
		role.Labels = map[string]string{LabelManagedBy: ManagedBy}
		role.Rules = rules
		return nil
	}); err != nil {
		return err
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: meta}
	op, err := controllerutil.CreateOrUpdate(ctx, r.client, binding, func() error {
		binding.Labels = map[string]string{LabelManagedBy: ManagedBy}
		binding.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}
		binding.Subjects = nil
		for _, sa := range accounts {
			binding.Subjects = append(binding.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns})
		}
		return nil
	})
	if err == nil && op != controllerutil.OperationResultNone {
		log.Info("Kept sidecar RBAC", "RoleBinding", klog.KObj(binding), "serviceAccounts", accounts, "operation", op)
	}
	return err
}

func setupSidecarRBAC(mgr ctrl.Manager) error {
	toNamespace := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: SidecarRoleName}}}
	})
	// Edits to our Roles are reverted; other Roles are none of our business.
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetName() == SidecarRoleName || o.GetName() == SidecarSecretsRoleName
	})
	return ctrl.NewControllerManagedBy(mgr).Named("sidecar-rbac").
		Watches(&appsv1.Deployment{}, toNamespace).
		Watches(&appsv1.StatefulSet{}, toNamespace).
		Watches(&appsv1.DaemonSet{}, toNamespace).
		Watches(&batchv1.Job{}, toNamespace).
		Watches(&batchv1.CronJob{}, toNamespace).
		Watches(&rbacv1.Role{}, toNamespace, builder.WithPredicates(ours)).
		Watches(&rbacv1.RoleBinding{}, toNamespace, builder.WithPredicates(ours)).
		Complete(&sidecarRBACReconciler{client: mgr.GetClient()})
}
