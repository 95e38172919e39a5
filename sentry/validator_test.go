package sentry

import (
	"context"
	"strings"
	"testing"
	"time"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// The API server already refuses a token whose pod is gone or replaced; the validator
// checks the same itself, from the user the review returns, so a reviewer that does
// not (a webhook authenticator, an older server) cannot let a stale token through.
func TestKubernetesValidatorChecksPodFromReview(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "nodeapp-1", UID: "new-uid", Annotations: map[string]string{"dapr.io/app-id": "nodeapp"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "nodeapp"},
	}
	review := func(user authenticationv1.UserInfo) *kfake.Clientset {
		cs := kfake.NewClientset()
		cs.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, &authenticationv1.TokenReview{Status: authenticationv1.TokenReviewStatus{Authenticated: true, User: user}}, nil
		})
		return cs
	}
	bound := func(sa, uid string) authenticationv1.UserInfo {
		return authenticationv1.UserInfo{Username: "system:serviceaccount:apps:" + sa, Extra: map[string]authenticationv1.ExtraValue{
			extraPodName: {"nodeapp-1"}, extraPodUID: {uid}}}
	}
	req := &sentryv1pb.SignCertificateRequest{Id: "nodeapp", Namespace: "apps", Token: "t"}
	for name, tc := range map[string]struct {
		user authenticationv1.UserInfo
		msg  string
	}{
		"ok":                    {bound("nodeapp", "new-uid"), ""},
		"stale UID":             {bound("nodeapp", "old-uid"), "was replaced"},
		"other account":         {bound("default", "new-uid"), "runs as service account"},
		"unbound token":         {authenticationv1.UserInfo{Username: "system:serviceaccount:apps:nodeapp"}, "not bound to a pod"},
		"not a service account": {authenticationv1.UserInfo{Username: "alice"}, "not a service account"},
	} {
		t.Run(name, func(t *testing.T) {
			v := &Kubernetes{TokenReviews: review(tc.user).AuthenticationV1(), Reader: fake.NewClientBuilder().WithObjects(pod).Build(),
				Audiences: []string{LegacyAudience}}
			id, err := v.Validate(ctx, req)
			if tc.msg == "" {
				if err != nil || id.String() != "spiffe://public/ns/apps/nodeapp" {
					t.Fatalf("%v %v", id, err)
				}
				return
			}
			if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v, want PermissionDenied with %q", err, tc.msg)
			}
		})
	}
}
