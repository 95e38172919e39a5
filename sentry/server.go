package sentry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	authv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
)

// DefaultPort is the CA's port on the operator pod; Service dapr-sentry maps 443 to it.
const DefaultPort = 50001

// ServiceName is the Service in front of the CA, Dapr's name, which sidecars dial.
const ServiceName = "dapr-sentry"

// DefaultControlPlaneTrustDomain is Dapr's trust domain of the control plane, in which
// the CA's own SPIFFE ID lives.
const DefaultControlPlaneTrustDomain = "cluster.local"

// maxAppIDLength is Dapr's limit.
const maxAppIDLength = 64

// Server serves dapr.proto.sentry.v1.CA over TLS. It is a manager Runnable that runs on
// every replica: each one loads the same bundle from the Secret and can sign.
type Server struct {
	sentryv1pb.UnimplementedCAServer

	Bundle    *BundleStore
	Validator Validator
	// Port is where Start listens; ignored by Serve.
	Port int
	// ControlPlaneTrustDomain names the CA's own identity (default cluster.local).
	ControlPlaneTrustDomain string
	// Now is the clock; tests move it.
	Now func() time.Time
	// Config reads the control plane's Configuration daprsystem, whose spec.mtls sets
	// the certificates' lifetime and clock skew; nil uses the defaults.
	Config client.Reader

	ca atomic.Pointer[CA]

	mu      sync.Mutex
	serving *tls.Certificate
}

// NewKubernetes is the authority of the control plane in namespace as the operator runs
// it: the trust bundle kept in namespace through bundle, tokens reviewed by the API
// server for Dapr's audiences, and pods and Configurations read through reader, which
// should read the API server directly (a pod recreated under its name must be seen at
// once).
func NewKubernetes(namespace string, bundle client.Client, reader client.Reader, reviews authv1client.TokenReviewsGetter, port int) *Server {
	return &Server{
		Bundle: &BundleStore{Client: bundle, Namespace: namespace},
		Validator: &Kubernetes{
			TokenReviews: reviews,
			Reader:       reader,
			Audiences:    []string{LegacyAudience, SentryAudience(DefaultControlPlaneTrustDomain, namespace)},
		},
		Port:   port,
		Config: reader,
	}
}

// NeedLeaderElection is false: sidecars may reach any replica through the Service.
func (s *Server) NeedLeaderElection() bool { return false }

// Start listens on Port and serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	port := s.Port
	if port == 0 {
		port = DefaultPort
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listen for the certificate authority: %w", err)
	}
	return s.Serve(ctx, lis)
}

// Serve loads (or creates) the trust bundle, then serves on lis until ctx ends.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	log := logf.FromContext(ctx).WithName("sentry")
	ca, err := s.Bundle.Ensure(ctx)
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("load trust bundle: %w", err)
	}
	s.ca.Store(ca)
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.servingCertificate() },
	})
	srv := grpc.NewServer(grpc.Creds(creds))
	sentryv1pb.RegisterCAServer(srv, s)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	log.Info("Serving the certificate authority", "address", lis.Addr().String(), "namespace", s.Bundle.Namespace)
	select {
	case <-ctx.Done():
		srv.GracefulStop()
		<-done
		return nil
	case err := <-done:
		return fmt.Errorf("serve the certificate authority: %w", err)
	}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// servingCertificate issues the CA's own certificate on first use and again once two
