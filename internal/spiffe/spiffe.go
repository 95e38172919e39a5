// Package spiffe names workloads the way Dapr's mTLS does: a sidecar's identity is the
// SPIFFE ID spiffe://<trust domain>/ns/<namespace>/<app id>, carried as the only URI
// SAN of its X.509 certificate. The operator's certificate authority (sentry/) writes
// it; sidecars (sidecar/security) check it on both ends of the internal channel.
package spiffe

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultTrustDomain is Dapr's trust domain when the Configuration names none.
const DefaultTrustDomain = "public"

// ID is one workload's identity.
type ID struct {
	TrustDomain string
	Namespace   string
	AppID       string
}

// URL is the ID as a SPIFFE URI, for a certificate's URIs.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/" + id.AppID}
}

// String is the SPIFFE URI.
func (id ID) String() string { return id.URL().String() }

// Validate reports a part that is empty or cannot appear in a SPIFFE ID.
func (id ID) Validate() error {
	for _, p := range []struct{ name, v string }{{"trust domain", id.TrustDomain}, {"namespace", id.Namespace}, {"app id", id.AppID}} {
		if p.v == "" {
			return fmt.Errorf("spiffe: the %s is empty", p.name)
		}
		if strings.ContainsAny(p.v, "/?#%@: ") {
			return fmt.Errorf("spiffe: the %s %q holds a character a SPIFFE ID cannot", p.name, p.v)
		}
	}
	return nil
}

// Parse reads spiffe://<trust domain>/ns/<namespace>/<app id>.
func Parse(u *url.URL) (ID, error) {
	if u == nil || u.Scheme != "spiffe" {
		return ID{}, fmt.Errorf("spiffe: %v is not a spiffe:// URI", u)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != "ns" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return ID{}, fmt.Errorf("spiffe: %s is not of the form spiffe://<trust domain>/ns/<namespace>/<app id>", u)
	}
	id := ID{TrustDomain: u.Host, Namespace: parts[1], AppID: parts[2]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("spiffe: %s: %w", u, err)
	}
	return id, nil
}

// FromCertificate reads the ID of a workload certificate, which must hold exactly one
// URI SAN.
func FromCertificate(cert *x509.Certificate) (ID, error) {
	if cert == nil {
		return ID{}, errors.New("spiffe: no certificate")
	}
	if len(cert.URIs) != 1 {
		return ID{}, fmt.Errorf("spiffe: the certificate of %q holds %d URI SANs, want exactly one SPIFFE ID", cert.Subject.CommonName, len(cert.URIs))
	}
	return Parse(cert.URIs[0])
}
