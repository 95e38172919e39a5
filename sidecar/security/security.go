// Package security gives a sidecar its workload identity for mTLS between sidecars, as
// Dapr's pkg/security does: an ECDSA P-256 key made in memory, a certificate for the
// sidecar's SPIFFE ID (internal/spiffe) signed by the operator's certificate authority
// (Dapr's Sentry) through an Issuer, renewed at about 70% of its life, and the TLS
// configurations of both ends of the internal channel, which verify the peer against
// the trust anchors and by its SPIFFE ID (there is no DNS name to verify).
package security

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
)

// Issuer signs a certificate signing request for a workload identity.
type Issuer interface {
	// Issue signs csr (PEM "CERTIFICATE REQUEST") for id and returns the certificate
	// chain, leaf first.
	Issue(ctx context.Context, id spiffe.ID, csr []byte) (*Issued, error)
}

// Issued is what the certificate authority answers.
type Issued struct {
	// Chain is PEM: the workload certificate, then its issuers.
	Chain []byte
	// Roots are the PEM trust anchors the authority names; informational.
	Roots [][]byte
}

// ParseTrustAnchors reads PEM certificates (DAPR_TRUST_ANCHORS) into a pool; it fails on
// no certificate at all or on a block that is not one.
func ParseTrustAnchors(pemData []byte) (*x509.CertPool, error) {
	certs, err := parseCerts(pemData)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func parseCerts(pemData []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := pemData; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM block of type %q, want CERTIFICATE", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// Options configure a Provider.
type Options struct {
	// ID is this sidecar's identity, the one its certificate must name.
	ID      spiffe.ID
	Anchors *x509.CertPool
	Issuer  Issuer
	Log     logr.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// MinBackoff and MaxBackoff bound the wait between failed renewals; zero values are
	// 1 s and 1 min.
	MinBackoff, MaxBackoff time.Duration
}

// Provider holds the current certificate of this sidecar and renews it.
type Provider struct {
	opts Options
	cert atomic.Pointer[tls.Certificate]

	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

// New checks opts; Start gets the first certificate.
func New(opts Options) (*Provider, error) {
	if err := opts.ID.Validate(); err != nil {
		return nil, fmt.Errorf("mTLS identity: %w", err)
	}
	if opts.Anchors == nil {
		return nil, errors.New("mTLS: no trust anchors")
	}
	if opts.Issuer == nil {
		return nil, errors.New("mTLS: no certificate issuer")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Minute
	}
	return &Provider{opts: opts, done: make(chan struct{})}, nil
}

// ID is this sidecar's identity.
func (p *Provider) ID() spiffe.ID { return p.opts.ID }

// Start gets the first certificate, retrying with back-off (the certificate authority
// may be starting too) until one is issued or ctx ends, then renews it in the
// background until Close.
func (p *Provider) Start(ctx context.Context) error {
	for backoff := time.Duration(0); ; {
		err := p.renew(ctx)
		if err == nil {
			break
		}
		backoff = min(max(2*backoff, p.opts.MinBackoff), p.opts.MaxBackoff)
		p.opts.Log.Error(err, "Could not get the mTLS certificate; retrying", "identity", p.opts.ID.String(), "retryIn", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("mTLS: get the certificate of %s: %w", p.opts.ID, err)
		case <-t.C:
		}
	}
	leaf := p.cert.Load().Leaf
	p.opts.Log.Info("mTLS enabled, identity "+p.opts.ID.String(), "identity", p.opts.ID.String(), "serial", leaf.SerialNumber.String(), "validUntil", leaf.NotAfter)
	rctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	go p.renewLoop(rctx)
	return nil
}

// Close stops the renewal.
func (p *Provider) Close() {
	p.once.Do(func() {
		if p.stop != nil {
			p.stop()
			<-p.done
		}
	})
}

// Certificate is the current certificate; nil before Start.
func (p *Provider) Certificate() *tls.Certificate { return p.cert.Load() }

// renew gets a new certificate for a new key.
func (p *Provider) renew(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate the key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{p.opts.ID.URL()}}, key)
	if err != nil {
		return fmt.Errorf("create the CSR: %w", err)
	}
	issued, err := p.opts.Issuer.Issue(ctx, p.opts.ID, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
	if err != nil {
		return err
	}
	cert, err := p.checkIssued(issued, key)
	if err != nil {
		return err
	}
	p.cert.Store(cert)
	return nil
}

// checkIssued refuses a chain that would not serve: another identity, another key, or
// one the trust anchors do not verify.
func (p *Provider) checkIssued(issued *Issued, key crypto.Signer) (*tls.Certificate, error) {
	if issued == nil {
		return nil, errors.New("the certificate authority answered no certificate")
	}
	certs, err := parseCerts(issued.Chain)
	if err != nil {
		return nil, fmt.Errorf("the issued chain: %w", err)
	}
	leaf := certs[0]
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		return nil, errors.New("the issued certificate is not for the key of the request")
	}
	id, err := spiffe.FromCertificate(leaf)
	if err != nil {
		return nil, fmt.Errorf("the issued certificate: %w", err)
	}
	if id != p.opts.ID {
		return nil, fmt.Errorf("the issued certificate names %s, not %s", id, p.opts.ID)
	}
	if _, err := verifyChain(certs, p.opts.Anchors, p.opts.Now()); err != nil {
		return nil, fmt.Errorf("the issued certificate: %w", err)
	}
	out := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range certs {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, nil
}

// renewAt is when a certificate is due for renewal: at 70% of its life, as Dapr does.
func renewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 7 / 10)
}

