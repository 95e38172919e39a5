package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/sentry"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

// Sidecars get their certificates from the operator's certificate authority, proving
// their pods with bound service-account tokens that a real API server reviews; they
// then call each other over mTLS, and access control on the receiving side goes by the
// caller's certificate, so an app cannot pass for another.
func TestMTLSWithTheOperatorsCertificateAuthority(t *testing.T) {
	env := testenv.Start(t, validation.SetupWithManager)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cpNS := env.Namespace(t, "outrigger-system")
	ns := env.Namespace(t, "shop")
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}

	// The operator's certificate authority, as `outrigger operator --enable-mtls` runs it.
	ca := sentry.NewKubernetes(cpNS, env.Client, env.Client, cs.AuthenticationV1(), 0)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	caCtx, stopCA := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- ca.Serve(caCtx, lis) }()
	t.Cleanup(func() { stopCA(); <-served })
	bundle := &corev1.ConfigMap{}
	pollUntil(ctx, t, "the trust bundle", func() bool {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: cpNS, Name: sentry.TrustBundleName}, bundle) == nil
	})

	// Each app's pod, and the token the kubelet would project for its sidecar.
	if err := env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	tokenFile := func(appID string) string {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: appID + "-pod", Annotations: map[string]string{"dapr.io/app-id": appID}},
			Spec:       corev1.PodSpec{ServiceAccountName: "shop", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		if err := env.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "shop", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences:      []string{sentry.LegacyAudience},
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(f, []byte(tr.Status.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}

	// b's app answers with the caller its sidecar names; b admits only a.
	app, appPort := listen(t)
	go func() {
		_ = http.Serve(app, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(map[string]string{"caller": r.Header.Get("dapr-caller-app-id")})
		}))
	}()
	t.Cleanup(func() { _ = app.Close() })
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: a
      defaultAction: allow
      trustDomain: public
      namespace: %s
`, ns)), 0o600); err != nil {
		t.Fatal(err)
	}
	registry := "OUTRIGGER_REGISTRY_DIR=" + t.TempDir()
	sidecar := func(appID string, extra ...string) *testproc.Sidecar {
		s := testproc.Start(t, appID, testproc.WriteResources(t, nil), []string{registry,
			"NAMESPACE=" + ns,
			"DAPR_TRUST_ANCHORS=" + bundle.Data[sentry.KeyRootCert],
			"DAPR_CONTROLPLANE_NAMESPACE=" + cpNS,
			"DAPR_SENTRY_TOKEN_FILE=" + tokenFile(appID),
		}, append([]string{"--enable-mtls", "--sentry-address", lis.Addr().String()}, extra...)...)
		s.WaitHealthy(t)
		return s
	}
	b := sidecar("b", "--app-port", fmt.Sprint(appPort), "--config", config)
	a := sidecar("a")
	c := sidecar("c")
	for _, s := range []*testproc.Sidecar{a, b, c} {
		s.WaitOutput(t, "mTLS enabled, identity spiffe://public/ns/"+ns+"/")
	}

	if code, _, body := testproc.Do(t, http.MethodPost, a.URL("/v1.0/invoke/b/method/order"), `{}`); code != http.StatusOK || body != `{"caller":"a"}`+"\n" {
		t.Errorf("a -> b: %d %s", code, body)
	}
	// c's app claims to be a; its sidecar's certificate says c.
	if code, _, body := testproc.Do(t, http.MethodPost, c.URL("/v1.0/invoke/b/method/order"), `{}`, "dapr-caller-app-id", "a"); code != http.StatusForbidden {
		t.Errorf("c -> b: %d %s, want 403", code, body)
	}
}
