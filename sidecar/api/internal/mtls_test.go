package internal

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
	"github.com/outrigger-dev/outrigger/sidecar/security/securitytest"
)

func TestMTLSCallerIsTheCertificates(t *testing.T) {
	ca := securitytest.New(t, time.Hour)
	id := func(app string) spiffe.ID { return spiffe.ID{TrustDomain: "public", Namespace: "default", AppID: app} }
	block := &echoBlock{got: make(chan *invoke.Call, 4)}
	addr, _, ctx := serve(t, NewServer(block, logr.Discard(), ca.Provider(t, id("b"))))
	client := NewClient(ca.Provider(t, id("c")))
	t.Cleanup(func() { _ = client.Close() })

	for _, tc := range []struct {
		name    string
		claimed invoke.Caller
		target  string
		ns      string
		want    codes.Code
	}{
		{name: "the truth", claimed: invoke.Caller{AppID: "c", Namespace: "default", TrustDomain: "public"}, target: "b"},
		{name: "no claim", target: "b"},
		{name: "another app", claimed: invoke.Caller{AppID: "a", Namespace: "default", TrustDomain: "public"}, target: "b", want: codes.PermissionDenied},
		{name: "another namespace", claimed: invoke.Caller{AppID: "c", Namespace: "other"}, target: "b", want: codes.PermissionDenied},
		{name: "another trust domain", claimed: invoke.Caller{AppID: "c", TrustDomain: "other"}, target: "b", want: codes.PermissionDenied},
		{name: "the server is not the target", target: "x", want: codes.Unavailable},
		{name: "the target in another namespace", target: "b", ns: "other", want: codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Call(ctx, addr, &invoke.Call{Caller: tc.claimed, TargetAppID: tc.target, TargetNamespace: tc.ns,
				Verb: "GET", Method: "m", Header: http.Header{}})
			if tc.want != codes.OK {
				if status.Code(err) != tc.want {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				if tc.want == codes.PermissionDenied && !strings.Contains(err.Error(), "certificate names spiffe://public/ns/default/c") {
					t.Errorf("the refusal does not say why: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if c := <-block.got; c.Caller != (invoke.Caller{AppID: "c", Namespace: "default", TrustDomain: "public"}) {
				t.Errorf("the block saw the caller %+v", c.Caller)
			}
		})
	}
}
