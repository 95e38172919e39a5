package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
)

// options are the component's metadata, with Dapr's names and defaults (Dapr's
// state/redis/metadata.yaml and common/component/redis/settings.go). Durations read a bare
// number as milliseconds, as Dapr's redis Duration does.
type options struct {
	Host               string `metadata:"redisHost" required:"true"`
	Port               uint16 `metadata:"redisPort"`
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

	// Dapr applies these legacy defaults to state stores only: 3 retries, and a retry
	// interval of 2s (which go-redis then caps at the max backoff).
	RedisMaxRetries       *int           `metadata:"redisMaxRetries"`
	MaxRetries            *int           `metadata:"maxRetries"` // legacy alias of redisMaxRetries
	RedisMinRetryInterval *time.Duration `metadata:"redisMinRetryInterval"`
	// maxRetryBackoff is the legacy spelling of redisMinRetryInterval; Dapr reads it as a
	// whole number of nanoseconds (its docs give 3000000000 for 3s), so it stays an integer.
	MaxRetryBackoff       *int64         `metadata:"maxRetryBackoff"`
	RedisMaxRetryInterval *time.Duration `metadata:"redisMaxRetryInterval"`

	DialTimeout  time.Duration `metadata:"dialTimeout" default:"5s"`
	ReadTimeout  time.Duration `metadata:"readTimeout" default:"3s"`
	WriteTimeout time.Duration `metadata:"writeTimeout"`
	PoolSize     int           `metadata:"poolSize"`
	PoolTimeout  time.Duration `metadata:"poolTimeout"`
	MinIdleConns int           `metadata:"minIdleConns"`
	IdleTimeout  time.Duration `metadata:"idleTimeout" default:"5m"`
	MaxConnAge   time.Duration `metadata:"maxConnAge"`

	// TTLInSeconds is the default TTL of every write whose request sets none; absent or
	// non-positive means no default.
	TTLInSeconds    *int `metadata:"ttlInSeconds"`
	ActorStateStore bool `metadata:"actorStateStore"`
	// QueryIndexes configures RediSearch indexes in Dapr. Outrigger's redis store does not
	// offer the query API, so it is accepted (manifests written for Dapr keep loading) and
	// unused.
	QueryIndexes string `metadata:"queryIndexes"`
}

const defaultRedisPort = "6379"

func parseOptions(md components.Metadata) (options, error) {
	var o options
	if err := metadata.Decode(md.Properties, &o); err != nil {
		return o, err
	}
	return o, o.validate()
}

// validate is a chain of small checks, each naming the property at fault.
func (o *options) validate() error {
	var errs []error
	switch strings.ToLower(o.RedisType) {
	case "node":
	case "cluster":
		// Transactions run as one Lua script over all their keys, which Redis Cluster only
		// allows when every key hashes to the same slot.
		errs = append(errs, errors.New(`metadata "redisType": "cluster" is not supported by Outrigger's state.redis yet; use "node" (optionally with failover)`))
	default:
		errs = append(errs, fmt.Errorf(`metadata "redisType": %q must be "node" or "cluster"`, o.RedisType))
	}
	if o.Failover && o.SentinelMasterName == "" {
		errs = append(errs, errors.New(`metadata "sentinelMasterName" is required when "failover" is true`))
	}
	if (o.ClientCert == "") != (o.ClientKey == "") {
		errs = append(errs, errors.New(`metadata "clientCert" and "clientKey" must be set together`))
	}
	if o.DB < 0 {
		errs = append(errs, fmt.Errorf(`metadata "redisDB": %d must not be negative`, o.DB))
	}
	if o.PoolSize < 0 {
		errs = append(errs, fmt.Errorf(`metadata "poolSize": %d must not be negative`, o.PoolSize))
	}
	if o.MinIdleConns < 0 {
		errs = append(errs, fmt.Errorf(`metadata "minIdleConns": %d must not be negative`, o.MinIdleConns))
	}
	return errors.Join(errs...)
}

