package mqtt3

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
)

// options are the component's metadata, with the names and defaults of Dapr's
// pubsub/mqtt3 (its metadata.yaml and metadata.go).
type options struct {
	// URL is secret in Dapr's eyes (it may carry a password): no error quotes it.
	URL          string `metadata:"url" required:"true"`
	ConsumerID   string `metadata:"consumerID"`
	QoS          uint8  `metadata:"qos" default:"1"`
	Retain       bool   `metadata:"retain" default:"false"`
	CleanSession bool   `metadata:"cleanSession" default:"false"`
	CACert       string `metadata:"caCert"`
	ClientCert   string `metadata:"clientCert"`
	ClientKey    string `metadata:"clientKey"`
}

// broker is where and as whom to connect, read from the url.
type broker struct {
	addr     string // what paho dials: scheme://host:port[/path]
	username string
	password string
	tls      *tls.Config
}

func parseOptions(md components.Metadata) (options, broker, error) {
	var o options
	if err := metadata.Decode(md.Properties, &o); err != nil {
		return o, broker{}, err
	}
	// The runtime gives Dapr's components the app id as consumerID when the manifest
	// sets none; Outrigger passes the app id alongside instead.
	if o.ConsumerID == "" {
		o.ConsumerID = md.AppID
	}
	if err := o.validate(); err != nil {
		return o, broker{}, err
	}
	b, err := o.broker()
	return o, b, err
}

// validate is a chain of small checks, each naming the property at fault.
func (o *options) validate() error {
	var errs []error
	if o.QoS > 2 {
		errs = append(errs, fmt.Errorf(`metadata "qos": %d must be 0, 1 or 2`, o.QoS))
	}
	if o.ConsumerID == "" {
		errs = append(errs, errors.New(`metadata "consumerID" is required when the sidecar has no app id`))
	}
	if (o.ClientCert == "") != (o.ClientKey == "") {
		errs = append(errs, errors.New(`metadata "clientCert" and "clientKey" must be set together`))
	}
	return errors.Join(errs...)
}

// broker reads the url as Dapr does: the scheme picks plain TCP or TLS (Dapr's aliases
// included), and user info gives the credentials. Unlike Dapr, a missing port gets
// MQTT's default, and a WebSocket URL keeps its path.
func (o *options) broker() (broker, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return broker{}, errors.New(`metadata "url" is not a URL such as "tcp://host:1883"`)
	}
	var b broker
	scheme, port := strings.ToLower(u.Scheme), ""
	switch scheme {
	case "tcp", "mqtt":
		scheme, port = "tcp", "1883"
	case "ssl", "mqtts", "tcps", "tls":
		scheme, port = "ssl", "8883"
	case "ws", "wss":
	default:
		return broker{}, fmt.Errorf(`metadata "url": scheme %q is not one of tcp, mqtt, ssl, mqtts, tcps, tls, ws or wss`, u.Scheme)
	}
	if u.Hostname() == "" {
		return broker{}, errors.New(`metadata "url" names no host`)
	}
	host := u.Host
	if u.Port() == "" && port != "" {
		host = net.JoinHostPort(u.Hostname(), port)
	}
	b.addr = scheme + "://" + host
	if scheme == "ws" || scheme == "wss" {
		b.addr += u.EscapedPath()
	}
	if u.User != nil {
		b.username = u.User.Username()
		b.password, _ = u.User.Password()
	}
	b.tls, err = o.tlsConfig(scheme == "ssl" || scheme == "wss")
	return b, err
}

// tlsConfig is nil when nothing asks for TLS; paho then uses its own default for a TLS
// scheme.
func (o *options) tlsConfig(secure bool) (*tls.Config, error) {
	if !secure && o.CACert == "" && o.ClientCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(o.CACert)) {
			return nil, errors.New(`metadata "caCert" holds no PEM certificate`)
		}
		cfg.RootCAs = pool
	}
	if o.ClientCert != "" {
		cert, err := tls.X509KeyPair([]byte(o.ClientCert), []byte(o.ClientKey))
		if err != nil {
			return nil, fmt.Errorf(`metadata "clientCert"/"clientKey": %w`, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
