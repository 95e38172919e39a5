package certs

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestPlanAndRenew(t *testing.T) {
	names := ServiceDNSNames("outrigger-webhook-service", "outrigger-system")
	p := Policy{CAValidity: 300 * 24 * time.Hour, ServingValidity: 90 * 24 * time.Hour, RenewBefore: 1.0 / 3}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	newCA, newServing, reason := p.Plan(nil, names, t0)
	if !newCA || !newServing || reason == "" {
		t.Fatalf("empty bundle: plan = %v %v %q", newCA, newServing, reason)
	}
	b, err := p.Renew(nil, true, true, names, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, reason := p.Plan(b, names, t0.Add(24*time.Hour)); reason != "" {
		t.Errorf("fresh bundle wants renewal: %s", reason)
	}
	for _, n := range names {
		if err := b.Serving.VerifyHostname(n); err != nil {
			t.Errorf("serving cert does not cover %s: %v", n, err)
		}
	}

	// Two thirds into the serving certificate's life only it is renewed, by the same CA.
	t1 := t0.Add(61 * 24 * time.Hour)
	newCA, newServing, reason = p.Plan(b, names, t1)
	if newCA || !newServing {
		t.Fatalf("at day 61: plan = %v %v %q, want only the serving certificate", newCA, newServing, reason)
	}
	b2, err := p.Renew(b, newCA, newServing, names, t1)
	if err != nil {
		t.Fatal(err)
	}
	if !b2.CA.Equal(b.CA) || b2.Serving.Equal(b.Serving) {
		t.Error("serving renewal must keep the CA and replace the certificate")
	}

	// Two thirds into the CA's life the CA is renewed; the old CA stays in the bundle
	// until it expires so API servers holding the old caBundle keep trusting us.
	t2 := t0.Add(201 * 24 * time.Hour)
	newCA, _, _ = p.Plan(b2, names, t2)
	if !newCA {
		t.Fatal("at day 201 the CA is due")
	}
	b3, err := p.Renew(b2, true, true, names, t2)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b3.CABundle(t2)) {
		t.Fatal("unreadable CA bundle")
	}
	if len(pool.Subjects()) != 2 { //nolint:staticcheck // counting certificates is all we need
		t.Errorf("bundle during CA rotation has %d CAs, want 2", len(pool.Subjects())) //nolint:staticcheck
	}
	if _, err := b3.Serving.Verify(x509.VerifyOptions{Roots: pool, DNSName: names[0], CurrentTime: t2}); err != nil {
		t.Errorf("new serving cert does not verify against the bundle: %v", err)
	}
	if got := len(b3.CABundle(b.CA.NotAfter.Add(time.Hour))); got != len(b3.caPEM) {
		t.Error("an expired previous CA must leave the bundle")
	}

	// The bundle survives a round trip through Secret data.
	parsed, err := ParseBundle(b3.Data())
	if err != nil {
		t.Fatal(err)
	}
	if !parsed.Previous.Equal(b2.CA) || !parsed.Serving.Equal(b3.Serving) {
		t.Error("ParseBundle lost a certificate")
	}
}

func TestPlanRenewsForOtherNamesAndForeignSigner(t *testing.T) {
	names := ServiceDNSNames("svc", "ns")
	now := time.Now()
	b, err := DefaultPolicy.Renew(nil, true, true, names, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, serving, reason := DefaultPolicy.Plan(b, ServiceDNSNames("other", "ns"), now); !serving || reason == "" {
		t.Error("a certificate for other names must be reissued")
	}
	other, _ := DefaultPolicy.Renew(nil, true, true, names, now)
	mixed := *b
	mixed.Serving = other.Serving
	if _, serving, _ := DefaultPolicy.Plan(&mixed, names, now); !serving {
		t.Error("a certificate signed by another CA must be reissued")
	}
	if _, err := ParseBundle(map[string][]byte{KeyCACert: []byte("junk")}); err == nil {
		t.Error("junk parses")
	}
}