// thirds of its life have passed, so clients never meet an expired one.
func (s *Server) servingCertificate() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if c := s.serving; c != nil {
		life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
		if now.Before(c.Leaf.NotBefore.Add(life * 2 / 3)) {
			return c, nil
		}
	}
	ca := s.ca.Load()
	if ca == nil {
		return nil, errors.New("the trust bundle is not loaded yet")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	td := s.ControlPlaneTrustDomain
	if td == "" {
		td = DefaultControlPlaneTrustDomain
	}
	ns := s.Bundle.Namespace
	// The DNS names are what Outrigger's sidecars check; the SPIFFE ID is what daprd
	// checks (spiffe://<control plane td>/ns/<ns>/dapr-sentry).
	chain, err := ca.Sign(SignRequest{
		PublicKey: key.Public(),
		ID:        spiffe.ID{TrustDomain: td, Namespace: ns, AppID: ServiceName},
		DNSNames:  ServingDNSNames(ns),
	}, now)
	if err != nil {
		return nil, fmt.Errorf("issue the serving certificate: %w", err)
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	s.serving = c
	return c, nil
}

// ServingDNSNames are the names of Service dapr-sentry in the operator's namespace.
func ServingDNSNames(namespace string) []string {
	return []string{ServiceName + "." + namespace + ".svc", ServiceName + "." + namespace + ".svc.cluster.local"}
}

// SignCertificate validates the caller and signs its CSR.
func (s *Server) SignCertificate(ctx context.Context, req *sentryv1pb.SignCertificateRequest) (*sentryv1pb.SignCertificateResponse, error) {
	log := logf.FromContext(ctx).WithName("sentry").WithValues("namespace", req.GetNamespace(), "appID", req.GetId())
	resp, err := s.sign(ctx, req)
	if err != nil {
		log.V(1).Info("Refused to sign a certificate", "reason", err.Error())
		return nil, err
	}
	log.V(1).Info("Signed a certificate", "notAfter", resp.GetValidUntil().AsTime())
	return resp, nil
}

func (s *Server) sign(ctx context.Context, req *sentryv1pb.SignCertificateRequest) (*sentryv1pb.SignCertificateResponse, error) {
	switch v := req.GetTokenValidator(); v {
	case sentryv1pb.SignCertificateRequest_UNKNOWN, sentryv1pb.SignCertificateRequest_KUBERNETES:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "token validator %s is not enabled: only KUBERNETES is", v)
	}
	switch {
	case req.GetId() == "":
		return nil, status.Error(codes.InvalidArgument, "the app id is empty")
	case len(req.GetId()) > maxAppIDLength:
		return nil, status.Errorf(codes.InvalidArgument, "the app id is longer than %d characters", maxAppIDLength)
	case req.GetNamespace() == "":
		return nil, status.Error(codes.InvalidArgument, "the namespace is empty")
	case len(req.GetCertificateSigningRequest()) == 0:
		return nil, status.Error(codes.InvalidArgument, "the certificate signing request is empty")
	}
	csr, err := ParseCSR(req.GetCertificateSigningRequest())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id, err := s.Validator.Validate(ctx, req)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	// The authority's own name is never a workload's: a pod in the operator's namespace
	// that called itself dapr-sentry could otherwise stand in for the authority.
	if id.AppID == ServiceName && id.Namespace == s.Bundle.Namespace {
		return nil, status.Errorf(codes.PermissionDenied, "%s/%s is the certificate authority's own name, never a workload's", id.Namespace, id.AppID)
	}
	ca := s.ca.Load()
	if ca == nil {
		return nil, status.Error(codes.Unavailable, "the trust bundle is not loaded yet")
	}
	// A Configuration the webhook would have refused does not stop the authority: its
	// unreadable settings keep their defaults.
	settings, err := SystemSettings(ctx, s.Config, s.Bundle.Namespace)
	if err != nil {
		logf.FromContext(ctx).WithName("sentry").Error(err, "Signing with the default certificate lifetime and clock skew")
	}
	chain, err := ca.Sign(SignRequest{PublicKey: csr.PublicKey, ID: id, Validity: settings.WorkloadCertTTL, Skew: settings.AllowedClockSkew}, s.now())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "sign the certificate: %v", err)
	}
	return &sentryv1pb.SignCertificateResponse{
		WorkloadCertificate:    EncodeChain(chain),
		TrustChainCertificates: [][]byte{ca.TrustAnchors()},
		ValidUntil:             timestamppb.New(chain[0].NotAfter),
	}, nil
}
