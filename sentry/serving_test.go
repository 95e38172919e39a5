package sentry

import (
	"testing"
	"time"
)

// The CA's own certificate is reissued once two thirds of its life have passed, so a
// long-running operator never serves an expired one.
func TestServingCertificateRotates(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ca, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Bundle: &BundleStore{Namespace: "outrigger-system"}, Now: func() time.Time { return now }}
	s.ca.Store(ca)
	first, err := s.servingCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if got := first.Leaf.DNSNames; len(got) != 2 || got[0] != "dapr-sentry.outrigger-system.svc" || got[1] != "dapr-sentry.outrigger-system.svc.cluster.local" {
		t.Errorf("DNS names %v", got)
	}
	if len(first.Certificate) != 2 {
		t.Errorf("served chain of %d certificates, want leaf and issuer", len(first.Certificate))
	}
	now = now.Add(12 * time.Hour)
	if again, _ := s.servingCertificate(); again != first {
		t.Error("reissued before two thirds of its life")
	}
	now = now.Add(4 * time.Hour)
	later, err := s.servingCertificate()
	if err != nil || later == first || !later.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Errorf("not reissued past two thirds of its life: %v", err)
	}
}
