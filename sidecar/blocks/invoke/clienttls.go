package invoke

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
)

// tlsClients caches one HTTP client per distinct clientTLS configuration, so that
// connections to an HTTPEndpoint are reused across calls; the key is a digest of the
// resolved PEM documents, so a changed secret or manifest gets a new client.
type tlsClients struct {
	mu      sync.Mutex
	clients map[[32]byte]*http.Client
}

func (c *tlsClients) get(key [32]byte, build func() (*http.Client, error)) (*http.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[key]; ok {
		return cl, nil
	}
	cl, err := build()
	if err != nil {
		return nil, err
	}
	if c.clients == nil {
		c.clients = map[[32]byte]*http.Client{}
	}
	c.clients[key] = cl
	return cl, nil
}

// endpointClient is the client for an HTTPEndpoint: the shared one without clientTLS,
// else one that trusts rootCA, presents certificate and privateKey, and renegotiates
// as the manifest says.
func (b *Block) endpointClient(ctx context.Context, ep *daprv1alpha1.HTTPEndpoint) (*http.Client, error) {
	ct := ep.Spec.ClientTLS
	if ct == nil {
		if b.External != nil {
			return b.External, nil
		}
		return defaultExternal, nil
	}
	doc := func(field string, d *daprv1alpha1.TLSDocument) ([]byte, error) {
		if d == nil {
			return nil, nil
		}
		v, err := b.headerValue(ctx, ep, common.NameValuePair{Name: field, Value: d.Value, SecretKeyRef: d.SecretKeyRef})
		if err != nil {
			return nil, fmt.Errorf("clientTLS.%s: %w", field, err)
		}
		return []byte(v), nil
	}
	rootCA, err := doc("rootCA", ct.RootCA)
	if err != nil {
		return nil, err
	}
	cert, err := doc("certificate", ct.Certificate)
	if err != nil {
		return nil, err
	}
	key, err := doc("privateKey", ct.PrivateKey)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, part := range [][]byte{rootCA, {0}, cert, {0}, key, {0}, []byte(ct.Renegotiation)} {
		h.Write(part)
	}
	var digest [32]byte
	copy(digest[:], h.Sum(nil))
	return b.tls.get(digest, func() (*http.Client, error) {
		cfg, err := clientTLSConfig(rootCA, cert, key, ct.Renegotiation)
		if err != nil {
			return nil, err
		}
		cl := appchannel.NewClient(appchannel.ProtocolHTTPS)
		tr, ok := cl.Transport.(*http.Transport)
		if !ok {
			return nil, errors.New("the HTTPS client has no configurable transport")
		}
		tr = tr.Clone()
		tr.TLSClientConfig = cfg
		cl.Transport = tr
		return cl, nil
	})
}

// clientTLSConfig builds the TLS settings of an HTTPEndpoint, naming the field at fault
// in every error.
func clientTLSConfig(rootCA, cert, key []byte, reneg daprv1alpha1.Renegotiation) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(rootCA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(rootCA) {
			return nil, errors.New("clientTLS.rootCA holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	switch {
	case len(cert) > 0 && len(key) > 0:
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("clientTLS.certificate and clientTLS.privateKey: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case len(cert) > 0:
		return nil, errors.New("clientTLS.certificate is set without clientTLS.privateKey")
	case len(key) > 0:
		return nil, errors.New("clientTLS.privateKey is set without clientTLS.certificate")
	}
	switch reneg {
	case "", daprv1alpha1.RenegotiateNever:
		cfg.Renegotiation = tls.RenegotiateNever
	case daprv1alpha1.RenegotiateOnceAsClient:
		cfg.Renegotiation = tls.RenegotiateOnceAsClient
	case daprv1alpha1.RenegotiateFreelyAsClient:
		cfg.Renegotiation = tls.RenegotiateFreelyAsClient
	default:
		return nil, fmt.Errorf("clientTLS.renegotiation %q is not Never, OnceAsClient or FreelyAsClient", reneg)
	}
	return cfg, nil
}
