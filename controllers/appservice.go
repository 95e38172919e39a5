package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/outrigger-dev/outrigger/webhooks/injector"
)

// Labels on the objects the operator keeps for annotated workloads.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "outrigger"
	// LabelWorkload names the workload ("Deployment/nodeapp") a Service belongs to, so it
	// can be found again once the workload is gone.
	LabelWorkload = "outrigger.dapr.io/workload"
	// LabelEnabled marks app Services like Dapr's operator does.
	LabelEnabled = "dapr.io/enabled"
)

// Prometheus discovery annotations on app Services, as Dapr's operator sets them
// (scrape is Dapr's deprecated spelling of probe, kept for old configurations).
const (
	annotationPrometheusProbe  = "prometheus.io/probe"
	annotationPrometheusScrape = "prometheus.io/scrape"
	annotationPrometheusPort   = "prometheus.io/port"
	annotationPrometheusPath   = "prometheus.io/path"
)

// Names of the app Service's ports, as Dapr's operator names them.
const (
	PortNameHTTP     = "http"
	PortNameGRPC     = "dapr-grpc"
	PortNameInternal = "dapr-internal"
	PortNameMetrics  = "dapr-metrics"
)

// AppServiceName is the headless Service through which sidecars find an app.
func AppServiceName(appID string) string { return appID + "-dapr" }

// workload adapts Deployments and StatefulSets, the kinds that get an app Service.
type workload interface {
	client.Object
	// object is the API object itself, for owner references and Events.
	object() client.Object
	template() *corev1.PodTemplateSpec
	selector() *metav1.LabelSelector
}

type deployment struct{ *appsv1.Deployment }

func (d deployment) object() client.Object             { return d.Deployment }
func (d deployment) template() *corev1.PodTemplateSpec { return &d.Spec.Template }
func (d deployment) selector() *metav1.LabelSelector   { return d.Spec.Selector }

type statefulSet struct{ *appsv1.StatefulSet }

func (s statefulSet) object() client.Object             { return s.StatefulSet }
func (s statefulSet) template() *corev1.PodTemplateSpec { return &s.Spec.Template }
func (s statefulSet) selector() *metav1.LabelSelector   { return s.Spec.Selector }

// appServiceReconciler keeps `<app-id>-dapr` for one workload kind, owned by the
// workload so that Kubernetes removes it with the workload.
type appServiceReconciler struct {
	client   client.Client
	recorder events.EventRecorder
	kind     string
	get      func(ctx context.Context, key client.ObjectKey) (workload, error)
}

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete

func (r *appServiceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	w, err := r.get(ctx, req.NamespacedName)
	if apierrors.IsNotFound(err) {
		// The garbage collector removes owned Services too; deleting here makes it
		// prompt, and works where no garbage collector runs.
		return ctrl.Result{}, r.deleteServices(ctx, req.Namespace, r.workloadLabel(req.Name), "")
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	tmpl := w.template()
	if !w.GetDeletionTimestamp().IsZero() || !injector.Enabled(tmpl.Annotations) {
		return ctrl.Result{}, r.deleteServices(ctx, req.Namespace, r.workloadLabel(req.Name), "")
	}
	// A StatefulSet's pods are named <set>-<ordinal>, and without dapr.io/app-id each
	// one's sidecar takes its own name as app id: no single Service can serve them, so
	// like Dapr's operator we keep none and say why.
	if r.kind == "StatefulSet" && strings.TrimSpace(tmpl.Annotations[injector.AnnotationAppID]) == "" {
		r.recorder.Eventf(w.object(), nil, corev1.EventTypeWarning, "MissingAppID", "AppService",
			"no app Service: set %s on the pod template so that its pods share one app id", injector.AnnotationAppID)
		return ctrl.Result{}, r.deleteServices(ctx, req.Namespace, r.workloadLabel(req.Name), "")
	}
	// A Deployment's name stands in for its pods' generated names: the injector derives
	// the same app id from them.
	cfg, err := injector.ParseAnnotations(w.GetName(), tmpl.Annotations, injector.Defaults{Image: "unused"})
	if err != nil {
		r.recorder.Eventf(w.object(), nil, corev1.EventTypeWarning, "InvalidAnnotations", "AppService", "%v", err)
		return ctrl.Result{}, nil
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: w.GetNamespace(), Name: AppServiceName(cfg.AppID)}}
	op, err := controllerutil.CreateOrUpdate(ctx, r.client, svc, func() error {
		if owner := metav1.GetControllerOf(svc); owner != nil && (owner.Kind != r.kind || owner.Name != w.GetName()) {
			return fmt.Errorf("app id %q is already served by %s %s", cfg.AppID, owner.Kind, owner.Name)
		}
		if svc.Labels == nil {
			svc.Labels = map[string]string{}
		}
		svc.Labels[LabelManagedBy] = ManagedBy
		svc.Labels[LabelWorkload] = r.workloadLabel(w.GetName())
		svc.Labels[LabelEnabled] = "true"
		// Dapr's operator annotates the Service so Prometheus finds the sidecars.
		if svc.Annotations == nil {
			svc.Annotations = map[string]string{}
		}
		svc.Annotations[injector.AnnotationAppID] = cfg.AppID
		for _, k := range []string{annotationPrometheusProbe, annotationPrometheusScrape, annotationPrometheusPort, annotationPrometheusPath} {
			delete(svc.Annotations, k)
		}
		if cfg.EnableMetrics {
			svc.Annotations[annotationPrometheusProbe] = "true"
			svc.Annotations[annotationPrometheusScrape] = "true"
			svc.Annotations[annotationPrometheusPort] = strconv.Itoa(int(cfg.MetricsPort))
			svc.Annotations[annotationPrometheusPath] = "/"
		}
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		svc.Spec.Selector = w.selector().MatchLabels
		svc.Spec.Ports = appServicePorts(cfg)
		return controllerutil.SetControllerReference(w.object(), svc, r.client.Scheme())
	})
	if err != nil {
		r.recorder.Eventf(w.object(), nil, corev1.EventTypeWarning, "AppServiceFailed", "AppService", "%v", err)
		return ctrl.Result{}, err
	}
	if op != controllerutil.OperationResultNone {
		logf.FromContext(ctx).Info("App Service kept", r.kind, klog.KObj(w), "Service", klog.KObj(svc), "operation", op)
	}
	// An app id that changed leaves the old Service behind: remove it.
	return ctrl.Result{}, r.deleteServices(ctx, req.Namespace, r.workloadLabel(req.Name), svc.Name)
}

