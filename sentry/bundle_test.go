package sentry

import (
	"bytes"
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func TestBundleStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := types.NamespacedName{Namespace: "outrigger-system", Name: TrustBundleName}

	t.Run("create then reuse", func(t *testing.T) {
		c := fake.NewClientBuilder().Build()
		s := &BundleStore{Client: c, Namespace: key.Namespace}
		first, err := s.Ensure(ctx)
		if err != nil {
			t.Fatal(err)
		}
		second, err := s.Ensure(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !second.Roots[0].Equal(first.Roots[0]) || !second.Issuer.Equal(first.Issuer) {
			t.Error("a second start made a new bundle")
		}
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, key, cm); err != nil {
			t.Fatal(err)
		}
		if cm.Data[KeyRootCert] != string(first.TrustAnchors()) {
			t.Error("the ConfigMap does not hold the root")
		}
	})

	t.Run("brought root is kept and the ConfigMap corrected", func(t *testing.T) {
		own, err := GenerateCA("example.org", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c := fake.NewClientBuilder().WithObjects(
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: own.Data()},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: map[string]string{KeyRootCert: "stale"}},
		).Build()
		got, err := (&BundleStore{Client: c, Namespace: key.Namespace}).Ensure(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Roots[0].Equal(own.Roots[0]) {
			t.Error("the brought root was replaced")
		}
		secret := &corev1.Secret{}
		if err := c.Get(ctx, key, secret); err != nil || !bytes.Equal(secret.Data[KeyIssuerKey], own.Data()[KeyIssuerKey]) {
			t.Errorf("the Secret was rewritten: %v", err)
		}
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, key, cm); err != nil || cm.Data[KeyRootCert] != string(own.TrustAnchors()) {
			t.Errorf("ConfigMap not corrected: %v", err)
		}
	})

	t.Run("unreadable Secret is an error, not replaced", func(t *testing.T) {
		c := fake.NewClientBuilder().WithObjects(
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: map[string][]byte{KeyRootCert: []byte("x")}},
		).Build()
		if _, err := (&BundleStore{Client: c, Namespace: key.Namespace}).Ensure(ctx); err == nil {
			t.Fatal("a broken bundle was accepted")
		}
	})

	t.Run("another replica wins the create", func(t *testing.T) {
		winner, err := GenerateCA("cluster.local", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		raced := false
		c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if _, ok := obj.(*corev1.Secret); ok && !raced {
					// The other replica's create lands between our Get and our Create.
					raced = true
					if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: winner.Data()}); err != nil {
						return err
					}
				}
				return c.Create(ctx, obj, opts...)
			},
		}).Build()
		got, err := (&BundleStore{Client: c, Namespace: key.Namespace}).Ensure(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !raced || !got.Roots[0].Equal(winner.Roots[0]) {
			t.Error("the loser of the race did not adopt the winner's bundle")
		}
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, key, cm); err != nil || cm.Data[KeyRootCert] != string(winner.TrustAnchors()) {
			t.Errorf("ConfigMap: %v", err)
		}
	})
}
