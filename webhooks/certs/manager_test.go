package certs_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/webhooks/certs"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The self-managed CA issues its certificate, writes the files and patches caBundle into
// the webhook configuration and the Subscription CRD's conversion webhook.
func TestSelfManagedCAPatchesCABundle(t *testing.T) {
	e := testenv.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns := e.Namespace(t, "outrigger-system")

	clock := time.Now()
	var mu sync.Mutex
	newManager := func(dir string) *certs.Manager {
		return &certs.Manager{
			Client: e.Client, Namespace: ns, SecretName: "webhook-cert", ServiceName: "webhook-service", CertDir: dir,
			Targets: certs.Targets{
				ValidatingWebhookConfigurations: []string{"validating-webhook-configuration"},
				MutatingWebhookConfigurations:   []string{"not-applied-yet"},
				ConversionCRDs:                  []string{"subscriptions.dapr.io"},
			},
			Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock },
		}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a, b := newManager(dirA), newManager(dirB)

	// Two replicas start together and must settle on one bundle.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range []*certs.Manager{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = m.Ensure(ctx) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	secret := &corev1.Secret{}
	if err := e.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "webhook-cert"}, secret); err != nil {
		t.Fatal(err)
	}
	ca := secret.Data[certs.KeyCACert]
	certA, _ := os.ReadFile(filepath.Join(dirA, "tls.crt"))
	certB, _ := os.ReadFile(filepath.Join(dirB, "tls.crt"))
	if !bytes.Equal(certA, secret.Data[certs.KeyTLSCert]) || !bytes.Equal(certB, certA) {
		t.Error("replicas serve different certificates from the Secret's")
	}
	assertBundle(t, ctx, e, ca)

	// Past the renewal point of the CA, a new CA is issued and the bundle carries both.
	mu.Lock()
	clock = clock.Add(7 * 365 * 24 * time.Hour)
	mu.Unlock()
	if err := a.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "webhook-cert"}, secret); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(secret.Data[certs.KeyCACert], ca) {
		t.Fatal("CA was not rotated")
	}
	assertBundle(t, ctx, e, append(bytes.Clone(secret.Data[certs.KeyCACert]), ca...))
	rotated, _ := os.ReadFile(filepath.Join(dirA, "tls.crt"))
	if bytes.Equal(rotated, certA) {
		t.Error("the serving certificate file was not replaced")
	}
}

func assertBundle(t *testing.T, ctx context.Context, e *testenv.Env, want []byte) {
	t.Helper()
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := e.Client.Get(ctx, types.NamespacedName{Name: "validating-webhook-configuration"}, vwc); err != nil {
		t.Fatal(err)
	}
	if len(vwc.Webhooks) == 0 {
		t.Fatal("no webhooks")
	}
	for _, w := range vwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, want) {
			t.Errorf("webhook %s caBundle is not the CA bundle", w.Name)
		}
	}
	crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: "subscriptions.dapr.io"}}
	if err := e.Client.Get(ctx, types.NamespacedName{Name: crd.Name}, crd); err != nil {
		t.Fatal(err)
	}
	if c := crd.Spec.Conversion; c == nil || c.Webhook == nil || !bytes.Equal(c.Webhook.ClientConfig.CABundle, want) {
		t.Error("conversion webhook caBundle is not the CA bundle")
	}
}