func (p *Provider) renewLoop(ctx context.Context) {
	defer close(p.done)
	log := p.opts.Log
	backoff := time.Duration(0)
	for {
		leaf := p.cert.Load().Leaf
		wait := renewAt(leaf).Sub(p.opts.Now())
		if backoff > 0 {
			wait = backoff
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := p.renew(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 0
			nl := p.cert.Load().Leaf
			log.Info("mTLS certificate renewed, identity "+p.opts.ID.String(), "identity", p.opts.ID.String(), "serial", nl.SerialNumber.String(), "validUntil", nl.NotAfter)
			continue
		}
		backoff = min(max(2*backoff, p.opts.MinBackoff), p.opts.MaxBackoff)
		if p.opts.Now().Before(leaf.NotAfter) {
			log.Error(err, "Could not renew the mTLS certificate; serving with the current one until it expires", "identity", p.opts.ID.String(), "validUntil", leaf.NotAfter, "retryIn", backoff)
		} else {
			log.Error(err, "Could not renew the mTLS certificate, which has expired: calls between sidecars fail until a renewal succeeds", "identity", p.opts.ID.String(), "expired", leaf.NotAfter, "retryIn", backoff)
		}
	}
}

// verifyChain verifies certs (leaf first) against anchors for both server and client
// use, and returns the leaf's SPIFFE ID.
func verifyChain(certs []*x509.Certificate, anchors *x509.CertPool, now time.Time) (spiffe.ID, error) {
	if len(certs) == 0 {
		return spiffe.ID{}, errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return spiffe.ID{}, err
	}
	return spiffe.FromCertificate(certs[0])
}

func (p *Provider) current() (*tls.Certificate, error) {
	if c := p.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("mTLS: no certificate yet")
}

// ServerTLS is the internal server's TLS: TLS 1.3, a client certificate that the trust
// anchors verify and that names a SPIFFE ID, and the current certificate.
func (p *Provider) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  p.opts.Anchors,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return p.current()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("mTLS: the client sent no certificate")
			}
			if _, err := spiffe.FromCertificate(cs.PeerCertificates[0]); err != nil {
				return fmt.Errorf("mTLS: the client's certificate: %w", err)
			}
			return nil
		},
	}
}

// ClientTLS is the TLS of a connection to the sidecar whose identity is expected: it
// presents the current certificate, and accepts only a peer whose chain the trust
// anchors verify and whose SPIFFE ID is exactly expected.
func (p *Provider) ClientTLS(expected spiffe.ID) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The peer has no DNS name to verify: VerifyConnection verifies the chain and
		// the SPIFFE ID instead, the SPIFFE way.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return p.current()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := verifyChain(cs.PeerCertificates, p.opts.Anchors, p.opts.Now())
			if err != nil {
				return fmt.Errorf("mTLS: the certificate of the sidecar expected to be %s: %w", expected, err)
			}
			if id != expected {
				return fmt.Errorf("mTLS: the sidecar is %s, not the expected %s", id, expected)
			}
			return nil
		},
	}
}

// PeerID is the SPIFFE ID of the peer of a gRPC call that came over mTLS.
func PeerID(ctx context.Context) (spiffe.ID, error) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return spiffe.ID{}, errors.New("mTLS: the call has no peer")
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffe.ID{}, errors.New("mTLS: the caller presented no certificate")
	}
	return spiffe.FromCertificate(info.State.PeerCertificates[0])
}

// PeerID is the package's PeerID, for callers that hold a Provider.
func (p *Provider) PeerID(ctx context.Context) (spiffe.ID, error) { return PeerID(ctx) }
