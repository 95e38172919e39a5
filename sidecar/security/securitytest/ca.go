// Package securitytest is a certificate authority for tests: a root, an issuer under it,
// and an in-process gRPC server of Dapr's sentry v1 CA service that signs workload
// CSRs the way the operator's Sentry does, so that tests exercise the sidecar's real
// Sentry client.
package securitytest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	neturl "net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
	"github.com/outrigger-dev/outrigger/sidecar/security"
)

// CA is a running test certificate authority.
type CA struct {
	// RootPEM is the trust anchor, for DAPR_TRUST_ANCHORS.
	RootPEM []byte
	Roots   *x509.CertPool
	// Addr is the CA service's address, for --sentry-address.
	Addr string
	// TokenFile holds the only token the service accepts.
	TokenFile string
	// TTL is the life of the certificates it signs from now on (nanoseconds).
	TTL atomic.Int64
	// FailNext makes this many of the next requests fail.
	FailNext atomic.Int32
	// Signed counts the certificates signed through the service.
	Signed atomic.Int32

	token     string
	root      *x509.Certificate
	issuer    *x509.Certificate
	issuerKey crypto.Signer
	issuerPEM []byte
}

// New starts a CA whose workload certificates live for ttl; it stops when t ends.
func New(t testing.TB, ttl time.Duration) *CA {
	t.Helper()
	ca := &CA{token: "token-" + rand.Text()}
	ca.TTL.Store(int64(ttl))
	rootKey := newKey(t)
	now := time.Now()
	rootTmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	ca.root = create(t, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	ca.RootPEM = pemCert(ca.root)
	ca.Roots = x509.NewCertPool()
	ca.Roots.AddCert(ca.root)
	ca.issuerKey = newKey(t)
	issTmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: "test issuer"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	ca.issuer = create(t, issTmpl, ca.root, ca.issuerKey.Public(), rootKey)
	ca.issuerPEM = pemCert(ca.issuer)

	ca.TokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(ca.TokenFile, []byte(ca.token), 0o600); err != nil {
		t.Fatal(err)
	}

	// The service's own certificate, for the host of Addr, under the same root.
	srvKey := newKey(t)
	srvTmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: "sentry"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvCert := create(t, srvTmpl, ca.issuer, srvKey.Public(), ca.issuerKey)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw, ca.issuer.Raw}, PrivateKey: srvKey, Leaf: srvCert}}})))
	sentryv1.RegisterCAServer(srv, &service{ca: ca})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca.Addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ca
}

// Certificate is a workload certificate for id, signed directly (not through the
// service), for tests that play a sidecar by hand.
func (ca *CA) Certificate(t testing.TB, id spiffe.ID) tls.Certificate {
	t.Helper()
	key := newKey(t)
	leaf, err := ca.sign(id, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.issuer.Raw}, PrivateKey: key, Leaf: leaf}
}

func (ca *CA) sign(id spiffe.ID, pub crypto.PublicKey) (*x509.Certificate, error) {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: sn, NotBefore: now, NotAfter: now.Add(time.Duration(ca.TTL.Load())),
		URIs: []*neturl.URL{id.URL()}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.issuer, pub, ca.issuerKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

type service struct {
	sentryv1.UnimplementedCAServer
	ca *CA
}

func (s *service) SignCertificate(_ context.Context, req *sentryv1.SignCertificateRequest) (*sentryv1.SignCertificateResponse, error) {
	ca := s.ca
	if ca.FailNext.Load() > 0 && ca.FailNext.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "test CA: failing as told")
	}
	if req.GetToken() != ca.token {
		return nil, status.Error(codes.Unauthenticated, "test CA: wrong token")
	}
	if req.GetTokenValidator() != sentryv1.SignCertificateRequest_KUBERNETES {
		return nil, status.Errorf(codes.InvalidArgument, "test CA: token validator %v, want KUBERNETES", req.GetTokenValidator())
	}
	id := spiffe.ID{TrustDomain: req.GetTrustDomain(), Namespace: req.GetNamespace(), AppID: req.GetId()}
	b, _ := pem.Decode(req.GetCertificateSigningRequest())
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, status.Error(codes.InvalidArgument, "test CA: no PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "test CA: %v", err)
	}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, status.Error(codes.InvalidArgument, "test CA: the key is not ECDSA P-256")
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() {
		return nil, status.Errorf(codes.InvalidArgument, "test CA: the CSR names %v, the request %s", csr.URIs, id)
	}
	leaf, err := ca.sign(id, csr.PublicKey)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "test CA: %v", err)
	}
	ca.Signed.Add(1)
	return &sentryv1.SignCertificateResponse{
		WorkloadCertificate:    append(pemCert(leaf), ca.issuerPEM...),
		TrustChainCertificates: [][]byte{ca.RootPEM},
		ValidUntil:             timestamppb.New(leaf.NotAfter),
	}, nil
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func create(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(fmt.Errorf("test CA: %w", err))
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// Provider starts a security.Provider for id that gets its certificates from the CA's
// service through the real Sentry client, retrying failed renewals quickly; it stops
// when t ends.
func (ca *CA) Provider(t testing.TB, id spiffe.ID) *security.Provider {
	t.Helper()
	sentry := &security.Sentry{Address: ca.Addr, Anchors: ca.Roots, TokenFile: ca.TokenFile}
	t.Cleanup(func() { _ = sentry.Close() })
	log := logr.Discard()
	if tt, ok := t.(*testing.T); ok {
		log = testr.New(tt)
	}
	p, err := security.New(security.Options{ID: id, Anchors: ca.Roots, Issuer: sentry, Log: log,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
