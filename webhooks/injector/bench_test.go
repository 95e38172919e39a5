package injector

import (
	"context"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// BenchmarkParseAndPatch measures the pure part of an admission: the seed's nodeapp
// pod from annotations to patch operations.
func BenchmarkParseAndPatch(b *testing.B) {
	pod := nodeappPod()
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := ParseAnnotations("nodeapp", pod.Annotations, testDefaults)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := BuildPatch(pod, cfg, PatchOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAndPatchJSON adds the encoding of the operations, which the
// admission response needs, to show what the handler pays on top.
func BenchmarkParseAndPatchJSON(b *testing.B) {
	pod := nodeappPod()
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := ParseAnnotations("nodeapp", pod.Annotations, testDefaults)
		if err != nil {
			b.Fatal(err)
		}
		ops, err := BuildPatch(pod, cfg, PatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(ops); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandle is the whole admission as the webhook server runs it: decode the
// AdmissionRequest's pod, decide, build and encode the patch.
func BenchmarkHandle(b *testing.B) {
	scheme, req := podAdmission(b, nodeappPod())
	h := &Handler{Decoder: admission.NewDecoder(scheme), Defaults: testDefaults, AllowedServiceAccounts: DefaultAllowedServiceAccounts}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp := h.Handle(ctx, req)
		if !resp.Allowed || len(resp.Patches) == 0 {
			b.Fatalf("not patched: %+v", resp.Result)
		}
		if err := resp.Complete(req); err != nil {
			b.Fatal(err)
		}
	}
}

// podAdmission is the admission request of a replica set controller creating pod in
// namespace default, with the scheme that decodes it.
func podAdmission(t testing.TB, pod *corev1.Pod) (*runtime.Scheme, admission.Request) {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "test",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "default",
		Operation: admissionv1.Create,
		UserInfo:  authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller"},
		Object:    runtime.RawExtension{Raw: raw},
	}}
}
