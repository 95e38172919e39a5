// Package certs gives the operator's webhook server its TLS when cert-manager is not
// installed: it keeps a self-signed CA and a serving certificate in a Secret, writes them
// where the webhook server reads them, and patches caBundle into the webhook
// configurations and the CRD conversion webhooks. The manager's certwatcher picks up
// rotated files without a restart.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Keys of the Secret that holds the bundle.
const (
	KeyCACert         = "ca.crt"
	KeyCAKey          = "ca.key"
	KeyPreviousCACert = "ca-previous.crt"
	KeyTLSCert        = "tls.crt"
	KeyTLSKey         = "tls.key"
)

// Bundle is the parsed content of the Secret.
type Bundle struct {
	CA       *x509.Certificate
	CAKey    crypto.Signer
	Previous *x509.Certificate // the CA before the last CA rotation, still trusted until it expires
	Serving  *x509.Certificate
	Key      crypto.Signer

	caPEM, caKeyPEM, previousPEM, servingPEM, keyPEM []byte
}

// Data renders the bundle as Secret data.
func (b *Bundle) Data() map[string][]byte {
	d := map[string][]byte{
		KeyCACert:  b.caPEM,
		KeyCAKey:   b.caKeyPEM,
		KeyTLSCert: b.servingPEM,
		KeyTLSKey:  b.keyPEM,
	}
	if len(b.previousPEM) > 0 {
		d[KeyPreviousCACert] = b.previousPEM
	}
	return d
}

// CABundle is what clients must trust: the current CA, plus the previous one while it is
// still valid so that a rotation never breaks an API server holding the old bundle.
func (b *Bundle) CABundle(now time.Time) []byte {
	out := bytes.Clone(b.caPEM)
	if b.Previous != nil && now.Before(b.Previous.NotAfter) {
		out = append(out, b.previousPEM...)
	}
	return out
}

// ParseBundle reads a bundle from Secret data.
func ParseBundle(data map[string][]byte) (*Bundle, error) {
	b := &Bundle{
		caPEM:       data[KeyCACert],
		caKeyPEM:    data[KeyCAKey],
		previousPEM: data[KeyPreviousCACert],
		servingPEM:  data[KeyTLSCert],
		keyPEM:      data[KeyTLSKey],
	}
	var err error
	if b.CA, err = parseCert(b.caPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCACert, err)
	}
	if b.CAKey, err = parseKey(b.caKeyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCAKey, err)
	}
	if b.Serving, err = parseCert(b.servingPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyTLSCert, err)
	}
	if b.Key, err = parseKey(b.keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyTLSKey, err)
	}
	if len(b.previousPEM) > 0 {
		if b.Previous, err = parseCert(b.previousPEM); err != nil {
			return nil, fmt.Errorf("%s: %w", KeyPreviousCACert, err)
		}
	}
	return b, nil
}

// Policy says how long certificates live and when they are renewed.
type Policy struct {
	CAValidity      time.Duration
	ServingValidity time.Duration
	// RenewBefore is the fraction of a certificate's lifetime left at which it is renewed.
	RenewBefore float64
}

// DefaultPolicy renews each certificate once two thirds of its life has passed.
var DefaultPolicy = Policy{
	CAValidity:      10 * 365 * 24 * time.Hour,
	ServingValidity: 365 * 24 * time.Hour,
	RenewBefore:     1.0 / 3,
}

func (p Policy) due(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return now.After(c.NotAfter.Add(-time.Duration(float64(life) * p.RenewBefore)))
}

// Plan decides what a bundle needs: nothing, a new serving certificate, or a new CA (and
// with it a new serving certificate). The reason is empty when nothing is due.
func (p Policy) Plan(b *Bundle, dnsNames []string, now time.Time) (newCA, newServing bool, reason string) {
	switch {
	case b == nil:
		return true, true, "no certificate yet"
	case p.due(b.CA, now):
		return true, true, "CA is due for renewal"
	case p.due(b.Serving, now):
		return false, true, "serving certificate is due for renewal"
	case !coversNames(b.Serving, dnsNames):
		return false, true, "serving certificate does not cover the service names"
	case b.Serving.CheckSignatureFrom(b.CA) != nil:
		return false, true, "serving certificate is not signed by the current CA"
	}
	return false, false, ""
}

// Renew returns a new bundle with what Plan asked for replaced.
func (p Policy) Renew(old *Bundle, newCA, newServing bool, dnsNames []string, now time.Time) (*Bundle, error) {
	b := &Bundle{}
	if old != nil {
		*b = *old
	}
	if newCA {
		if old != nil {
			b.Previous, b.previousPEM = old.CA, old.caPEM
		}
		if err := b.newCA(now, p.CAValidity); err != nil {
			return nil, err
		}
	}
	if newServing {
		if err := b.newServing(now, p.ServingValidity, dnsNames); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *Bundle) newCA(now time.Time, validity time.Duration) error {
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "outrigger-webhook-ca", Organization: []string{"outrigger"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("create CA certificate: %w", err)
	}
	b.CA, _ = x509.ParseCertificate(der)
	b.CAKey, b.caKeyPEM = key, keyPEM
	b.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return nil
}

func (b *Bundle) newServing(now time.Time, validity time.Duration, dnsNames []string) error {
	if len(dnsNames) == 0 {
		return errors.New("serving certificate needs at least one DNS name")
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	notAfter := now.Add(validity)
	if notAfter.After(b.CA.NotAfter) {
		notAfter = b.CA.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: dnsNames[0], Organization: []string{"outrigger"}},
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.CA, key.Public(), b.CAKey)
	if err != nil {
		return fmt.Errorf("create serving certificate: %w", err)
	}
	b.Serving, _ = x509.ParseCertificate(der)
	b.Key, b.keyPEM = key, keyPEM
	b.servingPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return nil
}

// ServiceDNSNames are the names under which the API server reaches a Service.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		fmt.Sprintf("%s.%s.svc", service, namespace),
		fmt.Sprintf("%s.%s.svc.cluster.local", service, namespace),
		fmt.Sprintf("%s.%s", service, namespace),
		service,
	}
}

func coversNames(c *x509.Certificate, names []string) bool {
	for _, n := range names {
		if c.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func newKey() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("key cannot sign")
	}
	return s, nil
}
