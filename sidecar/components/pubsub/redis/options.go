package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// options are the component's metadata, with the names of Dapr's pubsub/redis
// (metadata.yaml there, and common/component/redis/settings.go for the client).
//
// The defaults of processingTimeout and redeliverInterval are what Dapr's code applies
// (60s and 15s), not what its metadata.yaml and docs print (15s and 60s): a Dapr sidecar
// left at its defaults cancels a handler after 60s, and an app that relies on that must
// behave the same here.
type options struct {
	Host               string `metadata:"redisHost" required:"true"`
	Username           string `metadata:"redisUsername"`
	Password           string `metadata:"redisPassword"`
	DB                 int    `metadata:"redisDB" default:"0"`
	RedisType          string `metadata:"redisType" default:"node"`
	EnableTLS          bool   `metadata:"enableTLS"`
	InsecureSkipVerify bool   `metadata:"insecureSkipTLSVerify"`
	ClientCert         string `metadata:"clientCert"`
	ClientKey          string `metadata:"clientKey"`
	Failover           bool   `metadata:"failover"`
	SentinelMasterName string `metadata:"sentinelMasterName"`
	SentinelUsername   string `metadata:"sentinelUsername"`
	SentinelPassword   string `metadata:"sentinelPassword"`
	UseEntraID         bool   `metadata:"useEntraID"`

	// Unset, these keep go-redis's defaults, as Dapr's pub/sub does (3 retries, 8ms to
	// 512ms backoff); the state store's legacy defaults do not apply here.
	RedisMaxRetries       *int           `metadata:"redisMaxRetries"`
	RedisMinRetryInterval *time.Duration `metadata:"redisMinRetryInterval"`
	RedisMaxRetryInterval *time.Duration `metadata:"redisMaxRetryInterval"`

	DialTimeout  time.Duration `metadata:"dialTimeout" default:"5s"`
	ReadTimeout  time.Duration `metadata:"readTimeout" default:"3s"`
	WriteTimeout time.Duration `metadata:"writeTimeout"`
	PoolSize     int           `metadata:"poolSize"`
	PoolTimeout  time.Duration `metadata:"poolTimeout"`
	MinIdleConns int           `metadata:"minIdleConns"`
	IdleTimeout  time.Duration `metadata:"idleTimeout" default:"5m"`
	MaxConnAge   time.Duration `metadata:"maxConnAge"`
	// IdleCheckFrequency configured go-redis v8's reaper, which v9 no longer has; it is
	// accepted so that Dapr manifests keep loading.
	IdleCheckFrequency time.Duration `metadata:"idleCheckFrequency"`

	ConsumerID        string        `metadata:"consumerID"`
	RedeliverInterval time.Duration `metadata:"redeliverInterval" default:"15s"`
	ProcessingTimeout time.Duration `metadata:"processingTimeout" default:"60s"`
	// QueueDepth caps how many messages one read takes from Redis.
	QueueDepth uint `metadata:"queueDepth" default:"100"`
	// Concurrency bounds the handler calls of a subscription whose request sets no
	// MaxConcurrency. Dapr shares its workers among all subscriptions of the component;
	// here each subscription gets its own bound, so that a slow topic cannot starve the
	// others.
	Concurrency  *uint         `metadata:"concurrency"`
	MaxLenApprox int64         `metadata:"maxLenApprox"`
	StreamTTL    time.Duration `metadata:"streamTTL"`
	AckOnError   bool          `metadata:"ackOnError"`
}

const defaultRedisPort = "6379"

func parseOptions(md components.Metadata) (options, error) {
	var o options
	if err := metadata.Decode(md.Properties, &o); err != nil {
		return o, err
	}
	if o.ConsumerID == "" {
		o.ConsumerID = md.AppID
	}
	return o, o.validate()
}

// validate is a chain of small checks, each naming the property at fault.
func (o *options) validate() error {
	var errs []error
	switch strings.ToLower(o.RedisType) {
	case "node", "cluster":
	default:
		errs = append(errs, fmt.Errorf(`metadata "redisType": %q must be "node" or "cluster"`, o.RedisType))
	}
	if o.Failover && o.SentinelMasterName == "" {
		errs = append(errs, errors.New(`metadata "sentinelMasterName" is required when "failover" is true`))
	}
	if o.Failover && o.isCluster() {
		errs = append(errs, errors.New(`metadata "failover": sentinel failover with "redisType" "cluster" is not supported by Outrigger's pubsub.redis`))
	}
	if o.UseEntraID {
		errs = append(errs, errors.New(`metadata "useEntraID": Entra ID authentication is not supported by Outrigger's pubsub.redis; use "redisUsername" and "redisPassword"`))
	}
	if (o.ClientCert == "") != (o.ClientKey == "") {
		errs = append(errs, errors.New(`metadata "clientCert" and "clientKey" must be set together`))
	}
	for _, c := range []struct {
		name string
		neg  bool
	}{
		{"redisDB", o.DB < 0},
		{"poolSize", o.PoolSize < 0},
		{"minIdleConns", o.MinIdleConns < 0},
		{"redeliverInterval", o.RedeliverInterval < 0},
		{"processingTimeout", o.ProcessingTimeout < 0},
		{"maxLenApprox", o.MaxLenApprox < 0},
		{"streamTTL", o.StreamTTL < 0},
	} {
		if c.neg {
			errs = append(errs, fmt.Errorf(`metadata %q must not be negative`, c.name))
		}
	}
	if o.QueueDepth == 0 {
		errs = append(errs, errors.New(`metadata "queueDepth" must be at least 1`))
	}
	if o.Concurrency != nil && *o.Concurrency == 0 {
		errs = append(errs, errors.New(`metadata "concurrency" must be at least 1`))
	}
	return errors.Join(errs...)
}

