package sentry

import (
	"context"
	"strings"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	authv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/internal/spiffe"
)

// Validator proves who is asking for a certificate. It returns the identity to sign, or
// a gRPC status error (PermissionDenied, InvalidArgument) saying what did not match.
type Validator interface {
	Validate(ctx context.Context, req *sentryv1pb.SignCertificateRequest) (spiffe.ID, error)
}

// LegacyAudience is the audience of the projected token the injector mounts. Dapr 1.14
// accepts it besides the Sentry's SPIFFE ID (see SentryAudience).
const LegacyAudience = "dapr.io/sentry"

// SentryAudience is the audience daprd 1.13+ asks for: the Sentry's SPIFFE ID in the
// control plane's trust domain.
func SentryAudience(controlPlaneTrustDomain, namespace string) string {
	return spiffe.ID{TrustDomain: controlPlaneTrustDomain, Namespace: namespace, AppID: "dapr-sentry"}.String()
}

// Annotations read from the caller's pod (Dapr's names).
const (
	annotationAppID  = "dapr.io/app-id"
	annotationConfig = "dapr.io/config"
)

// Extra fields the API server puts in the user of a token bound to a pod.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// Kubernetes validates with the pod's projected service-account token.
type Kubernetes struct {
	TokenReviews authv1client.TokenReviewsGetter
	// Reader gets Pods and Configurations; it should read the API server directly, so a
	// pod deleted and recreated under the same name is never mistaken for the old one.
	Reader    client.Reader
	Audiences []string
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups="",resources=pods,verbs=get
// +kubebuilder:rbac:groups=dapr.io,resources=configurations,verbs=get

// Validate runs the checks of Dapr's Kubernetes validator: the token is a service
// account's, bound to a pod that still exists (same UID) in the requested namespace
// and runs as that account; the pod's app id is the requested one; and the trust domain
// is the one its Configuration names.
func (k *Kubernetes) Validate(ctx context.Context, req *sentryv1pb.SignCertificateRequest) (spiffe.ID, error) {
	if req.GetToken() == "" {
		return spiffe.ID{}, status.Error(codes.InvalidArgument, "the request carries no token")
	}
	review, err := k.TokenReviews.TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: req.GetToken(), Audiences: k.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return spiffe.ID{}, status.Errorf(codes.Unavailable, "token review failed: %v", err)
	}
	if !review.Status.Authenticated {
		msg := review.Status.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return spiffe.ID{}, denied("the token was refused for audiences %v: %s", k.Audiences, msg)
	}
	user := review.Status.User
	parts := strings.Split(user.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return spiffe.ID{}, denied("the token is not a service account's (user %q)", user.Username)
	}
	saNamespace, saName := parts[2], parts[3]
	podName, podUID := first(user.Extra[extraPodName]), first(user.Extra[extraPodUID])
	if podName == "" || podUID == "" {
		return spiffe.ID{}, denied("the token of %s is not bound to a pod", user.Username)
	}
	if req.GetNamespace() != saNamespace {
		return spiffe.ID{}, denied("namespace mismatch: the token is from namespace %q, the request asks for %q", saNamespace, req.GetNamespace())
	}

	pod := &corev1.Pod{}
	switch err := k.Reader.Get(ctx, types.NamespacedName{Namespace: saNamespace, Name: podName}, pod); {
	case apierrors.IsNotFound(err):
		return spiffe.ID{}, denied("the token's pod %s/%s no longer exists", saNamespace, podName)
	case err != nil:
		return spiffe.ID{}, status.Errorf(codes.Unavailable, "get pod %s/%s: %v", saNamespace, podName, err)
	}
	if string(pod.UID) != podUID {
		return spiffe.ID{}, denied("the token's pod %s/%s was replaced: UID %s, the token names %s", saNamespace, podName, pod.UID, podUID)
	}
	if pod.Spec.ServiceAccountName != saName {
		return spiffe.ID{}, denied("pod %s/%s runs as service account %q, the token is of %q", saNamespace, podName, pod.Spec.ServiceAccountName, saName)
	}
	// As Dapr: a pod without dapr.io/app-id is known by its name.
	appID, ok := pod.Annotations[annotationAppID]
	if !ok {
		appID = pod.Name
	}
	if appID != req.GetId() {
		return spiffe.ID{}, denied("app id mismatch: pod %s/%s is %q, the request asks for %q", saNamespace, podName, appID, req.GetId())
	}

	td, err := k.trustDomain(ctx, pod)
	if err != nil {
		return spiffe.ID{}, err
	}
	// Dapr ignores the requested trust domain and signs the Configuration's; a request
	// that names another one is refused here rather than handed a surprise.
	if req.GetTrustDomain() != "" && req.GetTrustDomain() != td {
		return spiffe.ID{}, denied("trust domain mismatch: the pod's Configuration gives %q, the request asks for %q", td, req.GetTrustDomain())
	}
	id := spiffe.ID{TrustDomain: td, Namespace: saNamespace, AppID: appID}
	if err := id.Validate(); err != nil {
		return spiffe.ID{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return id, nil
}

func (k *Kubernetes) trustDomain(ctx context.Context, pod *corev1.Pod) (string, error) {
	name, ok := pod.Annotations[annotationConfig]
	if !ok || name == "" {
		return spiffe.DefaultTrustDomain, nil
	}
	cfg := &daprv1alpha1.Configuration{}
	switch err := k.Reader.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: name}, cfg); {
	case apierrors.IsNotFound(err):
		return "", denied("the pod's Configuration %s/%s does not exist", pod.Namespace, name)
	case err != nil:
		return "", status.Errorf(codes.Unavailable, "get Configuration %s/%s: %v", pod.Namespace, name, err)
	}
	if ac := cfg.Spec.AccessControl; ac != nil && ac.TrustDomain != "" {
		return ac.TrustDomain, nil
	}
	return spiffe.DefaultTrustDomain, nil
}

func denied(format string, args ...any) error {
	return status.Errorf(codes.PermissionDenied, format, args...)
}

func first(v authenticationv1.ExtraValue) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
