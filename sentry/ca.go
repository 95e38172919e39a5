package sentry

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
)

// Keys of the trust bundle Secret and ConfigMap: Dapr's names, so that a bundle made for
// Dapr (or by `dapr mtls`) can be brought as is.
const (
	KeyRootCert   = "ca.crt"
	KeyIssuerCert = "issuer.crt"
	KeyIssuerKey  = "issuer.key"
)

// Lifetimes. The leaf's clock skew allowance is Dapr's: a sidecar whose clock runs a
// little behind still accepts a certificate signed just now.
const (
	RootValidity     = 365 * 24 * time.Hour
	WorkloadValidity = 24 * time.Hour
	ClockSkew        = 15 * time.Minute
)

// CA is a loaded trust bundle: the root(s) sidecars trust and the issuer that signs.
type CA struct {
	Roots      []*x509.Certificate
	Issuer     *x509.Certificate
	IssuerKey  crypto.Signer
	issuerPool *x509.CertPool
	// rootsPEM is ca.crt as stored, handed out as the trust anchors.
	rootsPEM, issuerPEM, issuerKeyPEM []byte
	// issuerChain is issuer.crt: the issuer and any intermediates up to a root.
	issuerChain []*x509.Certificate
}

// TrustAnchors is ca.crt, the PEM root(s).
func (c *CA) TrustAnchors() []byte { return bytes.Clone(c.rootsPEM) }

// Data renders the bundle as Secret data.
func (c *CA) Data() map[string][]byte {
	return map[string][]byte{KeyRootCert: c.rootsPEM, KeyIssuerCert: c.issuerPEM, KeyIssuerKey: c.issuerKeyPEM}
}

// GenerateCA makes a new root (ECDSA P-256, valid a year) and an issuer it signs.
func GenerateCA(trustDomain string, now time.Time) (*CA, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate root key: %w", err)
	}
	root := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "outrigger-root-ca", Organization: []string{trustDomain}},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("create root certificate: %w", err)
	}
	if root, err = x509.ParseCertificate(rootDER); err != nil {
		return nil, err
	}
	issuerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate issuer key: %w", err)
	}
	issuer := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "outrigger-issuer", Organization: []string{trustDomain}},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              root.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	issuerDER, err := x509.CreateCertificate(rand.Reader, issuer, root, issuerKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("create issuer certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(issuerKey)
	if err != nil {
		return nil, err
	}
	return LoadCA(map[string][]byte{
		KeyRootCert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		KeyIssuerCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuerDER}),
		KeyIssuerKey:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	})
}

// LoadCA reads a bundle from Secret data and checks that it holds together: the issuer
// chains to a root, is a CA, and its key matches.
func LoadCA(data map[string][]byte) (*CA, error) {
	c := &CA{rootsPEM: data[KeyRootCert], issuerPEM: data[KeyIssuerCert], issuerKeyPEM: data[KeyIssuerKey]}
	var err error
	if c.Roots, err = parseCerts(c.rootsPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyRootCert, err)
	}
	if c.issuerChain, err = parseCerts(c.issuerPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyIssuerCert, err)
	}
	c.Issuer = c.issuerChain[0]
	if c.IssuerKey, err = parseKey(c.issuerKeyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyIssuerKey, err)
	}
	if !c.Issuer.IsCA || c.Issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: the issuer is not a CA that may sign certificates", KeyIssuerCert)
	}
	if !publicKeysEqual(c.Issuer.PublicKey, c.IssuerKey.Public()) {
		return nil, fmt.Errorf("%s does not match the public key of %s", KeyIssuerKey, KeyIssuerCert)
	}
	roots := x509.NewCertPool()
	for _, r := range c.Roots {
		roots.AddCert(r)
	}
	c.issuerPool = x509.NewCertPool()
	for _, i := range c.issuerChain[1:] {
		c.issuerPool.AddCert(i)
	}
	if _, err := c.Issuer.Verify(x509.VerifyOptions{Roots: roots, Intermediates: c.issuerPool,
		CurrentTime: c.Issuer.NotBefore.Add(time.Second), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s does not chain to a root of %s: %w", KeyIssuerCert, KeyRootCert, err)
	}
	return c, nil
}

// SignRequest is what a leaf is made from.
type SignRequest struct {
	PublicKey crypto.PublicKey
	ID        spiffe.ID
	// DNSNames are only for the CA's own serving certificate; sidecars get none.
	DNSNames []string
	// Validity and Skew default to WorkloadValidity and ClockSkew.
	Validity time.Duration
	Skew     time.Duration
}

// Sign issues a leaf for the request, returning the chain leaf first, then the issuer
// (and any intermediates of issuer.crt).
func (c *CA) Sign(req SignRequest, now time.Time) ([]*x509.Certificate, error) {
	if err := CheckPublicKey(req.PublicKey); err != nil {
		return nil, err
	}
	if err := req.ID.Validate(); err != nil {
		return nil, err
	}
	validity := req.Validity
	if validity <= 0 {
		validity = WorkloadValidity
	}
	skew := req.Skew
	if skew <= 0 {
		skew = ClockSkew
	}
	notAfter := now.Add(validity)
	if notAfter.After(c.Issuer.NotAfter) {
		notAfter = c.Issuer.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    now.Add(-skew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{req.ID.URL()},
		DNSNames:     req.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Issuer, req.PublicKey, c.IssuerKey)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", req.ID, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return append([]*x509.Certificate{leaf}, c.issuerChain...), nil
}

// ParseCSR reads a PEM "CERTIFICATE REQUEST", checks its signature (the caller holds the
// key) and its key type.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, errors.New("the certificate signing request is not PEM")
	}
	// Dapr before 1.12 labelled its CSRs "CERTIFICATE"; Dapr 1.14 still takes both.
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("the certificate signing request is a PEM %q, want \"CERTIFICATE REQUEST\"", block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse the certificate signing request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the certificate signing request's signature is invalid: %w", err)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr, nil
}

// CheckPublicKey allows ECDSA on P-256 or P-384 and RSA of 2048 bits or more.
func CheckPublicKey(k crypto.PublicKey) error {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("ECDSA key on curve %s is refused: use P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
		return fmt.Errorf("RSA key of %d bits is refused: use 2048 bits or more", k.N.BitLen())
	default:
		return fmt.Errorf("key type %T is refused: use ECDSA P-256/P-384 or RSA >= 2048", k)
	}
}

// EncodeChain renders certificates as concatenated PEM blocks.
func EncodeChain(chain []*x509.Certificate) []byte {
	var out []byte
	for _, c := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// parseCerts reads every CERTIFICATE block; ca.crt may hold several roots.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	return certutil.ParseCertsPEM(data)
}

// parseKey reads PKCS#8, SEC 1 (EC) or PKCS#1 (RSA), the forms Dapr's tools write.
func parseKey(data []byte) (crypto.Signer, error) {
	key, err := keyutil.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, err
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", key)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}
