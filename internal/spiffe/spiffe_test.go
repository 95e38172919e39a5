package spiffe

import (
	"crypto/x509"
	"net/url"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	id := ID{TrustDomain: "public", Namespace: "default", AppID: "nodeapp"}
	if got := id.String(); got != "spiffe://public/ns/default/nodeapp" {
		t.Fatalf("String: %s", got)
	}
	back, err := Parse(id.URL())
	if err != nil || back != id {
		t.Fatalf("Parse: %+v %v", back, err)
	}
	got, err := FromCertificate(&x509.Certificate{URIs: []*url.URL{id.URL()}})
	if err != nil || got != id {
		t.Fatalf("FromCertificate: %+v %v", got, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{
		"https://public/ns/default/app",
		"spiffe://public/default/app",
		"spiffe://public/ns/default",
		"spiffe://public/ns/default/app/extra",
		"spiffe:///ns/default/app",
		"spiffe://public/ns//app",
		"spiffe://public/ns/default/app?x=1",
		"spiffe://user@public/ns/default/app",
	} {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if id, err := Parse(u); err == nil {
			t.Errorf("Parse(%s) = %+v, want an error", s, id)
		}
	}
	if _, err := FromCertificate(&x509.Certificate{}); err == nil {
		t.Error("a certificate without a URI SAN was accepted")
	}
	two := &x509.Certificate{URIs: []*url.URL{ID{"a", "b", "c"}.URL(), ID{"a", "b", "d"}.URL()}}
	if _, err := FromCertificate(two); err == nil {
		t.Error("a certificate with two URI SANs was accepted")
	}
	if err := (ID{TrustDomain: "public", Namespace: "default", AppID: "a/b"}).Validate(); err == nil {
		t.Error("an app id with a slash was accepted")
	}
}
