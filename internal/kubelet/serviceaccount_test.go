package kubelet

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// sentryPod is a pod as Dapr's injector leaves it with mTLS on: the sidecar mounts a
// projected token for the certificate authority.
func sentryPod() *corev1.Pod {
	exp := int64(7200)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nodeapp-1", Namespace: "default", UID: "uid-1"},
		Spec: corev1.PodSpec{
			ServiceAccountName: "nodeapp",
			Containers: []corev1.Container{
				{Name: "node"},
				{Name: "daprd", VolumeMounts: []corev1.VolumeMount{{Name: "dapr-identity-token", MountPath: SentryTokenMountPath, ReadOnly: true}}},
			},
			Volumes: []corev1.Volume{
				{Name: "dapr-identity-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "dapr.io/sentry", ExpirationSeconds: &exp, Path: "token"}}},
				}}},
				{Name: "unmounted", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}},
				}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
			},
		},
	}
}

func TestProjectedTokens(t *testing.T) {
	pod := sentryPod()
	got := projectedTokens(pod)
	want := []projectedToken{{volume: "dapr-identity-token", audience: "dapr.io/sentry", expiration: 7200, path: "token"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	dir := func(v string) string { return "/root/pods/p/volumes/" + v }
	if env := volumeTokenEnv(&pod.Spec.Containers[1], got, dir); !reflect.DeepEqual(env, []string{"DAPR_SENTRY_TOKEN_FILE=/root/pods/p/volumes/dapr-identity-token/token"}) {
		t.Errorf("the sidecar's env: %q", env)
	}
	if env := volumeTokenEnv(&pod.Spec.Containers[0], got, dir); env != nil {
		t.Errorf("the app mounts no token but gets %q", env)
	}
}

func TestIssueProjectedToken(t *testing.T) {
	cs := fake.NewClientset()
	var got *authenticationv1.TokenRequest
	cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca, ok := a.(k8stesting.CreateActionImpl)
		if !ok || a.GetSubresource() != "token" {
			return false, nil, nil
		}
		if ca.Name != "nodeapp" || a.GetNamespace() != "default" {
			t.Errorf("token for %s/%s, want default/nodeapp", a.GetNamespace(), ca.Name)
		}
		got = ca.GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		tr := got.DeepCopy()
		tr.Status = authenticationv1.TokenRequestStatus{Token: "sentry-token", ExpirationTimestamp: metav1.NewTime(time.Now().Add(7200 * time.Second))}
		return true, tr, nil
	})
	pod := sentryPod()
	dir := t.TempDir()
	before := time.Now()
	renewAt, err := issueProjectedToken(context.Background(), cs, pod, projectedTokens(pod)[0], dir)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		t.Fatal("no TokenRequest")
	}
	if !reflect.DeepEqual(got.Spec.Audiences, []string{"dapr.io/sentry"}) || got.Spec.ExpirationSeconds == nil || *got.Spec.ExpirationSeconds != 7200 {
		t.Errorf("request: audiences %q, expiration %v", got.Spec.Audiences, got.Spec.ExpirationSeconds)
	}
	if ref := got.Spec.BoundObjectRef; ref == nil || ref.Kind != "Pod" || ref.Name != "nodeapp-1" || ref.UID != "uid-1" {
		t.Errorf("bound to %+v, want the pod", ref)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "token")); err != nil || string(b) != "sentry-token" {
		t.Errorf("token file: %q %v", b, err)
	}
	// Renewed at 80% of its life, as the kubelet renews projected tokens.
	if lo, hi := before.Add(5760*time.Second), time.Now().Add(5760*time.Second); renewAt.Before(lo.Add(-time.Second)) || renewAt.After(hi.Add(time.Second)) {
		t.Errorf("renew at %s, want about 5760s from now", renewAt)
	}
}
