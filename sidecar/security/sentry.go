package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
)

// DefaultTokenFile is where the injector mounts the projected service-account token
// that the certificate authority validates.
const DefaultTokenFile = "/var/run/secrets/dapr.io/sentrytoken/token"

// Sentry is the Issuer that asks the certificate authority's CA service (Dapr's
// sentry v1 API) at Address. Its serving certificate must be issued under the trust
// anchors for the host of Address.
type Sentry struct {
	Address   string
	Anchors   *x509.CertPool
	TokenFile string

	mu   sync.Mutex
	conn *grpc.ClientConn
}

var _ Issuer = (*Sentry)(nil)

func (s *Sentry) client() (sentryv1.CAClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		host, _, err := net.SplitHostPort(s.Address)
		if err != nil {
			return nil, fmt.Errorf("--sentry-address %q: %w", s.Address, err)
		}
		creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.Anchors, ServerName: host})
		conn, err := grpc.NewClient(s.Address, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, fmt.Errorf("connect to the certificate authority at %s: %w", s.Address, err)
		}
		s.conn = conn
	}
	return sentryv1.NewCAClient(s.conn), nil
}

// Issue sends the CSR with the token read afresh (the kubelet rotates it).
func (s *Sentry) Issue(ctx context.Context, id spiffe.ID, csr []byte) (*Issued, error) {
	token, err := os.ReadFile(s.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("read the token for the certificate authority: %w", err)
	}
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	resp, err := c.SignCertificate(ctx, &sentryv1.SignCertificateRequest{
		Id:                        id.AppID,
		Token:                     string(token),
		TrustDomain:               id.TrustDomain,
		Namespace:                 id.Namespace,
		CertificateSigningRequest: csr,
		TokenValidator:            sentryv1.SignCertificateRequest_KUBERNETES,
	})
	if err != nil {
		return nil, fmt.Errorf("the certificate authority at %s: %w", s.Address, err)
	}
	if len(resp.GetWorkloadCertificate()) == 0 {
		return nil, errors.New("the certificate authority answered no certificate")
	}
	return &Issued{Chain: resp.GetWorkloadCertificate(), Roots: resp.GetTrustChainCertificates()}, nil
}

// Close closes the connection.
func (s *Sentry) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