func (o *options) isCluster() bool { return strings.EqualFold(o.RedisType, "cluster") }

// redelivery reports whether pending messages are reclaimed at all: as in Dapr, a zero
// redeliverInterval or processingTimeout turns it off.
func (o *options) redelivery() bool { return o.RedeliverInterval > 0 && o.ProcessingTimeout > 0 }

// concurrency is the bound on a subscription's handler calls: the request's, else the
// component's, else the family default.
func (o *options) concurrency(req pubsub.SubscribeRequest) int {
	if req.MaxConcurrency <= 0 && o.Concurrency != nil {
		return int(*o.Concurrency)
	}
	return req.Concurrency()
}

// addrs returns the host list with a port on each address. Dapr hands redisHost to
// go-redis unchanged, where a bare host fails to dial; defaulting the port is kinder
// and changes nothing for a manifest that works with Dapr.
func (o *options) addrs() ([]string, error) {
	var out []string
	for _, a := range strings.Split(o.Host, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, defaultRedisPort)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, errors.New(`metadata "redisHost" is required`)
	}
	if len(out) > 1 && !o.isCluster() && !o.Failover {
		return nil, fmt.Errorf(`metadata "redisHost": %d addresses given, but "redisType" "node" takes one (several are for failover or cluster)`, len(out))
	}
	return out, nil
}

// negative maps any negative duration to go-redis's -1 ("disabled"): Dapr passes "-1"
// through as -1ns, and the shared decoder reads it as -1ms.
func negative(d time.Duration) time.Duration {
	if d < 0 {
		return -1
	}
	return d
}

func (o *options) tlsConfig() (*tls.Config, error) {
	if !o.EnableTLS {
		return nil, nil
	}
	// Dapr's enableTLS also skips verification; Outrigger verifies unless
	// insecureSkipTLSVerify says otherwise, as its state.redis does.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // opt-in
	if o.ClientCert != "" {
		cert, err := tls.X509KeyPair([]byte(o.ClientCert), []byte(o.ClientKey))
		if err != nil {
			return nil, fmt.Errorf(`metadata "clientCert"/"clientKey": %w`, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// universal is the go-redis configuration the options describe. poolSize overrides
// the pool size when positive.
func (o *options) universal(poolSize int) (*goredis.UniversalOptions, error) {
	addrs, err := o.addrs()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	u := &goredis.UniversalOptions{
		Addrs:            addrs,
		MasterName:       o.SentinelMasterName,
		SentinelUsername: o.SentinelUsername,
		SentinelPassword: o.SentinelPassword,
		Username:         o.Username,
		Password:         o.Password,
		DB:               o.DB,
		DialTimeout:      negative(o.DialTimeout),
		ReadTimeout:      negative(o.ReadTimeout),
		WriteTimeout:     negative(o.WriteTimeout),
		// Publish is bounded by its caller's context; let that deadline reach the socket.
		ContextTimeoutEnabled: true,
		PoolSize:              o.PoolSize,
		PoolTimeout:           negative(o.PoolTimeout),
		MinIdleConns:          o.MinIdleConns,
		ConnMaxIdleTime:       negative(o.IdleTimeout),
		ConnMaxLifetime:       negative(o.MaxConnAge),
		TLSConfig:             tlsCfg,
		// Maintenance notifications are a Redis Cloud feature; asking a plain server for
		// them only costs a round trip and a log line per connection.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if o.RedisMaxRetries != nil {
		// 0 is go-redis's default of 3 retries, as it is in Dapr whatever its docs say;
		// a negative number turns retries off.
		u.MaxRetries = max(*o.RedisMaxRetries, -1)
	}
	if o.RedisMinRetryInterval != nil {
		u.MinRetryBackoff = negative(*o.RedisMinRetryInterval)
	}
	if o.RedisMaxRetryInterval != nil {
		u.MaxRetryBackoff = negative(*o.RedisMaxRetryInterval)
	}
	if poolSize > 0 {
		u.PoolSize = poolSize
		u.MinIdleConns = 0
	}
	return u, nil
}

// newClient builds the client the options describe; it does not connect.
func (o *options) newClient(poolSize int) (goredis.UniversalClient, error) {
	u, err := o.universal(poolSize)
	if err != nil {
		return nil, err
	}
	switch {
	case o.Failover:
		return goredis.NewFailoverClient(u.Failover()), nil
	case o.isCluster():
		return goredis.NewClusterClient(u.Cluster()), nil
	default:
		return goredis.NewClient(u.Simple()), nil
	}
}
