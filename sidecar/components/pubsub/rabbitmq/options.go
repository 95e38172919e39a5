package rabbitmq

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
)

// options are the component's metadata, with the names and defaults of Dapr's
// components-contrib pubsub/rabbitmq (metadata.go there, which decodes with dapr/kit: a
// bare number given for a duration is a number of seconds, hence unit:"s").
type options struct {
	ConsumerID string `metadata:"consumerID"`

	ConnectionString string `metadata:"connectionString"`
	// Host is Dapr's deprecated spelling of connectionString, still honoured there.
	Host     string `metadata:"host"`
	Protocol string `metadata:"protocol"`
	Hostname string `metadata:"hostname" default:"localhost"`
	Username string `metadata:"username"`
	Password string `metadata:"password"`

	// Durable defaults to true although Dapr's metadata.yaml and docs say false: Dapr's
	// code (createMetadata) starts from true, and that is what its sidecars declare. A
	// different durability on the same exchange or queue makes the broker refuse the
	// declaration (PRECONDITION_FAILED), so Dapr and Outrigger sidecars sharing a broker
	// must agree.
	Durable           bool   `metadata:"durable" default:"true"`
	EnableDeadLetter  bool   `metadata:"enableDeadLetter"`
	DeletedWhenUnused bool   `metadata:"deletedWhenUnused" default:"true"`
	AutoAck           bool   `metadata:"autoAck"`
	RequeueInFailure  bool   `metadata:"requeueInFailure"`
	DeliveryMode      uint8  `metadata:"deliveryMode"`
	PrefetchCount     uint8  `metadata:"prefetchCount"`
	MaxLen            int64  `metadata:"maxLen"`
	MaxLenBytes       int64  `metadata:"maxLenBytes"`
	ExchangeKind      string `metadata:"exchangeKind" default:"fanout"`
	// PublisherConfirm is accepted for compatibility; Outrigger always waits for the
	// broker's confirm (see Publish).
	PublisherConfirm bool          `metadata:"publisherConfirm"`
	ReconnectWait    time.Duration `metadata:"reconnectWaitSeconds" unit:"s" default:"3s"`
	ClientName       string        `metadata:"clientName"`
	HeartBeat        time.Duration `metadata:"heartBeat" unit:"s" default:"10s"`
	SaslExternal     bool          `metadata:"saslExternal"`
	ConcurrencyMode  string        `metadata:"concurrencyMode" default:"parallel"`
	// TTLInSeconds is the expiration of every message whose request sets none.
	TTLInSeconds                       *int64 `metadata:"ttlInSeconds"`
	PublishMessagePropertiesToMetadata bool   `metadata:"publishMessagePropertiesToMetadata"`

	CACert     string `metadata:"caCert"`
	ClientCert string `metadata:"clientCert"`
	ClientKey  string `metadata:"clientKey"`

	// Derived by parseOptions.
	uri     string      // what is dialled; may hold a password
	broker  string      // the broker as errors and logs name it: no credentials
	tlsCfg  *tls.Config // nil unless amqps with certificates
	ttl     time.Duration
	single  bool // concurrencyMode=single
	isAMQPS bool
}

const (
	protocolAMQP  = "amqp"
	protocolAMQPS = "amqps"
)

func parseOptions(md components.Metadata) (options, error) {
	var o options
	if err := metadata.Decode(md.Properties, &o); err != nil {
		return o, err
	}
	if err := o.validate(); err != nil {
		return o, err
	}
	if o.ConsumerID == "" {
		o.ConsumerID = md.AppID
	}
	return o, nil
}

