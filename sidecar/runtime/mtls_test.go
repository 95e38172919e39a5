package runtime

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
	"github.com/outrigger-dev/outrigger/sidecar/security/securitytest"
)

// mtlsFlags are the flags and environment the injector gives a sidecar with mTLS on,
// for the test CA ca.
func mtlsFlags(ca *securitytest.CA, extra ...string) []string {
	return append([]string{"--enable-mtls", "--sentry-address", ca.Addr,
		"env:DAPR_TRUST_ANCHORS=" + string(ca.RootPEM), "env:DAPR_SENTRY_TOKEN_FILE=" + ca.TokenFile}, extra...)
}

func TestMTLSInvoke(t *testing.T) {
	ca := securitytest.New(t, time.Hour)
	m := newMesh(t)
	b := m.sidecar("b", echoApp(t).URL, mtlsFlags(ca, "--config", writeFile(t, "config.yaml", aclConfig))...)
	a := m.sidecar("a", echoApp(t).URL, mtlsFlags(ca)...)
	c := m.sidecar("c", "", mtlsFlags(ca)...)
	plain := m.sidecar("plain", "")

	// Both ways, with the caller's proven identity reaching the app.
	for _, tc := range []struct {
		from       *Runtime
		to, caller string
	}{{a, "b", "a"}, {b, "a", "b"}, {a, "b.default", "a"}} {
		code, _, body := call(t, http.MethodPost, httpURL(tc.from, "/v1.0/invoke/"+tc.to+"/method/orders/1"), strings.NewReader("x"))
		if code != http.StatusCreated {
			t.Fatalf("%s -> %s: %d %s", tc.caller, tc.to, code, body)
		}
		if got := decodeSeen(t, body).Header.Get("Dapr-Caller-App-Id"); got != tc.caller {
			t.Errorf("%s -> %s: the app saw the caller %q", tc.caller, tc.to, got)
		}
	}
	// b's access control allows a, not c, by their certificates.
	code, _, body := call(t, http.MethodPost, httpURL(c, "/v1.0/invoke/b/method/orders/1"), nil, "dapr-caller-app-id", "a")
	if e := decodeError(t, body); code != http.StatusForbidden || e.ErrorCode != "ERR_PERMISSION_DENIED" {
		t.Errorf("c -> b: %d %s", code, body)
	}
	// A sidecar without mTLS cannot reach b, nor b it.
	if code, _, body := call(t, http.MethodPost, httpURL(plain, "/v1.0/invoke/b/method/orders/1"), nil); code < 500 {
		t.Errorf("plain -> b: %d %s", code, body)
	}
	if code, _, body := call(t, http.MethodPost, httpURL(a, "/v1.0/invoke/plain/method/x"), nil); code < 500 {
		t.Errorf("a -> plain: %d %s", code, body)
	}
}

// proxiedCheck calls b's internal port as a proxied gRPC call for app b, as a sidecar
// would, with the caller's identity claimed in the metadata.
func proxiedCheck(t *testing.T, b *Runtime, creds credentials.TransportCredentials, caller string) error {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+b.Addr("internal").String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "dapr-app-id", "b", "dapr-caller-app-id", caller,
		"dapr-caller-namespace", "default", "dapr-caller-trust-domain", "public")
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestMTLSInternalPortRefusesUnprovenCallers(t *testing.T) {
	ca := securitytest.New(t, time.Hour)
	m := newMesh(t)
	b := m.sidecar("b", echoApp(t).URL, mtlsFlags(ca)...)

	if err := proxiedCheck(t, b, insecure.NewCredentials(), "a"); status.Code(err) != codes.Unavailable {
		t.Errorf("a plaintext client: %v", err)
	}
	// A certificate for c, under the right root, claiming to be a.
	cert := ca.Certificate(t, spiffe.ID{TrustDomain: "public", Namespace: "default", AppID: "c"})
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Roots, Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true}) //nolint:gosec // the test plays a sidecar; what b checks is the point
	err := proxiedCheck(t, b, creds, "a")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "certificate names spiffe://public/ns/default/c") {
		t.Errorf("c claiming to be a: %v", err)
	}
	// A certificate from another CA.
	rogue := securitytest.New(t, time.Hour)
	rcert := rogue.Certificate(t, spiffe.ID{TrustDomain: "public", Namespace: "default", AppID: "a"})
	rcreds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{rcert},
		InsecureSkipVerify: true}) //nolint:gosec // as above
	if err := proxiedCheck(t, b, rcreds, "a"); status.Code(err) != codes.Unavailable {
		t.Errorf("a certificate from another CA: %v", err)
	}
}

func TestMTLSFlags(t *testing.T) {
	ca := securitytest.New(t, time.Hour)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no sentry address", []string{"--enable-mtls"}, map[string]string{"DAPR_TRUST_ANCHORS": string(ca.RootPEM)}, "--sentry-address"},
		{"no anchors", []string{"--enable-mtls", "--sentry-address", ca.Addr}, nil, "DAPR_TRUST_ANCHORS"},
		{"bad anchors", []string{"--enable-mtls", "--sentry-address", ca.Addr}, map[string]string{"DAPR_TRUST_ANCHORS": "not PEM"}, "DAPR_TRUST_ANCHORS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
			v := Flags(fs)
			if err := fs.Parse(append([]string{"--app-id", "a"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			_, err := v.Finish(func(k string) string { return tc.env[k] })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
	// Without the token file, the sidecar does not start, and says which file.
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	v := Flags(fs)
	if err := fs.Parse([]string{"--app-id", "a", "--enable-mtls", "--sentry-address", ca.Addr, "--resources-path", t.TempDir(),
		"--dapr-http-port", "0", "--dapr-grpc-port", "0", "--dapr-internal-grpc-port", "0", "--dapr-public-port", "0", "--enable-metrics=false"}); err != nil {
		t.Fatal(err)
	}
	missing := t.TempDir() + "/token"
	cfg, err := v.Finish(func(k string) string {
		return map[string]string{"DAPR_TRUST_ANCHORS": string(ca.RootPEM), "DAPR_SENTRY_TOKEN_FILE": missing}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	rt := New(cfg, testr.New(t))
	rt.RegistryDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rt.Run(ctx); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("got %v, want an error naming %s", err, missing)
	}
}
