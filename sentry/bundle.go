package sentry

import (
	"bytes"
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// TrustBundleName is the Secret (root, issuer and its key) and the ConfigMap (root only,
// for the injector's DAPR_TRUST_ANCHORS) in the operator's namespace, as Dapr names them.
const TrustBundleName = "dapr-trust-bundle"

// BundleStore keeps the trust bundle in the operator's namespace.
type BundleStore struct {
	// Client must read from the API server directly: the CA starts before any cache.
	Client    client.Client
	Namespace string
	// TrustDomain only labels a generated root; workload trust domains come from each
	// pod's Configuration.
	TrustDomain string
	Now         func() time.Time
}

// Ensure loads the bundle from the Secret, or creates one when there is none. A Secret
// that exists is never overwritten, so a root brought by the user stays; when two
// replicas create at once, the loser reads what the winner wrote. The ConfigMap then
// mirrors the Secret's ca.crt.
func (s *BundleStore) Ensure(ctx context.Context) (*CA, error) {
	ca, err := s.ensureSecret(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.ensureConfigMap(ctx, ca.TrustAnchors()); err != nil {
		return nil, err
	}
	return ca, nil
}

func (s *BundleStore) ensureSecret(ctx context.Context) (*CA, error) {
	key := types.NamespacedName{Namespace: s.Namespace, Name: TrustBundleName}
	secret := &corev1.Secret{}
	err := s.Client.Get(ctx, key, secret)
	switch {
	case err == nil:
		return loadSecret(secret)
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("get trust bundle Secret %s: %w", key, err)
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	td := s.TrustDomain
	if td == "" {
		td = "cluster.local"
	}
	ca, err := GenerateCA(td, now)
	if err != nil {
		return nil, err
	}
	secret = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: TrustBundleName, Labels: managedBy},
		Type:       corev1.SecretTypeOpaque,
		Data:       ca.Data(),
	}
	err = s.Client.Create(ctx, secret)
	switch {
	case err == nil:
		logf.FromContext(ctx).Info("Created trust bundle", "Secret", key, "notAfter", ca.Roots[0].NotAfter)
		return ca, nil
	case apierrors.IsAlreadyExists(err):
		secret = &corev1.Secret{}
		if err := s.Client.Get(ctx, key, secret); err != nil {
			return nil, fmt.Errorf("get trust bundle Secret %s another replica created: %w", key, err)
		}
		return loadSecret(secret)
	default:
		return nil, fmt.Errorf("create trust bundle Secret %s: %w", key, err)
	}
}

func loadSecret(secret *corev1.Secret) (*CA, error) {
	ca, err := LoadCA(secret.Data)
	if err != nil {
		return nil, fmt.Errorf("trust bundle Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return ca, nil
}

var managedBy = map[string]string{"app.kubernetes.io/managed-by": "outrigger"}

// ensureConfigMap makes the ConfigMap's ca.crt equal the Secret's. The ConfigMap is a
// copy, so unlike the Secret it is corrected when it differs.
func (s *BundleStore) ensureConfigMap(ctx context.Context, anchors []byte) error {
	key := types.NamespacedName{Namespace: s.Namespace, Name: TrustBundleName}
	for attempt := 0; attempt < 5; attempt++ {
		cm := &corev1.ConfigMap{}
		err := s.Client.Get(ctx, key, cm)
		switch {
		case apierrors.IsNotFound(err):
			cm = &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: TrustBundleName, Labels: managedBy},
				Data:       map[string]string{KeyRootCert: string(anchors)},
			}
			err = s.Client.Create(ctx, cm)
		case err != nil:
			return fmt.Errorf("get trust bundle ConfigMap %s: %w", key, err)
		case bytes.Equal([]byte(cm.Data[KeyRootCert]), anchors):
			return nil
		default:
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[KeyRootCert] = string(anchors)
			err = s.Client.Update(ctx, cm)
		}
		switch {
		case err == nil:
			return nil
		case apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err):
			continue
		default:
			return fmt.Errorf("write trust bundle ConfigMap %s: %w", key, err)
		}
	}
	return fmt.Errorf("write trust bundle ConfigMap %s: kept conflicting with another writer", key)
}