// validate is a chain of small checks, each naming the property at fault; it also
// fills the derived fields.
func (o *options) validate() error {
	errs := []error{o.resolveURI()}
	if o.DeliveryMode > 2 {
		errs = append(errs, fmt.Errorf(`metadata "deliveryMode": %d must be 0, 1 (transient) or 2 (persistent)`, o.DeliveryMode))
	}
	switch o.ExchangeKind {
	case amqp.ExchangeFanout, amqp.ExchangeTopic, amqp.ExchangeDirect, amqp.ExchangeHeaders, "x-consistent-hash":
	default:
		errs = append(errs, fmt.Errorf(`metadata "exchangeKind": %q must be fanout, topic, direct, headers or x-consistent-hash`, o.ExchangeKind))
	}
	switch strings.ToLower(o.ConcurrencyMode) {
	case "parallel":
	case "single":
		o.single = true
	default:
		errs = append(errs, fmt.Errorf(`metadata "concurrencyMode": %q must be "parallel" or "single"`, o.ConcurrencyMode))
	}
	if o.ReconnectWait <= 0 {
		errs = append(errs, fmt.Errorf(`metadata "reconnectWaitSeconds": %s must be positive`, o.ReconnectWait))
	}
	if o.HeartBeat < 0 {
		errs = append(errs, fmt.Errorf(`metadata "heartBeat": %s must not be negative`, o.HeartBeat))
	}
	if o.MaxLen < 0 {
		errs = append(errs, fmt.Errorf(`metadata "maxLen": %d must not be negative`, o.MaxLen))
	}
	if o.MaxLenBytes < 0 {
		errs = append(errs, fmt.Errorf(`metadata "maxLenBytes": %d must not be negative`, o.MaxLenBytes))
	}
	if o.TTLInSeconds != nil {
		if *o.TTLInSeconds <= 0 {
			errs = append(errs, fmt.Errorf(`metadata "ttlInSeconds": %d must be greater than zero`, *o.TTLInSeconds))
		} else {
			o.ttl = secondsToDuration(*o.TTLInSeconds)
		}
	}
	errs = append(errs, o.resolveTLS())
	return errors.Join(errs...)
}

// resolveURI picks what to dial: connectionString, else the deprecated host, else a
// URL made of protocol, hostname, username and password, as Dapr does.
func (o *options) resolveURI() error {
	if o.ConnectionString == "" {
		o.ConnectionString = o.Host
	}
	if o.Protocol != "" && o.Protocol != protocolAMQP && o.Protocol != protocolAMQPS {
		return fmt.Errorf(`metadata "protocol": %q must be "amqp" or "amqps"`, o.Protocol)
	}
	if o.ConnectionString == "" {
		scheme := o.Protocol
		if scheme == "" {
			scheme = protocolAMQP
		}
		u := url.URL{Scheme: scheme, Host: o.Hostname}
		switch {
		case o.Username != "" && o.Password != "":
			u.User = url.UserPassword(o.Username, o.Password)
		case o.Username != "":
			u.User = url.User(o.Username)
		}
		o.uri = u.String()
	} else {
		o.uri = o.ConnectionString
	}
	field := "connectionString"
	if o.ConnectionString == "" {
		field = "hostname"
	}
	uri, err := amqp.ParseURI(o.uri)
	if err != nil {
		// The parser's message may quote the whole string, password included.
		return fmt.Errorf(`metadata %q is not an AMQP URI such as amqp://user:password@host:5672/vhost (not shown: it may hold a password)`, field)
	}
	if o.Protocol != "" && o.ConnectionString != "" && o.Protocol != uri.Scheme {
		return fmt.Errorf(`metadata "protocol": %q does not match the scheme %q of "connectionString"`, o.Protocol, uri.Scheme)
	}
	o.isAMQPS = uri.Scheme == protocolAMQPS
	vhost := uri.Vhost
	if !strings.HasPrefix(vhost, "/") {
		vhost = "/" + vhost
	}
	o.broker = uri.Scheme + "://" + net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)) + vhost
	return nil
}

// resolveTLS builds the client TLS configuration from caCert, clientCert and clientKey,
// which apply to amqps only, as in Dapr.
func (o *options) resolveTLS() error {
	var errs []error
	if (o.ClientCert == "") != (o.ClientKey == "") {
		errs = append(errs, errors.New(`metadata "clientCert" and "clientKey" must be set together`))
	}
	if o.SaslExternal && (o.CACert == "" || o.ClientCert == "" || o.ClientKey == "") {
		errs = append(errs, errors.New(`metadata "saslExternal" can only be true when "caCert", "clientCert" and "clientKey" are all set`))
	}
	if len(errs) > 0 || (o.CACert == "" && o.ClientCert == "") {
		return errors.Join(errs...)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(o.CACert)) {
			errs = append(errs, errors.New(`metadata "caCert" holds no PEM certificate`))
		}
		cfg.RootCAs = pool
	}
	if o.ClientCert != "" {
		cert, err := tls.X509KeyPair([]byte(o.ClientCert), []byte(o.ClientKey))
		if err != nil {
			errs = append(errs, fmt.Errorf(`metadata "clientCert"/"clientKey": %w`, err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	o.tlsCfg = cfg
	return errors.Join(errs...)
}

// queueArgs are the queue arguments the component's metadata asks for.
func (o *options) queueArgs() amqp.Table {
	args := amqp.Table{}
	if o.MaxLen > 0 {
		args[argMaxLength] = o.MaxLen
	}
	if o.MaxLenBytes > 0 {
		args[argMaxLengthBytes] = o.MaxLenBytes
	}
	return args
}

func secondsToDuration(s int64) time.Duration {
	if s > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s) * time.Second
}
