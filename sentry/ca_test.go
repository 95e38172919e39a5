package sentry

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
)

func newCSR(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func ecKey(t *testing.T, c elliptic.Curve) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignLeaf(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ca, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	if root := ca.Roots[0]; root.NotAfter.Sub(now) != RootValidity || root.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("root: notAfter %v, key %T", root.NotAfter, root.PublicKey)
	}
	csr, err := ParseCSR(newCSR(t, ecKey(t, elliptic.P256())))
	if err != nil {
		t.Fatal(err)
	}
	id := spiffe.ID{TrustDomain: "public", Namespace: "default", AppID: "nodeapp"}
	chain, err := ca.Sign(SignRequest{PublicKey: csr.PublicKey, ID: id}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || !chain[1].Equal(ca.Issuer) {
		t.Fatalf("chain: %d certificates, want leaf then issuer", len(chain))
	}
	leaf := chain[0]
	if got, err := spiffe.FromCertificate(leaf); err != nil || got != id {
		t.Errorf("SPIFFE ID: %v %v", got, err)
	}
	if len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 0 || len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf holds other SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if !leaf.NotBefore.Equal(now.Add(-ClockSkew)) || !leaf.NotAfter.Equal(now.Add(WorkloadValidity)) {
		t.Errorf("validity %v..%v", leaf.NotBefore, leaf.NotAfter)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.IsCA {
		t.Errorf("key usage %v, CA %v", leaf.KeyUsage, leaf.IsCA)
	}
	if !publicKeysEqual(leaf.PublicKey, csr.PublicKey) {
		t.Error("the leaf does not carry the CSR's key")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Roots[0])
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for %v: %v", usage, err)
		}
	}
	// The PEM chain round-trips leaf first.
	back, err := parseCerts(EncodeChain(chain))
	if err != nil || len(back) != 2 || !back[0].Equal(leaf) {
		t.Errorf("EncodeChain: %v", err)
	}
	// A leaf never outlives its issuer.
	late, err := ca.Sign(SignRequest{PublicKey: csr.PublicKey, ID: id}, ca.Issuer.NotAfter.Add(-time.Hour))
	if err != nil || !late[0].NotAfter.Equal(ca.Issuer.NotAfter) {
		t.Errorf("leaf near the issuer's end: %v %v", late[0].NotAfter, err)
	}
}

func TestParseCSRRefuses(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // the weak key is the point
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	good := newCSR(t, ecKey(t, elliptic.P256()))
	block, _ := pem.Decode(good)
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	for name, tc := range map[string]struct {
		csr  []byte
		want string
	}{
		"P-224":         {newCSR(t, ecKey(t, elliptic.P224())), "P-224"},
		"RSA 1024":      {newCSR(t, rsa1024), "1024 bits"},
		"Ed25519":       {newCSR(t, edKey), "ed25519"},
		"bad signature": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), "signature"},
		"not PEM":       {[]byte("garbage"), "not PEM"},
		"wrong type":    {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: block.Bytes}), "PRIVATE KEY"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCSR(tc.csr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	for name, key := range map[string]crypto.Signer{"P-384": ecKey(t, elliptic.P384())} {
		if _, err := ParseCSR(newCSR(t, key)); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
}

func TestLoadCARefusesMismatchedBundle(t *testing.T) {
	now := time.Now()
	a, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(a.Data()); err != nil {
		t.Fatalf("a generated bundle does not load: %v", err)
	}
	otherKey := a.Data()
	otherKey[KeyIssuerKey] = b.Data()[KeyIssuerKey]
	if _, err := LoadCA(otherKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("issuer key of another bundle: %v", err)
	}
	otherRoot := a.Data()
	otherRoot[KeyRootCert] = b.Data()[KeyRootCert]
	if _, err := LoadCA(otherRoot); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Errorf("root of another bundle: %v", err)
	}
}
