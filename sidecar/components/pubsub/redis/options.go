package redis

import (
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/internal/redisopts"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// options are the component's metadata, with the names of Dapr's pubsub/redis
// (metadata.yaml there): the client settings both Redis components share, and the
// pub/sub's own.
//
// The defaults of processingTimeout and redeliverInterval are what Dapr's code applies
// (60s and 15s), not what its metadata.yaml and docs print (15s and 60s): a Dapr sidecar
// left at its defaults cancels a handler after 60s, and an app that relies on that must
// behave the same here.
type options struct {
	redisopts.Settings

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

func parseOptions(md components.Metadata) (options, error) {
	var o options
	if err := metadata.Decode(md.Properties, &o); err != nil {
		return o, err
	}
	if o.ConsumerID == "" {
		o.ConsumerID = md.AppID
	}
	return o, errors.Join(o.Settings.Validate(), o.validate())
}

// validate checks the pub/sub's own metadata, each error naming the property at fault.
func (o *options) validate() error {
	var errs []error
	for _, c := range []struct {
		name string
		neg  bool
	}{
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

// newClient builds the client the options describe; it does not connect. poolSize
// overrides the pool size when positive (a subscription's reader holds one connection).
func (o *options) newClient(poolSize int) (goredis.UniversalClient, error) {
	if poolSize <= 0 {
		return o.NewClient(nil)
	}
	return o.NewClient(func(u *goredis.UniversalOptions) {
		u.PoolSize = poolSize
		u.MinIdleConns = 0
	})
}
