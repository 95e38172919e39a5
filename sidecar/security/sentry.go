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
// anchors, for the SPIFFE ID of the control plane's Sentry when ControlPlaneNamespace
// is known (as daprd checks it), or else for the host of Address.
type Sentry struct {
	Address   string
	Anchors   *x509.CertPool
	TokenFile string
	// ControlPlaneNamespace and ControlPlaneTrustDomain (DAPR_CONTROLPLANE_NAMESPACE,
	// DAPR_CONTROLPLANE_TRUST_DOMAIN, default DefaultControlPlaneTrustDomain) name
	// the Sentry: spiffe://<trust domain>/ns/<namespace>/dapr-sentry.
	ControlPlaneNamespace   string
	ControlPlaneTrustDomain string

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
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.Anchors, ServerName: host}
		if s.ControlPlaneNamespace != "" {
			cfg = s.bySPIFFEID()
		}
		conn, err := grpc.NewClient(s.Address, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return nil, fmt.Errorf("connect to the certificate authority at %s: %w", s.Address, err)
		}
		s.conn = conn
	}
	return sentryv1.NewCAClient(s.conn), nil
}

// DefaultControlPlaneTrustDomain is Dapr's trust domain of the control plane.
const DefaultControlPlaneTrustDomain = "cluster.local"

// bySPIFFEID verifies the Sentry's chain against the anchors and its identity by the
// URI SAN, whatever host name Address uses.
func (s *Sentry) bySPIFFEID() *tls.Config {
	td := s.ControlPlaneTrustDomain
	if td == "" {
		td = DefaultControlPlaneTrustDomain
	}
	want := spiffe.ID{TrustDomain: td, Namespace: s.ControlPlaneNamespace, AppID: "dapr-sentry"}.String()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain and the identity are checked below: no host name to match.
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection verifies
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the certificate authority presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.Anchors, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the certificate authority's certificate: %w", err)
			}
			for _, u := range leaf.URIs {
				if u.String() == want {
					return nil
				}
			}
			return fmt.Errorf("the certificate authority's certificate does not name %s", want)
		},
	}
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
