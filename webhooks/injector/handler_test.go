package injector

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// With mTLS on, the handler reads the trust anchors the certificate authority
// published and gives them to the sidecar; until they exist, it refuses the pod with
// a reason, so that its controller retries instead of starting a sidecar that cannot
// get a certificate.
func TestHandleMTLS(t *testing.T) {
	scheme, req := podAdmission(t, nodeappPod())
	const anchors = "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"
	handler := func(objs ...runtime.Object) *Handler {
		c := fake.NewClientBuilder().WithScheme(scheme).WithRuntimeObjects(objs...).Build()
		return &Handler{Decoder: admission.NewDecoder(scheme), Defaults: testDefaults, MTLS: &MTLSSource{
			SentryAddress: "dapr-sentry.outrigger-system.svc:443", ControlPlaneNamespace: "outrigger-system",
			TrustAnchors: TrustAnchorsFromConfigMap(c, "outrigger-system", "dapr-trust-bundle"),
		}}
	}

	resp := handler().Handle(context.Background(), req)
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusServiceUnavailable || !strings.Contains(resp.Result.Message, "outrigger-system/dapr-trust-bundle") {
		t.Fatalf("without the trust bundle: %+v", resp.Result)
	}
	empty := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "outrigger-system", Name: "dapr-trust-bundle"}}
	if resp := handler(empty).Handle(context.Background(), req); resp.Allowed || !strings.Contains(resp.Result.Message, "no ca.crt") {
		t.Fatalf("with an empty trust bundle: %+v", resp.Result)
	}

	bundle := empty.DeepCopy()
	bundle.Data = map[string]string{"ca.crt": anchors}
	resp = handler(bundle).Handle(context.Background(), req)
	if !resp.Allowed || len(resp.Patches) == 0 {
		t.Fatalf("with the trust bundle: %+v", resp.Result)
	}
	patched, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{EnvTrustAnchors, EnvControlPlaneNamespace, "--enable-mtls", "dapr-sentry.outrigger-system.svc:443", SentryTokenAudience} {
		if !strings.Contains(string(patched), want) {
			t.Errorf("the patch lacks %q: %s", want, patched)
		}
	}

	// The cluster's daprsystem Configuration turned mTLS off: nothing of it is injected;
	// when it cannot be read, the pod waits.
	off := handler(bundle)
	off.MTLS.Enabled = func(context.Context) (bool, error) { return false, nil }
	resp = off.Handle(context.Background(), req)
	patched, err = json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Allowed || strings.Contains(string(patched), EnvTrustAnchors) || strings.Contains(string(patched), "--enable-mtls") {
		t.Errorf("mTLS off in daprsystem, still patched with it: %s", patched)
	}
	broken := handler(bundle)
	broken.MTLS.Enabled = func(context.Context) (bool, error) { return false, errors.New("the API server is away") }
	if resp := broken.Handle(context.Background(), req); resp.Allowed || resp.Result.Code != http.StatusServiceUnavailable {
		t.Errorf("unreadable daprsystem: %+v", resp.Result)
	}
}
