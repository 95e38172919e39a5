package sentry_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/internal/spiffe"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/sentry"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// A sidecar's projected token, reviewed by a real API server, gets it a certificate for
// its pod's app id over gRPC+TLS; anything that does not match is refused.
func TestSignCertificateKubernetes(t *testing.T) {
	// The validating webhooks are installed, so something must serve them.
	e := testenv.Shared(t, validation.SetupWithManager)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cpNS := e.Namespace(t, "outrigger-system")
	ns := e.Namespace(t, "apps")
	otherNS := e.Namespace(t, "other")
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}

	// The CA, on a loopback port.
	srv := sentry.NewKubernetes(cpNS, e.Client, e.Client, cs.AuthenticationV1(), 0)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, lis) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	// The anchors the injector hands to sidecars, from the ConfigMap; waiting for it is
	// waiting for the server to have loaded its bundle.
	cm := &corev1.ConfigMap{}
	for {
		err := e.Client.Get(ctx, client.ObjectKey{Namespace: cpNS, Name: sentry.TrustBundleName}, cm)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("trust bundle ConfigMap never appeared: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(cm.Data[sentry.KeyRootCert])) {
		t.Fatal("ConfigMap ca.crt holds no certificate")
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: sentry.ServingDNSNames(cpNS)[1], MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ca := sentryv1pb.NewCAClient(conn)

	newPod := func(name string, annotations map[string]string) *corev1.Pod {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
			Spec: corev1.PodSpec{ServiceAccountName: "nodeapp",
				Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		if err := e.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		return pod
	}
	token := func(pod *corev1.Pod, audience string) string {
		t.Helper()
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "nodeapp", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{
				Audiences:      []string{audience},
				BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenRequest: %v", err)
		}
		return tr.Status.Token
	}
	if err := e.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nodeapp"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Create(ctx, &daprv1alpha1.Configuration{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "appconfig"},
		Spec:       daprv1alpha1.ConfigurationSpec{AccessControl: &daprv1alpha1.AccessControlSpec{TrustDomain: "example.org"}},
	}); err != nil {
		t.Fatal(err)
	}
	pod := newPod("nodeapp-1", map[string]string{"dapr.io/app-id": "nodeapp"})
	good := token(pod, sentry.LegacyAudience)
	named := newPod("by-name", nil)
	configured := newPod("configured", map[string]string{"dapr.io/app-id": "cfgapp", "dapr.io/config": "appconfig"})
	gone := newPod("gone", map[string]string{"dapr.io/app-id": "nodeapp"})
	goneToken := token(gone, sentry.LegacyAudience)
	if err := e.Client.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	// A pod recreated under the same name has a new UID: the old token is not its.
	replaced := newPod("replaced", map[string]string{"dapr.io/app-id": "nodeapp"})
	replacedToken := token(replaced, sentry.LegacyAudience)
	if err := e.Client.Delete(ctx, replaced, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	for {
		err := e.Client.Get(ctx, client.ObjectKeyFromObject(replaced), &corev1.Pod{})
		if client.IgnoreNotFound(err) == nil && err != nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("pod replaced was never deleted")
		case <-time.After(50 * time.Millisecond):
		}
	}
	newPod("replaced", map[string]string{"dapr.io/app-id": "nodeapp"})

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
	request := func(id, namespace, tok string) *sentryv1pb.SignCertificateRequest {
		return &sentryv1pb.SignCertificateRequest{
			Id: id, Namespace: namespace, Token: tok, TrustDomain: "public",
			CertificateSigningRequest: csr, TokenValidator: sentryv1pb.SignCertificateRequest_KUBERNETES,
		}
	}

	t.Run("accepted", func(t *testing.T) {
		for name, tc := range map[string]struct {
			req  *sentryv1pb.SignCertificateRequest
			want spiffe.ID
		}{
			"legacy audience": {request("nodeapp", ns, good), spiffe.ID{TrustDomain: "public", Namespace: ns, AppID: "nodeapp"}},
			"sentry SPIFFE audience": {request("nodeapp", ns, token(pod, sentry.SentryAudience("cluster.local", cpNS))),
				spiffe.ID{TrustDomain: "public", Namespace: ns, AppID: "nodeapp"}},
			"no app-id annotation: the pod name": {request("by-name", ns, token(named, sentry.LegacyAudience)),
				spiffe.ID{TrustDomain: "public", Namespace: ns, AppID: "by-name"}},
			"Configuration's trust domain": {func() *sentryv1pb.SignCertificateRequest {
				r := request("cfgapp", ns, token(configured, sentry.LegacyAudience))
				r.TrustDomain = "example.org"
				return r
			}(), spiffe.ID{TrustDomain: "example.org", Namespace: ns, AppID: "cfgapp"}},
		} {
			t.Run(name, func(t *testing.T) {
				resp, err := ca.SignCertificate(ctx, tc.req)
				if err != nil {
					t.Fatal(err)
				}
				chain, err := certutil.ParseCertsPEM(resp.GetWorkloadCertificate())
				if err != nil {
					t.Fatal(err)
				}
				if len(chain) != 2 {
					t.Fatalf("chain of %d certificates, want leaf and issuer", len(chain))
				}
				if got, err := spiffe.FromCertificate(chain[0]); err != nil || got != tc.want {
					t.Errorf("identity %v %v, want %v", got, err, tc.want)
				}
				anchors := x509.NewCertPool()
				for _, pemRoot := range resp.GetTrustChainCertificates() {
					anchors.AppendCertsFromPEM(pemRoot)
				}
				inter := x509.NewCertPool()
				inter.AddCert(chain[1])
				if _, err := chain[0].Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
					t.Errorf("leaf does not verify against the trust chain: %v", err)
				}
				if !resp.GetValidUntil().AsTime().Equal(chain[0].NotAfter) {
					t.Errorf("ValidUntil %v, leaf NotAfter %v", resp.GetValidUntil().AsTime(), chain[0].NotAfter)
				}
			})
		}
	})

	t.Run("refused", func(t *testing.T) {
		for name, tc := range map[string]struct {
			req  *sentryv1pb.SignCertificateRequest
			code codes.Code
			msg  string
		}{
			"another app id":    {request("pythonapp", ns, good), codes.PermissionDenied, "app id mismatch"},
			"another namespace": {request("nodeapp", otherNS, good), codes.PermissionDenied, "namespace mismatch"},
			"wrong audience":    {request("nodeapp", ns, token(pod, "https://kubernetes.default.svc")), codes.PermissionDenied, "token was refused"},
			"pod deleted":       {request("nodeapp", ns, goneToken), codes.PermissionDenied, ""},
			"pod recreated":     {request("nodeapp", ns, replacedToken), codes.PermissionDenied, ""},
			"garbage token":     {request("nodeapp", ns, "not.a.token"), codes.PermissionDenied, "token was refused"},
			"no token":          {request("nodeapp", ns, ""), codes.InvalidArgument, "no token"},
			"another trust domain": {func() *sentryv1pb.SignCertificateRequest {
				r := request("nodeapp", ns, good)
				r.TrustDomain = "evil"
				return r
			}(), codes.PermissionDenied, "trust domain mismatch"},
			"Configuration's domain": {request("cfgapp", ns, token(configured, sentry.LegacyAudience)), codes.PermissionDenied, "trust domain mismatch"},
			"another validator": {func() *sentryv1pb.SignCertificateRequest {
				r := request("nodeapp", ns, good)
				r.TokenValidator = sentryv1pb.SignCertificateRequest_INSECURE
				return r
			}(), codes.InvalidArgument, "INSECURE"},
			"garbage CSR": {func() *sentryv1pb.SignCertificateRequest {
				r := request("nodeapp", ns, good)
				r.CertificateSigningRequest = []byte("x")
				return r
			}(), codes.InvalidArgument, "not PEM"},
		} {
			t.Run(name, func(t *testing.T) {
				_, err := ca.SignCertificate(ctx, tc.req)
				st, _ := status.FromError(err)
				if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
					t.Fatalf("got %v %q, want %v with %q", st.Code(), st.Message(), tc.code, tc.msg)
				}
				t.Logf("%v: %s", st.Code(), st.Message())
			})
		}
	})
}
