// Package redisopts is the Redis client configuration that state.redis and pubsub.redis
// share, as Dapr's components share common/component/redis (settings.go, and redis.go
// with v9client.go for the client): the same metadata names and defaults, the same
// checks, and one function that builds the go-redis client. Each component embeds
// Settings in its own options struct and keeps only its own metadata there.
package redisopts

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
)

// Settings is the metadata both Redis components read, with Dapr's names and defaults.
// Decode it with metadata.Decode (embedded in a component's options struct), then call
// Validate. Durations read a bare number as milliseconds, as Dapr's redis Duration does.
type Settings struct {
	Host string `metadata:"redisHost" required:"true"`
	// Port is appended to each address of Host that has none (else 6379), as Dapr's
	// resolveHost does.
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
	// UseEntraID (and Dapr's alias useAzureAD) is read only to be refused: Outrigger
	// has no Entra ID authentication, and connecting without it would fail later and
	// less clearly.
	UseEntraID bool `metadata:"useEntraID"`
	UseAzureAD bool `metadata:"useAzureAD"`

	// Unset, these keep go-redis's defaults (3 retries, 8ms to 512ms backoff), as Dapr's
	// pub/sub does. A component with other defaults (Dapr's state store) fills them in
	// after decoding.
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
}

const defaultRedisPort = "6379"

// IsCluster reports whether redisType is "cluster".
func (s *Settings) IsCluster() bool { return strings.EqualFold(s.RedisType, "cluster") }

// Validate is a chain of small checks, each naming the property at fault.
func (s *Settings) Validate() error {
	var errs []error
	switch strings.ToLower(s.RedisType) {
	case "node", "cluster":
	default:
		errs = append(errs, fmt.Errorf(`metadata "redisType": %q must be "node" or "cluster"`, s.RedisType))
	}
	if s.Failover && s.SentinelMasterName == "" {
		errs = append(errs, errors.New(`metadata "sentinelMasterName" is required when "failover" is true`))
	}
	if s.UseEntraID || s.UseAzureAD {
		errs = append(errs, errors.New(`metadata "useEntraID": Entra ID authentication is not supported by Outrigger's Redis components; use "redisUsername" and "redisPassword"`))
	}
	if (s.ClientCert == "") != (s.ClientKey == "") {
		errs = append(errs, errors.New(`metadata "clientCert" and "clientKey" must be set together`))
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"redisDB", s.DB}, {"poolSize", s.PoolSize}, {"minIdleConns", s.MinIdleConns}} {
		if c.v < 0 {
			errs = append(errs, fmt.Errorf(`metadata %q: %d must not be negative`, c.name, c.v))
		}
	}
	if s.Host != "" {
		if _, err := s.Addrs(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Addrs returns the host list with a port on each address: redisPort, else 6379, as
// Dapr's resolveHost does. Several addresses are for failover (the sentinels) or
// cluster (the seed nodes); Dapr hands a "node" list to go-redis as one address, which
// cannot dial, so it is refused here.
func (s *Settings) Addrs() ([]string, error) {
	var out []string
	for _, a := range strings.Split(s.Host, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, p, err := net.SplitHostPort(a); err == nil {
			if s.Port != 0 && p != strconv.Itoa(int(s.Port)) {
				return nil, fmt.Errorf(`metadata "redisHost": %q already has port %s but "redisPort" is %d`, a, p, s.Port)
			}
			out = append(out, a)
			continue
		}
		port := defaultRedisPort
		if s.Port != 0 {
			port = strconv.Itoa(int(s.Port))
		}
		out = append(out, net.JoinHostPort(a, port))
	}
	if len(out) == 0 {
		return nil, errors.New(`metadata "redisHost" is required`)
	}
	if len(out) > 1 && !s.Failover && !s.IsCluster() {
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

// TLSConfig is the client's TLS configuration, nil without enableTLS. The server's
// certificate is verified unless insecureSkipTLSVerify is set, as in Dapr's shared
// client (older Dapr releases skipped verification whenever enableTLS was set).
func (s *Settings) TLSConfig() (*tls.Config, error) {
	if !s.EnableTLS {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: s.InsecureSkipVerify} //nolint:gosec // opt-in, as in Dapr
	if s.ClientCert != "" {
		cert, err := tls.X509KeyPair([]byte(s.ClientCert), []byte(s.ClientKey))
		if err != nil {
			return nil, fmt.Errorf(`metadata "clientCert"/"clientKey": %w`, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Universal is the go-redis configuration the settings describe.
func (s *Settings) Universal() (*goredis.UniversalOptions, error) {
	addrs, err := s.Addrs()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := s.TLSConfig()
	if err != nil {
		return nil, err
	}
	u := &goredis.UniversalOptions{
		Addrs:            addrs,
		MasterName:       s.SentinelMasterName,
		SentinelUsername: s.SentinelUsername,
		SentinelPassword: s.SentinelPassword,
		Username:         s.Username,
		Password:         s.Password,
		DB:               s.DB,
		DialTimeout:      negative(s.DialTimeout),
		ReadTimeout:      negative(s.ReadTimeout),
		WriteTimeout:     negative(s.WriteTimeout),
		// Callers bound each call with its context (and the resiliency policy); let that
		// deadline reach the socket, as Dapr's client does.
		ContextTimeoutEnabled: true,
		PoolSize:              s.PoolSize,
		PoolTimeout:           negative(s.PoolTimeout),
		MinIdleConns:          s.MinIdleConns,
		ConnMaxIdleTime:       negative(s.IdleTimeout),
		ConnMaxLifetime:       negative(s.MaxConnAge),
		TLSConfig:             tlsCfg,
		// Maintenance notifications are a Redis Cloud feature; asking a plain server for
		// them only costs a round trip and a log line per connection.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if s.RedisMaxRetries != nil {
		// 0 is go-redis's default of 3 retries, as it is in Dapr whatever its docs say;
		// a negative number turns retries off.
		u.MaxRetries = max(*s.RedisMaxRetries, -1)
	}
	if s.RedisMinRetryInterval != nil {
		u.MinRetryBackoff = negative(*s.RedisMinRetryInterval)
	}
	if s.RedisMaxRetryInterval != nil {
		u.MaxRetryBackoff = negative(*s.RedisMaxRetryInterval)
	}
	return u, nil
}

// NewClient builds the client the settings describe; it does not connect. adjust, when
// not nil, changes the configuration first (a component's own pool size or retries).
// The kind follows Dapr's v9 client: failover is a sentinel client (a cluster one
// with redisType "cluster"), else a cluster client or a single-node one.
func (s *Settings) NewClient(adjust func(*goredis.UniversalOptions)) (goredis.UniversalClient, error) {
	u, err := s.Universal()
	if err != nil {
		return nil, err
	}
	if adjust != nil {
		adjust(u)
	}
	switch {
	case s.Failover && s.IsCluster():
		return goredis.NewFailoverClusterClient(u.Failover()), nil
	case s.Failover:
		return goredis.NewFailoverClient(u.Failover()), nil
	case s.IsCluster():
		return goredis.NewClusterClient(u.Cluster()), nil
	default:
		return goredis.NewClient(u.Simple()), nil
	}
}