// addrs returns the host list with a port on each address (redisPort, else 6379), as
// Dapr's resolveHost does.
func (o *options) addrs() ([]string, error) {
	var out []string
	for _, a := range strings.Split(o.Host, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, p, err := net.SplitHostPort(a); err == nil {
			if o.Port != 0 && p != strconv.Itoa(int(o.Port)) {
				return nil, fmt.Errorf(`metadata "redisHost": %q already has port %s but "redisPort" is %d`, a, p, o.Port)
			}
			out = append(out, a)
			continue
		}
		port := defaultRedisPort
		if o.Port != 0 {
			port = strconv.Itoa(int(o.Port))
		}
		out = append(out, net.JoinHostPort(a, port))
	}
	if len(out) == 0 {
		return nil, errors.New(`metadata "redisHost" is required`)
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
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // opt-in, as in Dapr
	if o.ClientCert != "" {
		cert, err := tls.X509KeyPair([]byte(o.ClientCert), []byte(o.ClientKey))
		if err != nil {
			return nil, fmt.Errorf(`metadata "clientCert"/"clientKey": %w`, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (o *options) retries() (maxRetries int, minBackoff, maxBackoff time.Duration) {
	maxRetries = 3
	switch {
	case o.RedisMaxRetries != nil:
		maxRetries = *o.RedisMaxRetries
	case o.MaxRetries != nil:
		maxRetries = *o.MaxRetries
	}
	minBackoff = 2 * time.Second
	switch {
	case o.RedisMinRetryInterval != nil:
		minBackoff = *o.RedisMinRetryInterval
	case o.MaxRetryBackoff != nil:
		minBackoff = time.Duration(*o.MaxRetryBackoff)
	}
	if o.RedisMaxRetryInterval != nil {
		maxBackoff = *o.RedisMaxRetryInterval
	}
	if maxRetries < 0 {
		maxRetries = -1
	}
	return maxRetries, negative(minBackoff), negative(maxBackoff)
}

// newClient builds the go-redis client the options describe; it does not connect.
//
// Without retry the client sends each command once: a write script must not run twice
// when only its reply was lost, or a first-write or ETag write that succeeded would be
// answered as a conflict.
func (o *options) newClient(retry bool) (*goredis.Client, error) {
	addrs, err := o.addrs()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	maxRetries, minBackoff, maxBackoff := o.retries()
	if !retry {
		maxRetries = -1
	}
	// Maintenance notifications are a Redis Cloud feature; asking a plain server for them
	// only costs a round trip and a log line per connection.
	maint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	u := &goredis.UniversalOptions{
		Addrs:            addrs,
		MasterName:       o.SentinelMasterName,
		SentinelUsername: o.SentinelUsername,
		SentinelPassword: o.SentinelPassword,
		Username:         o.Username,
		Password:         o.Password,
		DB:               o.DB,
		MaxRetries:       maxRetries,
		MinRetryBackoff:  minBackoff,
		MaxRetryBackoff:  maxBackoff,
		DialTimeout:      negative(o.DialTimeout),
		ReadTimeout:      negative(o.ReadTimeout),
		WriteTimeout:     negative(o.WriteTimeout),
		// The building block bounds each call with the request's context (and later the
		// resiliency policy); let that deadline reach the socket.
		ContextTimeoutEnabled:    true,
		PoolSize:                 o.PoolSize,
		PoolTimeout:              negative(o.PoolTimeout),
		MinIdleConns:             o.MinIdleConns,
		ConnMaxIdleTime:          negative(o.IdleTimeout),
		ConnMaxLifetime:          negative(o.MaxConnAge),
		TLSConfig:                tlsCfg,
		MaintNotificationsConfig: maint,
	}
	if o.Failover {
		return goredis.NewFailoverClient(u.Failover()), nil
	}
	if len(addrs) > 1 {
		return nil, fmt.Errorf(`metadata "redisHost": %d addresses given, but a "node" store takes one (several are for failover or cluster)`, len(addrs))
	}
	return goredis.NewClient(u.Simple()), nil
}
