package redis

import (
	"errors"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/internal/redisopts"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
)

// options are the component's metadata, with Dapr's names and defaults (Dapr's
// state/redis/metadata.yaml): the client settings both Redis components share, and the
// state store's own.
type options struct {
	redisopts.Settings

	// The legacy spellings of redisMaxRetries and redisMinRetryInterval, which Dapr
	// reads for state stores only. maxRetryBackoff is a whole number of nanoseconds in
	// Dapr (its docs give 3000000000 for 3s), so it stays an integer.
	MaxRetries      *int   `metadata:"maxRetries"`
	MaxRetryBackoff *int64 `metadata:"maxRetryBackoff"`

	// TTLInSeconds is the default TTL of every write whose request sets none; absent or
	// non-positive means no default.
	TTLInSeconds    *int `metadata:"ttlInSeconds"`
	ActorStateStore bool `metadata:"actorStateStore"`
	// QueryIndexes configures RediSearch indexes in Dapr. Outrigger's redis store does not
	// offer the query API, so it is accepted (manifests written for Dapr keep loading) and
	// unused.
	QueryIndexes string `metadata:"queryIndexes"`
}

func parseOptions(md components.Metadata) (options, error) {
	var o options
	if err := metadata.Decode(md.Properties, &o); err != nil {
		return o, err
	}
	o.applyLegacyRetries()
	return o, errors.Join(o.Settings.Validate(), o.validate())
}

// applyLegacyRetries gives the retries Dapr gives state stores when the metadata sets
// none: the legacy keys, else 3 retries and a retry interval of 2s (which go-redis then
// caps at the max backoff).
func (o *options) applyLegacyRetries() {
	if o.RedisMaxRetries == nil {
		n := 3
		if o.MaxRetries != nil {
			n = *o.MaxRetries
		}
		o.RedisMaxRetries = &n
	}
	if o.RedisMinRetryInterval == nil {
		d := 2 * time.Second
		if o.MaxRetryBackoff != nil {
			d = time.Duration(*o.MaxRetryBackoff)
		}
		o.RedisMinRetryInterval = &d
	}
}

func (o *options) validate() error {
	if o.IsCluster() {
		// Transactions run as one Lua script over all their keys, which Redis Cluster only
		// allows when every key hashes to the same slot.
		return errors.New(`metadata "redisType": "cluster" is not supported by Outrigger's state.redis yet; use "node" (optionally with failover)`)
	}
	return nil
}

// newClient builds the go-redis client the options describe; it does not connect.
//
// Without retry the client sends each command once: a write script must not run twice
// when only its reply was lost, or a first-write or ETag write that succeeded would be
// answered as a conflict.
func (o *options) newClient(retry bool) (*goredis.Client, error) {
	var adjust func(*goredis.UniversalOptions)
	if !retry {
		adjust = func(u *goredis.UniversalOptions) { u.MaxRetries = -1 }
	}
	u, err := o.NewClient(adjust)
	if err != nil {
		return nil, err
	}
	// validate refuses cluster, so this is a single-node or a sentinel client.
	c, ok := u.(*goredis.Client)
	if !ok {
		_ = u.Close()
		return nil, errors.New(`metadata "redisType": state.redis needs a single-node or a sentinel client`)
	}
	return c, nil
}
