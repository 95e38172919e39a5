package certs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Targets name the objects whose caBundle the manager keeps.
type Targets struct {
	MutatingWebhookConfigurations   []string
	ValidatingWebhookConfigurations []string
	// CRDs with a conversion webhook.
	ConversionCRDs []string
}

// Manager keeps the webhook serving certificate. It runs in every replica: writes to the
// Secret are optimistic, so two replicas racing on a rotation agree on one bundle.
type Manager struct {
	// Client must read from the API server directly: the manager runs before the cache.
	Client    client.Client
	Namespace string
	// SecretName holds the CA and serving certificate.
	SecretName string
	// ServiceName is the webhook Service whose DNS names the certificate covers.
	ServiceName string
	// CertDir is where the webhook server reads tls.crt and tls.key.
	CertDir string
	Targets Targets
	Policy  Policy
	// Now is the clock; tests move it to force a rotation.
	Now func() time.Time
	// Interval between checks when running as a manager Runnable.
	Interval time.Duration

	// missing is set while a target has not been applied yet; checks then come sooner.
	missing atomic.Bool
}

// retryMissing is how soon a check comes again while a target is missing.
const retryMissing = 10 * time.Second

// NeedLeaderElection is false: every replica serves webhooks and needs the files.
func (m *Manager) NeedLeaderElection() bool { return false }

// Start checks the certificate on every interval until ctx ends. It never returns an
// error for a transient failure: the next tick tries again.
func (m *Manager) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("webhook-certs")
	interval := m.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	for {
		wait := interval
		if m.missing.Load() && retryMissing < wait {
			wait = retryMissing
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
			if err := m.Ensure(ctx); err != nil {
				log.Error(err, "Failed to keep the webhook certificate")
			}
		}
	}
}

// Ensure makes the Secret hold a valid bundle, writes it to CertDir and patches every
// target's caBundle. It is idempotent.
func (m *Manager) Ensure(ctx context.Context) error {
	b, err := m.ensureSecret(ctx)
	if err != nil {
		return err
	}
	// Clients must trust a new CA before the server presents a certificate it signed:
	// the bundle goes out first (it still holds the previous CA), then the files the
	// webhook server reloads. Only the very first start has no server to protect.
	_, statErr := os.Stat(filepath.Join(m.CertDir, KeyTLSCert))
	if statErr != nil {
		if err := m.writeFiles(b); err != nil {
			return err
		}
		return m.injectCABundle(ctx, b.CABundle(m.now()))
	}
	if err := m.injectCABundle(ctx, b.CABundle(m.now())); err != nil {
		return err
	}
	return m.writeFiles(b)
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) policy() Policy {
	if m.Policy == (Policy{}) {
		return DefaultPolicy
	}
	return m.Policy
}

func (m *Manager) ensureSecret(ctx context.Context) (*Bundle, error) {
	log := logf.FromContext(ctx).WithName("webhook-certs")
	names := ServiceDNSNames(m.ServiceName, m.Namespace)
	key := types.NamespacedName{Namespace: m.Namespace, Name: m.SecretName}
	// A conflict means another replica rotated at the same time: read its result again.
	for attempt := 0; attempt < 5; attempt++ {
		secret := &corev1.Secret{}
		err := m.Client.Get(ctx, key, secret)
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get webhook certificate Secret %s: %w", key, err)
		}
		var old *Bundle
		if exists {
			if old, err = ParseBundle(secret.Data); err != nil {
				log.Info("Replacing unreadable webhook certificate Secret", "Secret", key, "reason", err.Error())
				old = nil
			}
		}
		newCA, newServing, reason := m.policy().Plan(old, names, m.now())
		if reason == "" {
			return old, nil
		}
		b, err := m.policy().Renew(old, newCA, newServing, names, m.now())
		if err != nil {
			return nil, err
		}
		if !exists {
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.SecretName,
					Labels: map[string]string{"app.kubernetes.io/managed-by": "outrigger"}},
				Type: corev1.SecretTypeOpaque,
				Data: b.Data(),
			}
			err = m.Client.Create(ctx, secret)
		} else {
			secret.Data = b.Data()
			err = m.Client.Update(ctx, secret)
		}
		switch {
		case err == nil:
			log.Info("Issued webhook certificate", "Secret", key, "reason", reason,
				"notAfter", b.Serving.NotAfter, "newCA", newCA)
			return b, nil
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
			continue
		default:
			return nil, fmt.Errorf("write webhook certificate Secret %s: %w", key, err)
		}
	}
	return nil, fmt.Errorf("write webhook certificate Secret %s: kept conflicting with another writer", key)
}

// writeFiles replaces the files atomically, and only when they change, so the
// certwatcher reloads exactly once per rotation.
func (m *Manager) writeFiles(b *Bundle) error {
	if err := os.MkdirAll(m.CertDir, 0o700); err != nil {
		return fmt.Errorf("create cert dir %s: %w", m.CertDir, err)
	}
	// The key goes first: the watcher reloads on the certificate, which must find its key.
	for _, f := range []struct {
		name string
		data []byte
	}{{KeyTLSKey, b.keyPEM}, {KeyTLSCert, b.servingPEM}} {
		path := filepath.Join(m.CertDir, f.name)
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, f.data) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("replace %s: %w", path, err)
		}
	}
	return nil
}

// injectCABundle patches every target. A target that does not exist yet is skipped: the
// next check finds it once it is applied.
func (m *Manager) injectCABundle(ctx context.Context, caBundle []byte) error {
	log := logf.FromContext(ctx).WithName("webhook-certs")
	var errs []error
	missing := false
	// Another replica may patch the same object at the same time: on a conflict, read
	// again and patch only if the bundle still differs.
	patch := func(obj client.Object, mutate func() bool) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := m.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
			base := obj.DeepCopyObject().(client.Object)
			if !mutate() {
				return nil
			}
			if err := m.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
				return err
			}
			log.Info("Patched caBundle", "name", obj.GetName())
			return nil
		})
		switch {
		case apierrors.IsNotFound(err):
			missing = true
			log.V(1).Info("caBundle target not found yet", "name", obj.GetName())
		case err != nil:
			errs = append(errs, fmt.Errorf("patch caBundle of %s: %w", obj.GetName(), err))
		}
	}
	for _, name := range m.Targets.MutatingWebhookConfigurations {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
		patch(cfg, func() bool {
			changed := false
			for i := range cfg.Webhooks {
				changed = setBundle(&cfg.Webhooks[i].ClientConfig.CABundle, caBundle) || changed
			}
			return changed
		})
	}
	for _, name := range m.Targets.ValidatingWebhookConfigurations {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
		patch(cfg, func() bool {
			changed := false
			for i := range cfg.Webhooks {
				changed = setBundle(&cfg.Webhooks[i].ClientConfig.CABundle, caBundle) || changed
			}
			return changed
		})
	}
	for _, name := range m.Targets.ConversionCRDs {
		crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name}}
		patch(crd, func() bool {
			c := crd.Spec.Conversion
			if c == nil || c.Strategy != apiextensionsv1.WebhookConverter || c.Webhook == nil || c.Webhook.ClientConfig == nil {
				return false
			}
			return setBundle(&c.Webhook.ClientConfig.CABundle, caBundle)
		})
	}
	m.missing.Store(missing)
	if len(errs) > 0 {
		return fmt.Errorf("inject caBundle: %v", errs)
	}
	return nil
}

func setBundle(dst *[]byte, caBundle []byte) bool {
	if bytes.Equal(*dst, caBundle) {
		return false
	}
	*dst = bytes.Clone(caBundle)
	return true
}