func appServicePorts(cfg *injector.SidecarConfig) []corev1.ServicePort {
	port := func(name string, port, target int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(target)}
	}
	return []corev1.ServicePort{
		port(PortNameHTTP, 80, cfg.HTTPPort),
		port(PortNameGRPC, cfg.GRPCPort, cfg.GRPCPort),
		port(PortNameInternal, cfg.InternalGRPCPort, cfg.InternalGRPCPort),
		port(PortNameMetrics, cfg.MetricsPort, cfg.MetricsPort),
	}
}

func (r *appServiceReconciler) workloadLabel(name string) string {
	return labelValue(r.kind + "." + name)
}

// labelValue fits a value into a label's 63 characters, keeping it unique with a hash.
func labelValue(v string) string {
	if len(v) <= 63 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return v[:46] + "-" + hex.EncodeToString(sum[:8])
}

// deleteServices removes the workload's app Services except keep.
func (r *appServiceReconciler) deleteServices(ctx context.Context, ns, workload, keep string) error {
	list := &corev1.ServiceList{}
	if err := r.client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{LabelWorkload: workload, LabelManagedBy: ManagedBy}); err != nil {
		return err
	}
	for i := range list.Items {
		svc := &list.Items[i]
		if svc.Name == keep {
			continue
		}
		if err := r.client.Delete(ctx, svc); client.IgnoreNotFound(err) != nil {
			return err
		}
		logf.FromContext(ctx).Info("Deleted app Service", "Service", klog.KObj(svc))
	}
	return nil
}

func setupAppServices(mgr ctrl.Manager) error {
	c, rec := mgr.GetClient(), mgr.GetEventRecorder("outrigger-operator")
	dep := &appServiceReconciler{client: c, recorder: rec, kind: "Deployment",
		get: func(ctx context.Context, key client.ObjectKey) (workload, error) {
			d := &appsv1.Deployment{}
			return deployment{d}, c.Get(ctx, key, d)
		}}
	if err := ctrl.NewControllerManagedBy(mgr).Named("deployment-app-service").
		For(&appsv1.Deployment{}).Owns(&corev1.Service{}).Complete(dep); err != nil {
		return err
	}
	sts := &appServiceReconciler{client: c, recorder: rec, kind: "StatefulSet",
		get: func(ctx context.Context, key client.ObjectKey) (workload, error) {
			s := &appsv1.StatefulSet{}
			return statefulSet{s}, c.Get(ctx, key, s)
		}}
	return ctrl.NewControllerManagedBy(mgr).Named("statefulset-app-service").
		For(&appsv1.StatefulSet{}).Owns(&corev1.Service{}).Complete(sts)
}
