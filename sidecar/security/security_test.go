package security_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
	"github.com/outrigger-dev/outrigger/sidecar/security"
	"github.com/outrigger-dev/outrigger/sidecar/security/securitytest"
)

func id(app string) spiffe.ID {
	return spiffe.ID{TrustDomain: "public", Namespace: "default", AppID: app}
}

func provider(t *testing.T, ca *securitytest.CA, app string) *security.Provider {
	return ca.Provider(t, id(app))
}

// peerRecorder is a health server that records the SPIFFE ID of each caller.
type peerRecorder struct {
	healthpb.HealthServer
	peers chan spiffe.ID
}

func (r *peerRecorder) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	pid, err := security.PeerID(ctx)
	if err != nil {
		return nil, err
	}
	select {
	case r.peers <- pid:
	default:
	}
	return r.HealthServer.Check(ctx, req)
}

func serve(t *testing.T, p *security.Provider) (string, chan spiffe.ID) {
	t.Helper()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.ServerTLS())))
	rec := &peerRecorder{HealthServer: health.NewServer(), peers: make(chan spiffe.ID, 16)}
	healthpb.RegisterHealthServer(srv, rec)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), rec.peers
}

func dial(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func check(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestIssueAndVerify(t *testing.T) {
	ca := securitytest.New(t, time.Hour)
	a, b := provider(t, ca, "a"), provider(t, ca, "b")
	got, err := spiffe.FromCertificate(a.Certificate().Leaf)
	if err != nil || got != id("a") {
		t.Fatalf("a's certificate names %v (%v)", got, err)
	}
	if len(a.Certificate().Certificate) != 2 {
		t.Errorf("a presents %d certificates, want the leaf and its issuer", len(a.Certificate().Certificate))
	}
	addr, peers := serve(t, a)
	if err := check(dial(t, addr, b.ClientTLS(id("a")))); err != nil {
		t.Fatalf("b -> a: %v", err)
	}
	if p := <-peers; p != id("b") {
		t.Errorf("a saw the caller %v, want %v", p, id("b"))
	}
}

func TestWrongExpectedIDRefused(t *testing.T) {
	ca := securitytest.New(t, time.Hour)
	a, b := provider(t, ca, "a"), provider(t, ca, "b")
	addr, _ := serve(t, a)
	err := check(dial(t, addr, b.ClientTLS(id("c"))))
	if err == nil || !strings.Contains(err.Error(), "not the expected") {
		t.Fatalf("b expecting c reached a: %v", err)
	}
	other := spiffe.ID{TrustDomain: "other", Namespace: "default", AppID: "a"}
	if err := check(dial(t, addr, b.ClientTLS(other))); err == nil {
		t.Fatal("b expecting a in another trust domain reached a")
	}
}

func TestPeerFromAnotherRootRefused(t *testing.T) {
	ca, rogue := securitytest.New(t, time.Hour), securitytest.New(t, time.Hour)
	a := provider(t, ca, "a")
	m := provider(t, rogue, "b") // a valid certificate for b, but under another root
	addr, peers := serve(t, a)
	if err := check(dial(t, addr, m.ClientTLS(id("a")))); err == nil {
		t.Fatal("a caller from another root reached a (or trusted a)")
	}
	// Even trusting a's root, the server refuses the rogue client certificate.
	cfg := m.ClientTLS(id("a"))
	cfg.VerifyConnection = nil
	if err := check(dial(t, addr, cfg)); err == nil {
		t.Fatal("a accepted a client certificate from another root")
	}
	// And a plaintext-less TLS client without any certificate.
	if err := check(dial(t, addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})); err == nil { //nolint:gosec // the test's point
		t.Fatal("a accepted a client without a certificate")
	}
	select {
	case p := <-peers:
		t.Fatalf("a served %v", p)
	default:
	}
}

func TestRenewal(t *testing.T) {
	ca := securitytest.New(t, 2*time.Second)
	a, b := provider(t, ca, "a"), provider(t, ca, "b")
	addr, _ := serve(t, a)
	conn := dial(t, addr, b.ClientTLS(id("a")))
	if err := check(conn); err != nil {
		t.Fatal(err)
	}
	first := a.Certificate().Leaf
	// The next renewal fails once: the provider retries, keeping its certificate.
	ca.FailNext.Store(2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Wait until a's certificate is one issued after the first one expired.
	for a.Certificate().Leaf.NotBefore.Before(first.NotAfter) || b.Certificate().Leaf.NotBefore.Before(first.NotAfter) {
		select {
		case <-ctx.Done():
			t.Fatalf("no certificate issued after %v (a's is %v, serial %v; %d signed)", first.NotAfter,
				a.Certificate().Leaf.NotBefore, a.Certificate().Leaf.SerialNumber, ca.Signed.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if a.Certificate().Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("the serial did not change")
	}
	if ca.FailNext.Load() > 0 {
		t.Errorf("the failing renewals were not retried")
	}
	// The connection made with the first certificates still serves, and a new one
	// handshakes with the renewed certificates (the first ones have expired).
	if err := check(conn); err != nil {
		t.Errorf("the old connection: %v", err)
	}
	if err := check(dial(t, addr, b.ClientTLS(id("a")))); err != nil {
		t.Errorf("a new connection after renewal: %v", err)
	}
}

// A certificate authority that fails at first (it may be starting) is retried until
// it issues.
func TestStartRetries(t *testing.T) {
	ca := securitytest.New(t, time.Hour)
	ca.FailNext.Store(2)
	p, err := security.New(security.Options{ID: id("a"), Anchors: ca.Roots, Log: testr.New(t), MinBackoff: 10 * time.Millisecond,
		Issuer: &security.Sentry{Address: ca.Addr, Anchors: ca.Roots, TokenFile: ca.TokenFile}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start after two failures: %v", err)
	}
	defer p.Close()
	if ca.FailNext.Load() != 0 || p.Certificate() == nil {
		t.Errorf("failures left %d, certificate %v", ca.FailNext.Load(), p.Certificate() != nil)
	}
}

// Start gives up, with the cause, when its context ends before a certificate.
func TestStartErrors(t *testing.T) {
	ca := securitytest.New(t, time.Hour)
	bad := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bad, []byte("not the token"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tokenFile := range map[string]string{"wrong token": bad, "no token file": filepath.Join(t.TempDir(), "missing")} {
		t.Run(name, func(t *testing.T) {
			p, err := security.New(security.Options{ID: id("a"), Anchors: ca.Roots, Log: testr.New(t),
				Issuer: &security.Sentry{Address: ca.Addr, Anchors: ca.Roots, TokenFile: tokenFile}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := p.Start(ctx); err == nil {
				p.Close()
				t.Fatal("started")
			}
		})
	}
	// The CA's own serving certificate must verify against the anchors.
	rogue := securitytest.New(t, time.Hour)
	p, _ := security.New(security.Options{ID: id("a"), Anchors: ca.Roots, Log: testr.New(t),
		Issuer: &security.Sentry{Address: rogue.Addr, Anchors: ca.Roots, TokenFile: rogue.TokenFile}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.Start(ctx); err == nil {
		p.Close()
		t.Fatal("trusted a certificate authority outside the anchors")
	}
}

func TestParseTrustAnchors(t *testing.T) {
	ca := securitytest.New(t, time.Hour)
	if _, err := security.ParseTrustAnchors(ca.RootPEM); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{"empty": "", "not PEM": "hello", "a key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		"garbage certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := security.ParseTrustAnchors([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
