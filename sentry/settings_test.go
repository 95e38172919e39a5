package sentry

import (
	"context"
	"crypto/elliptic"
	"testing"
	"time"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/internal/scheme"
	"github.com/outrigger-dev/outrigger/internal/spiffe"
)

func systemConfig(mtls *daprv1alpha1.MTLSSpec) *daprv1alpha1.Configuration {
	return &daprv1alpha1.Configuration{ObjectMeta: metav1.ObjectMeta{Namespace: "outrigger-system", Name: SystemConfigName},
		Spec: daprv1alpha1.ConfigurationSpec{MTLS: mtls}}
}

// Configuration daprsystem's spec.mtls sets what Dapr lets it set; without it the
// defaults apply.
func TestSystemSettings(t *testing.T) {
	off := false
	for _, tt := range []struct {
		name    string
		objs    []*daprv1alpha1.Configuration
		want    Settings
		wantErr bool
	}{
		{"no Configuration", nil, Settings{Enabled: true, WorkloadCertTTL: 24 * time.Hour, AllowedClockSkew: 15 * time.Minute}, false},
		{"no spec.mtls", []*daprv1alpha1.Configuration{systemConfig(nil)}, Settings{Enabled: true, WorkloadCertTTL: 24 * time.Hour, AllowedClockSkew: 15 * time.Minute}, false},
		{"all set", []*daprv1alpha1.Configuration{systemConfig(&daprv1alpha1.MTLSSpec{Enabled: &off, WorkloadCertTTL: "1h", AllowedClockSkew: "1m"})},
			Settings{Enabled: false, WorkloadCertTTL: time.Hour, AllowedClockSkew: time.Minute}, false},
		{"a bad duration keeps the default", []*daprv1alpha1.Configuration{systemConfig(&daprv1alpha1.MTLSSpec{WorkloadCertTTL: "soon"})},
			Settings{Enabled: true, WorkloadCertTTL: 24 * time.Hour, AllowedClockSkew: 15 * time.Minute}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(scheme.New())
			for _, o := range tt.objs {
				b = b.WithObjects(o)
			}
			got, err := SystemSettings(context.Background(), b.Build(), "outrigger-system")
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("got %+v, %v; want %+v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// The authority signs for the lifetime and skew daprsystem gives.
func TestSignFollowsSystemSettings(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	reader := fake.NewClientBuilder().WithScheme(scheme.New()).
		WithObjects(systemConfig(&daprv1alpha1.MTLSSpec{WorkloadCertTTL: "2h", AllowedClockSkew: "1m"})).Build()
	s := &Server{Bundle: &BundleStore{Namespace: "outrigger-system"}, Config: reader, Now: func() time.Time { return now },
		Validator: fixedValidator(spiffe.ID{TrustDomain: "public", Namespace: "shop", AppID: "orders"})}
	s.ca.Store(ca)
	ctx := logf.IntoContext(context.Background(), testr.New(t))
	resp, err := s.sign(ctx, &sentryv1pb.SignCertificateRequest{Id: "orders", Namespace: "shop", Token: "t",
		CertificateSigningRequest: newCSR(t, ecKey(t, elliptic.P256()))})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := parseCerts(resp.GetWorkloadCertificate())
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if !leaf.NotAfter.Equal(now.Add(2*time.Hour)) || !leaf.NotBefore.Equal(now.Add(-time.Minute)) {
		t.Errorf("valid %v to %v, want %v to %v", leaf.NotBefore, leaf.NotAfter, now.Add(-time.Minute), now.Add(2*time.Hour))
	}
}
