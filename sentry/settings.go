package sentry

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

// ErrBadSetting marks a spec.mtls duration that does not parse; the other settings
// still hold.
var ErrBadSetting = errors.New("bad mTLS setting")

// SystemConfigName is the Configuration in the control plane's namespace whose
// spec.mtls Dapr reads for the whole cluster.
const SystemConfigName = "daprsystem"

// Settings are the cluster's mTLS settings.
type Settings struct {
	// Enabled is spec.mtls.enabled: sidecars are enrolled unless it is false.
	Enabled          bool
	WorkloadCertTTL  time.Duration
	AllowedClockSkew time.Duration
}

// +kubebuilder:rbac:groups=dapr.io,resources=configurations,verbs=get

// SystemSettings reads Configuration daprsystem in namespace; without one (or without
// a reader) the defaults apply: enabled, 24 h certificates, 15 min skew.
func SystemSettings(ctx context.Context, r client.Reader, namespace string) (Settings, error) {
	s := Settings{Enabled: true, WorkloadCertTTL: WorkloadValidity, AllowedClockSkew: ClockSkew}
	if r == nil {
		return s, nil
	}
	cfg := &daprv1alpha1.Configuration{}
	switch err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: SystemConfigName}, cfg); {
	case apierrors.IsNotFound(err):
		return s, nil
	case err != nil:
		return s, fmt.Errorf("get Configuration %s/%s: %w", namespace, SystemConfigName, err)
	}
	m := cfg.Spec.MTLS
	if m == nil {
		return s, nil
	}
	if m.Enabled != nil {
		s.Enabled = *m.Enabled
	}
	for _, d := range []struct {
		field string
		value string
		into  *time.Duration
	}{{"workloadCertTTL", m.WorkloadCertTTL, &s.WorkloadCertTTL}, {"allowedClockSkew", m.AllowedClockSkew, &s.AllowedClockSkew}} {
		if d.value == "" {
			continue
		}
		v, err := time.ParseDuration(d.value)
		if err != nil || v <= 0 {
			return s, fmt.Errorf("%w: Configuration %s/%s: spec.mtls.%s %q is not a positive duration", ErrBadSetting, namespace, SystemConfigName, d.field, d.value)
		}
		*d.into = v
	}
	return s, nil
}
