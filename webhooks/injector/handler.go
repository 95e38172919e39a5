package injector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// WebhookPath is where the API server sends pod admissions.
const WebhookPath = "/mutate-pod"

// DefaultAllowedServiceAccounts are the controllers whose pods Dapr injects by default:
// Kubernetes' own workload controllers, which create the pods of Deployments,
// StatefulSets, DaemonSets, Jobs and CronJobs.
var DefaultAllowedServiceAccounts = []string{
	"kube-system:replicaset-controller",
	"kube-system:deployment-controller",
	"kube-system:cronjob-controller",
	"kube-system:job-controller",
	"kube-system:statefulset-controller",
	"kube-system:daemon-set-controller",
	"tekton-pipelines:tekton-pipelines-controller",
}

// mastersGroup may always create injected pods, as in Dapr: cluster admins.
const mastersGroup = "system:masters"

// +kubebuilder:webhook:path=/mutate-pod,mutating=true,failurePolicy=ignore,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=sidecar-injector.dapr.io,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded

// Handler admits pods: it decodes, decides with the pure functions of this package,
// and answers. It never reaches out to anything.
type Handler struct {
	Decoder  admission.Decoder
	Defaults Defaults
	Patch    PatchOptions
	// ControlPlaneNamespace is never injected: the operator must not depend on itself.
	ControlPlaneNamespace string
	// AllowedServiceAccounts ("namespace:name") may create injected pods, besides
	// members of system:masters. An empty list allows everyone.
	AllowedServiceAccounts []string
	// MTLS, when set, gives every sidecar what it needs to get its certificate from
	// the operator's certificate authority.
	MTLS *MTLSSource
}

// MTLSSource is where the handler finds the mTLS settings of a new sidecar.
type MTLSSource struct {
	// SentryAddress is host:port of the certificate authority's Service.
	SentryAddress string
	// ControlPlaneNamespace is the operator's namespace.
	ControlPlaneNamespace string
	// TrustAnchors returns the PEM roots sidecars trust; they change when the root
	// is rotated, so they are read for each pod.
	TrustAnchors func(ctx context.Context) (string, error)
	// Enabled reports whether the cluster wants mTLS now (Dapr's daprsystem
	// Configuration, spec.mtls.enabled); nil means always.
	Enabled func(ctx context.Context) (bool, error)
}

// enabled is whether a new sidecar gets mTLS.
func (m *MTLSSource) enabled(ctx context.Context) (bool, error) {
	if m == nil {
		return false, nil
	}
	if m.Enabled == nil {
		return true, nil
	}
	return m.Enabled(ctx)
}

// TrustAnchorsFromConfigMap reads the key ca.crt of the ConfigMap namespace/name, where
// the certificate authority publishes its roots.
func TrustAnchorsFromConfigMap(c client.Reader, namespace, name string) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, cm); err != nil {
			return "", fmt.Errorf("read the trust anchors from ConfigMap %s/%s: %w", namespace, name, err)
		}
		anchors := cm.Data["ca.crt"]
		if strings.TrimSpace(anchors) == "" {
			return "", fmt.Errorf("ConfigMap %s/%s has no ca.crt: the certificate authority has not published its roots yet", namespace, name)
		}
		return anchors, nil
	}
}

// SetupWithManager serves the handler on the manager's webhook server.
func SetupWithManager(mgr ctrl.Manager, h *Handler) error {
	if h.Decoder == nil {
		h.Decoder = admission.NewDecoder(mgr.GetScheme())
	}
	if h.Defaults.Image == "" {
		return errors.New("sidecar injector: no default sidecar image")
	}
	mgr.GetWebhookServer().Register(WebhookPath, &webhook.Admission{Handler: h})
	return nil
}

func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	switch {
	case !Enabled(pod.Annotations):
		return admission.Allowed("dapr.io/enabled is not true")
	case h.ControlPlaneNamespace != "" && pod.Namespace == h.ControlPlaneNamespace:
		return admission.Allowed("pods in the control plane's namespace are not injected")
	case HasSidecar(pod):
		return admission.Allowed("daprd is already present")
	}
	if reason := h.requesterDenied(req.UserInfo); reason != "" {
		resp := admission.Allowed("sidecar not injected")
		resp.Warnings = []string{"dapr.io: sidecar not injected: " + reason}
		return resp
	}
	cfg, err := ParseAnnotations(podName(pod), pod.Annotations, h.Defaults)
	if err != nil {
		return admission.Denied("dapr.io sidecar injection: " + joinErrors(err))
	}
	if on, err := h.MTLS.enabled(ctx); err != nil {
		return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("dapr.io sidecar injection: %w", err))
	} else if on {
		anchors, err := h.MTLS.TrustAnchors(ctx)
		if err != nil {
			// Retried by the pod's controller; a sidecar without anchors could not start.
			return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("dapr.io sidecar injection: mTLS is on but %w", err))
		}
		cfg.MTLS = &MTLS{SentryAddress: h.MTLS.SentryAddress, TrustAnchors: anchors, ControlPlaneNamespace: h.MTLS.ControlPlaneNamespace}
	}
	patch, err := BuildPatch(pod, cfg, h.Patch)
	if err != nil {
		return admission.Denied("dapr.io sidecar injection: " + joinErrors(err))
	}
	logf.FromContext(ctx).V(1).Info("Injecting sidecar", "namespace", pod.Namespace, "appID", cfg.AppID, "operations", len(patch))
	resp := admission.Patched("sidecar injected", patch...)
	resp.Warnings = cfg.Warnings
	return resp
}

// requesterDenied returns why the requester may not create injected pods, or "".
func (h *Handler) requesterDenied(u authenticationv1.UserInfo) string {
	if len(h.AllowedServiceAccounts) == 0 || slices.Contains(u.Groups, mastersGroup) {
		return ""
	}
	if ns, name, ok := strings.Cut(strings.TrimPrefix(u.Username, "system:serviceaccount:"), ":"); ok &&
		strings.HasPrefix(u.Username, "system:serviceaccount:") && slices.Contains(h.AllowedServiceAccounts, ns+":"+name) {
		return ""
	}
	return fmt.Sprintf("%q is not on the list of accounts allowed to create pods with sidecars (the operator's --allowed-service-accounts)", u.Username)
}

// podName stands in for the name of a pod that a controller creates with generateName:
// app-id defaults to it, and the app Service of a Deployment uses the Deployment's name.
func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	name := strings.TrimSuffix(pod.GenerateName, "-")
	if hash := pod.Labels["pod-template-hash"]; hash != "" {
		name = strings.TrimSuffix(name, "-"+hash)
	}
	return name
}

// joinErrors puts each annotation's problem on one line of the denial.
func joinErrors(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
