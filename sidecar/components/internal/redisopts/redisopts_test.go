package redisopts

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
)

// parse decodes and validates props as a component does with Settings embedded.
func parse(props map[string]string) (Settings, error) {
	var s Settings
	if err := metadata.Decode(props, &s); err != nil {
		return s, err
	}
	return s, s.Validate()
}

func ptr[T any](v T) *T { return &v }

func TestDefaults(t *testing.T) {
	s, err := parse(map[string]string{"redisHost": "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{
		Host: "localhost", RedisType: "node",
		DialTimeout: 5 * time.Second, ReadTimeout: 3 * time.Second, IdleTimeout: 5 * time.Minute,
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("defaults\n got %+v\nwant %+v", s, want)
	}
	u, err := s.Universal()
	if err != nil {
		t.Fatal(err)
	}
	// Unset retries keep go-redis's own defaults (0 here means "default").
	if !slices.Equal(u.Addrs, []string{"localhost:6379"}) || u.MaxRetries != 0 || u.MinRetryBackoff != 0 || u.MaxRetryBackoff != 0 ||
		u.TLSConfig != nil || !u.ContextTimeoutEnabled || u.DB != 0 {
		t.Fatalf("universal options %+v", u)
	}
}

// TestEveryField sets each property and checks the field it lands in.
func TestEveryField(t *testing.T) {
	for _, tc := range []struct {
		prop, value string
		check       func(Settings) bool
	}{
		{"redisHost", "h:7000", func(s Settings) bool { return s.Host == "h:7000" }},
		{"redisPort", "7001", func(s Settings) bool { return s.Port == 7001 }},
		{"redisUsername", "u", func(s Settings) bool { return s.Username == "u" }},
		{"redisPassword", "p", func(s Settings) bool { return s.Password == "p" }},
		{"redisDB", "4", func(s Settings) bool { return s.DB == 4 }},
		{"redisType", "cluster", func(s Settings) bool { return s.IsCluster() }},
		{"redisType", "Cluster", func(s Settings) bool { return s.IsCluster() }},
		{"enableTLS", "true", func(s Settings) bool { return s.EnableTLS }},
		{"insecureSkipTLSVerify", "true", func(s Settings) bool { return s.InsecureSkipVerify }},
		{"failover", "true", func(s Settings) bool { return s.Failover }},
		{"sentinelMasterName", "m", func(s Settings) bool { return s.SentinelMasterName == "m" }},
		{"sentinelUsername", "su", func(s Settings) bool { return s.SentinelUsername == "su" }},
		{"sentinelPassword", "sp", func(s Settings) bool { return s.SentinelPassword == "sp" }},
		{"redisMaxRetries", "5", func(s Settings) bool { return *s.RedisMaxRetries == 5 }},
		{"redisMinRetryInterval", "100", func(s Settings) bool { return *s.RedisMinRetryInterval == 100*time.Millisecond }},
		{"redisMaxRetryInterval", "2s", func(s Settings) bool { return *s.RedisMaxRetryInterval == 2*time.Second }},
		{"dialTimeout", "1s", func(s Settings) bool { return s.DialTimeout == time.Second }},
		{"readTimeout", "-1", func(s Settings) bool { return s.ReadTimeout < 0 }},
		{"writeTimeout", "250ms", func(s Settings) bool { return s.WriteTimeout == 250*time.Millisecond }},
		{"poolSize", "20", func(s Settings) bool { return s.PoolSize == 20 }},
		{"poolTimeout", "4s", func(s Settings) bool { return s.PoolTimeout == 4*time.Second }},
		{"minIdleConns", "2", func(s Settings) bool { return s.MinIdleConns == 2 }},
		{"idleTimeout", "10m", func(s Settings) bool { return s.IdleTimeout == 10*time.Minute }},
		{"maxConnAge", "30m", func(s Settings) bool { return s.MaxConnAge == 30*time.Minute }},
		{"idleCheckFrequency", "-1", func(s Settings) bool { return s.IdleCheckFrequency < 0 }},
	} {
		t.Run(tc.prop+"="+tc.value, func(t *testing.T) {
			props := map[string]string{"redisHost": "h", tc.prop: tc.value}
			if tc.prop == "failover" {
				props["sentinelMasterName"] = "m"
			}
			s, err := parse(props)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(s) {
				t.Fatalf("%s=%s gave %+v", tc.prop, tc.value, s)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"no host", map[string]string{}, `metadata "redisHost" is required`},
		{"only commas", map[string]string{"redisHost": " , "}, `metadata "redisHost" is required`},
		{"bad port", map[string]string{"redisHost": "h", "redisPort": "70000"}, `metadata "redisPort": "70000"`},
		{"port conflict", map[string]string{"redisHost": "h:6379", "redisPort": "6380"}, `"redisHost": "h:6379" already has port 6379 but "redisPort" is 6380`},
		{"bad db", map[string]string{"redisHost": "h", "redisDB": "x"}, `metadata "redisDB": "x"`},
		{"negative db", map[string]string{"redisHost": "h", "redisDB": "-1"}, `metadata "redisDB": -1 must not be negative`},
		{"unknown redisType", map[string]string{"redisHost": "h", "redisType": "sharded"}, `metadata "redisType": "sharded" must be "node" or "cluster"`},
		{"bad enableTLS", map[string]string{"redisHost": "h", "enableTLS": "maybe"}, `metadata "enableTLS": "maybe"`},
		{"failover without master", map[string]string{"redisHost": "h", "failover": "true"}, `metadata "sentinelMasterName" is required when "failover" is true`},
		{"cert without key", map[string]string{"redisHost": "h", "clientCert": "pem"}, `metadata "clientCert" and "clientKey" must be set together`},
		{"key without cert", map[string]string{"redisHost": "h", "clientKey": "pem"}, `metadata "clientCert" and "clientKey" must be set together`},
		{"entra id", map[string]string{"redisHost": "h", "useEntraID": "true"}, `metadata "useEntraID"`},
		{"azure ad alias", map[string]string{"redisHost": "h", "useAzureAD": "true"}, `metadata "useEntraID"`},
		{"two nodes", map[string]string{"redisHost": "a:1,b:2"}, `metadata "redisHost": 2 addresses given`},
		{"bad retries", map[string]string{"redisHost": "h", "redisMaxRetries": "lots"}, `metadata "redisMaxRetries": "lots"`},
		{"bad min interval", map[string]string{"redisHost": "h", "redisMinRetryInterval": "soon"}, `metadata "redisMinRetryInterval": "soon"`},
		{"bad max interval", map[string]string{"redisHost": "h", "redisMaxRetryInterval": "soon"}, `metadata "redisMaxRetryInterval": "soon"`},
		{"bad dialTimeout", map[string]string{"redisHost": "h", "dialTimeout": "soon"}, `metadata "dialTimeout": "soon"`},
		{"bad readTimeout", map[string]string{"redisHost": "h", "readTimeout": "soon"}, `metadata "readTimeout": "soon"`},
		{"bad writeTimeout", map[string]string{"redisHost": "h", "writeTimeout": "soon"}, `metadata "writeTimeout": "soon"`},
		{"bad poolSize", map[string]string{"redisHost": "h", "poolSize": "many"}, `metadata "poolSize": "many"`},
		{"negative poolSize", map[string]string{"redisHost": "h", "poolSize": "-1"}, `metadata "poolSize": -1 must not be negative`},
		{"bad poolTimeout", map[string]string{"redisHost": "h", "poolTimeout": "soon"}, `metadata "poolTimeout": "soon"`},
		{"negative minIdleConns", map[string]string{"redisHost": "h", "minIdleConns": "-2"}, `metadata "minIdleConns": -2 must not be negative`},
		{"bad idleTimeout", map[string]string{"redisHost": "h", "idleTimeout": "soon"}, `metadata "idleTimeout": "soon"`},
		{"bad maxConnAge", map[string]string{"redisHost": "h", "maxConnAge": "soon"}, `metadata "maxConnAge": "soon"`},
		{"bad idleCheckFrequency", map[string]string{"redisHost": "h", "idleCheckFrequency": "soon"}, `metadata "idleCheckFrequency": "soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.props)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %s", err, tc.want)
			}
		})
	}
}

// TestErrorsAreJoined: every fault is reported at once, not only the first.
func TestErrorsAreJoined(t *testing.T) {
	_, err := parse(map[string]string{"redisHost": "a,b", "redisType": "ring", "failover": "false", "poolSize": "-1", "clientCert": "x"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`"redisType"`, `"poolSize"`, `"clientCert"`, `"redisHost": 2 addresses`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %s", err, want)
		}
	}
}

func TestAddrs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props map[string]string
		want  []string
	}{
		{"default port", map[string]string{"redisHost": "h"}, []string{"h:6379"}},
		{"own port", map[string]string{"redisHost": "h:7000"}, []string{"h:7000"}},
		{"redisPort", map[string]string{"redisHost": "h", "redisPort": "7000"}, []string{"h:7000"}},
		{"redisPort agrees", map[string]string{"redisHost": "h:7000", "redisPort": "7000"}, []string{"h:7000"}},
		{"ipv6", map[string]string{"redisHost": "::1"}, []string{"[::1]:6379"}},
		{"sentinels", map[string]string{"redisHost": "a, b:26380,", "redisPort": "26380", "failover": "true", "sentinelMasterName": "m"}, []string{"a:26380", "b:26380"}},
		{"cluster", map[string]string{"redisHost": "a:7000,b:7001,c", "redisType": "cluster"}, []string{"a:7000", "b:7001", "c:6379"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parse(tc.props)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Addrs()
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("Addrs = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestUniversal(t *testing.T) {
	s, err := parse(map[string]string{
		"redisHost": "h", "redisUsername": "u", "redisPassword": "p", "redisDB": "2",
		"sentinelUsername": "su", "sentinelPassword": "sp", "sentinelMasterName": "m",
		"redisMaxRetries": "-5", "redisMinRetryInterval": "-1", "redisMaxRetryInterval": "1s",
		"dialTimeout": "-1", "readTimeout": "0", "writeTimeout": "2s", "poolSize": "7", "poolTimeout": "-1",
		"minIdleConns": "1", "idleTimeout": "-1", "maxConnAge": "1h",
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.Universal()
	if err != nil {
		t.Fatal(err)
	}
	want := goredis.UniversalOptions{
		Addrs: []string{"h:6379"}, MasterName: "m", SentinelUsername: "su", SentinelPassword: "sp",
		Username: "u", Password: "p", DB: 2,
		// Negative numbers mean "disabled", which go-redis spells -1.
		MaxRetries: -1, MinRetryBackoff: -1, MaxRetryBackoff: time.Second,
		DialTimeout: -1, ReadTimeout: 0, WriteTimeout: 2 * time.Second, ContextTimeoutEnabled: true,
		PoolSize: 7, PoolTimeout: -1, MinIdleConns: 1, ConnMaxIdleTime: -1, ConnMaxLifetime: time.Hour,
		MaintNotificationsConfig: u.MaintNotificationsConfig,
	}
	if !reflect.DeepEqual(*u, want) {
		t.Fatalf("universal options\n got %+v\nwant %+v", *u, want)
	}
}

// testKeyPair is a throwaway self-signed certificate and its key, in PEM.
func testKeyPair(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

func TestTLS(t *testing.T) {
	cert, key := testKeyPair(t)
	for _, tc := range []struct {
		name     string
		props    map[string]string
		on       bool
		insecure bool
		certs    int
	}{
		{name: "off", props: map[string]string{}},
		{name: "client cert without enableTLS", props: map[string]string{"clientCert": cert, "clientKey": key}},
		{name: "verified", props: map[string]string{"enableTLS": "true"}, on: true},
		{name: "insecure", props: map[string]string{"enableTLS": "true", "insecureSkipTLSVerify": "true"}, on: true, insecure: true},
		{name: "client cert", props: map[string]string{"enableTLS": "true", "clientCert": cert, "clientKey": key}, on: true, certs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.props["redisHost"] = "h"
			s, err := parse(tc.props)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := s.TLSConfig()
			switch {
			case err != nil:
				t.Fatal(err)
			case !tc.on && cfg != nil:
				t.Fatalf("TLS config %+v, want none", cfg)
			case tc.on && (cfg == nil || cfg.InsecureSkipVerify != tc.insecure || len(cfg.Certificates) != tc.certs || cfg.MinVersion != tls.VersionTLS12):
				t.Fatalf("TLS config %+v", cfg)
			}
		})
	}

	// A pair that does not parse fails the client, naming both properties.
	s, err := parse(map[string]string{"redisHost": "h", "enableTLS": "true", "clientCert": "x", "clientKey": "y"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.NewClient(nil); err == nil || !strings.Contains(err.Error(), `metadata "clientCert"/"clientKey"`) {
		t.Fatalf("NewClient with a bad client certificate: %v", err)
	}
}

// TestNewClient checks which go-redis client each mode builds, as Dapr's v9 client
// picks it, and that adjust reaches it. Nothing connects.
func TestNewClient(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props map[string]string
		check func(goredis.UniversalClient) bool
	}{
		{"node", map[string]string{"redisHost": "h", "redisDB": "3"}, func(c goredis.UniversalClient) bool {
			o := c.(*goredis.Client).Options()
			return o.Addr == "h:6379" && o.DB == 3 && o.PoolSize == 1 && o.MaxRetries == 0
		}},
		{"failover", map[string]string{"redisHost": "s1,s2:26380", "failover": "true", "sentinelMasterName": "m"}, func(c goredis.UniversalClient) bool {
			// A sentinel client is a *goredis.Client whose address is the master's name.
			o := c.(*goredis.Client).Options()
			return o.Addr == "FailoverClient" && o.PoolSize == 1
		}},
		{"cluster", map[string]string{"redisHost": "a:7000,b:7001", "redisType": "cluster"}, func(c goredis.UniversalClient) bool {
			o := c.(*goredis.ClusterClient).Options()
			return slices.Equal(o.Addrs, []string{"a:7000", "b:7001"}) && o.PoolSize == 1
		}},
		{"failover cluster", map[string]string{"redisHost": "s1,s2", "redisType": "cluster", "failover": "true", "sentinelMasterName": "m"}, func(c goredis.UniversalClient) bool {
			_, ok := c.(*goredis.ClusterClient)
			return ok
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parse(tc.props)
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.NewClient(func(u *goredis.UniversalOptions) { u.PoolSize, u.MaxRetries = 1, -1 })
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !tc.check(c) {
				t.Fatalf("%T does not match the %s settings", c, tc.name)
			}
		})
	}
}

func TestNewClientRefusesBadHost(t *testing.T) {
	// A component that skipped Validate still gets the error from NewClient.
	s := Settings{Host: "a,b", RedisType: "node"}
	if _, err := s.NewClient(nil); err == nil || !strings.Contains(err.Error(), `"redisHost": 2 addresses`) {
		t.Fatalf("NewClient error = %v", err)
	}
	if _, err := s.Universal(); err == nil {
		t.Fatal("Universal accepted two node addresses")
	}
	if _, err := ptr(Settings{}).Addrs(); err == nil {
		t.Fatal("Addrs accepted an empty host")
	}
}
