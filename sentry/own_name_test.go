package sentry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
)

// fixedValidator vouches for one identity, whatever the request.
type fixedValidator spiffe.ID

func (v fixedValidator) Validate(context.Context, *sentryv1pb.SignCertificateRequest) (spiffe.ID, error) {
	return spiffe.ID(v), nil
}

// No workload gets the authority's own name, even one the validator vouches for.
func TestSignRefusesTheAuthoritysOwnName(t *testing.T) {
	now := time.Now()
	ca, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	req := &sentryv1pb.SignCertificateRequest{Id: "x", Namespace: "outrigger-system", Token: "t", CertificateSigningRequest: newCSR(t, key)}
	for _, tt := range []struct {
		id   spiffe.ID
		want codes.Code
	}{
		{spiffe.ID{TrustDomain: "cluster.local", Namespace: "outrigger-system", AppID: "dapr-sentry"}, codes.PermissionDenied},
		{spiffe.ID{TrustDomain: "public", Namespace: "outrigger-system", AppID: "dapr-sentry"}, codes.PermissionDenied},
		{spiffe.ID{TrustDomain: "public", Namespace: "shop", AppID: "dapr-sentry"}, codes.OK},
		{spiffe.ID{TrustDomain: "public", Namespace: "outrigger-system", AppID: "orders"}, codes.OK},
	} {
		s := &Server{Bundle: &BundleStore{Namespace: "outrigger-system"}, Validator: fixedValidator(tt.id), Now: func() time.Time { return now }}
		s.ca.Store(ca)
		_, err := s.sign(context.Background(), req)
		if got := status.Code(err); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.id, err, tt.want)
		}
	}
}
