package invoke

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate.
type testPKI struct {
	caPEM                    []byte
	pool                     *x509.CertPool
	server                   tls.Certificate
	clientCert, clientKeyPEM []byte
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"}, IPAddresses: ips,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	p := &testPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	sc, sk := issue(2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	if p.server, err = tls.X509KeyPair(sc, sk); err != nil {
		t.Fatal(err)
	}
	p.clientCert, p.clientKeyPEM = issue(3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func tlsDoc(b []byte) *daprv1alpha1.TLSDocument {
	raw, _ := json.Marshal(string(b))
	return &daprv1alpha1.TLSDocument{Value: common.DynamicValue{JSON: apiextensionsv1.JSON{Raw: raw}}}
}

// An HTTPEndpoint with clientTLS reaches a server that requires a client certificate
// signed by its CA, and trusts the server through rootCA; without the client
// certificate the call fails.
func TestHTTPEndpointClientTLS(t *testing.T) {
	pki := newTestPKI(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	withTLS := func(ct *daprv1alpha1.ClientTLS) *Block {
		ep := &daprv1alpha1.HTTPEndpoint{Spec: daprv1alpha1.HTTPEndpointSpec{BaseURL: srv.URL, ClientTLS: ct}}
		ep.Name = "secure"
		return &Block{AppID: "a", Endpoints: StaticEndpoints{"secure": ep}}
	}
	call := func(b *Block) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := b.Invoke(ctx, &Request{Target: "secure", Verb: http.MethodGet, Method: "x", Header: http.Header{}})
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body), nil
	}
	got, err := call(withTLS(&daprv1alpha1.ClientTLS{RootCA: tlsDoc(pki.caPEM), Certificate: tlsDoc(pki.clientCert), PrivateKey: tlsDoc(pki.clientKeyPEM)}))
	if err != nil || got != "hello leaf" {
		t.Fatalf("with client certificate: %q, %v", got, err)
	}
	if _, err := call(withTLS(&daprv1alpha1.ClientTLS{RootCA: tlsDoc(pki.caPEM)})); err == nil {
		t.Error("the server requires a client certificate, yet the call without one succeeded")
	}
	if _, err := call(withTLS(nil)); err == nil {
		t.Error("the server's CA is not trusted without rootCA, yet the call succeeded")
	}
	_, err = call(withTLS(&daprv1alpha1.ClientTLS{Certificate: tlsDoc(pki.clientCert)}))
	if err == nil || !strings.Contains(err.Error(), "clientTLS.certificate is set without clientTLS.privateKey") {
		t.Errorf("certificate without key: %v", err)
	}
	_, err = call(withTLS(&daprv1alpha1.ClientTLS{RootCA: tlsDoc([]byte("not pem"))}))
	if err == nil || !strings.Contains(err.Error(), "clientTLS.rootCA holds no PEM certificate") {
		t.Errorf("bad rootCA: %v", err)
	}
}
