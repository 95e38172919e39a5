// Package redis is pubsub.redis: Dapr's Redis Streams pub/sub on go-redis, with Dapr's
// metadata and Dapr's layout in Redis, so that Dapr and Outrigger sidecars can publish to
// and consume from the same streams.
//
// A topic is a stream of that name; a message is an entry whose "data" field holds the
// payload and whose "metadata" field, when the publisher gave any, holds its metadata
// as JSON, as Dapr writes them. A consumer group is a stream consumer group named by
// consumerID. Unlike Dapr, which names every replica's consumer after the group, each
// subscription here reads as a consumer of its own, so that what a dead replica held is
// told apart from what a live one is working on, and is reclaimed once it has been
// pending for processingTimeout. Reclaiming uses XAUTOCLAIM, which needs Redis 6.2.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	goredis "github.com/redis/go-redis/v9"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// TypeName is the component type this package implements.
const TypeName = "pubsub.redis"

// Register adds pubsub.redis (v1) to a pub/sub registry.
func Register(r *components.Registry[pubsub.PubSub]) {
	r.Register(TypeName, func() pubsub.PubSub { return New() }, "v1")
}

// The fields of a stream entry. Dapr writes and reads data and metadata; contentType is
// Outrigger's own, and Dapr's readers ignore it.
const (
	fieldData        = "data"
	fieldMetadata    = "metadata"
	fieldContentType = "contentType"
)

const (
	// maxBlock bounds one blocking read. Stopping a subscription does not wait for it
	// (closing the reader's connection ends it), but go-redis only notices a dead
	// connection at block + 10s.
	maxBlock = 5 * time.Second
	// cleanupTimeout bounds an acknowledgement or a consumer clean-up that must go on
	// after its subscription's context ended.
	cleanupTimeout = 10 * time.Second
	// pruneEvery is how often a subscription looks for consumers left behind by
	// processes that died.
	pruneEvery = 5 * time.Minute
	// defaultPruneIdle is how long a consumer with nothing pending must have been silent
	// before it is removed. A live one reads every maxBlock at most, and one removed by
	// mistake is recreated by its next read, so this only has to be safely long.
	defaultPruneIdle = time.Hour
)

// dropIfEmpty deletes a consumer from its group only if nothing is pending on it,
// atomically: XGROUP DELCONSUMER alone would make its pending messages unclaimable.
var dropIfEmpty = goredis.NewScript(`
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
`)

// PubSub is the Redis Streams pub/sub. Create it with New, then Init it.
type PubSub struct {
	// now stamps streamTTL trimming and schedules reclaim passes.
	now func() time.Time
	// pruneIdle is how long an empty consumer is kept; tests shorten it.
	pruneIdle time.Duration

	// ctx ends every subscription when the component closes.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // subscriptions

	mu     sync.Mutex // guards what follows against Close racing Init and Subscribe
	client goredis.UniversalClient
	opts   options
	name   string
	log    logr.Logger
	// instance tells this instance's consumers from those of other processes and other
	// instances of this process; seq tells its subscriptions apart.
	instance string
	seq      int
	closed   bool
}

var (
	_ pubsub.PubSub        = (*PubSub)(nil)
	_ pubsub.BulkPublisher = (*PubSub)(nil)
)

// New returns an uninitialised component.
func New() *PubSub {
	ctx, cancel := context.WithCancel(context.Background())
	return &PubSub{now: time.Now, pruneIdle: defaultPruneIdle, ctx: ctx, cancel: cancel, log: logr.Discard()}
}

// Init reads the metadata, connects and pings the server.
func (p *PubSub) Init(ctx context.Context, md components.Metadata) error {
	opts, err := parseOptions(md)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	client, err := opts.newClient(0)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return fmt.Errorf("%s %q: cannot reach Redis at redisHost %q: %w", TypeName, md.Name, opts.Host, err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = client.Close()
		return fmt.Errorf("%s %q: closed during Init", TypeName, md.Name)
	}
	if p.client != nil {
		_ = client.Close()
		return fmt.Errorf("%s %q: already initialised", TypeName, md.Name)
	}
	p.client, p.opts, p.name = client, opts, md.Name
	p.log = logf.FromContext(ctx).WithValues("component", md.Name, "type", TypeName)
	p.instance = instanceTag()
	return nil
}

// instanceTag is host, process and a random part: the first two say where a consumer
// ran, the last keeps two instances of one process apart.
func instanceTag() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// Features lists BULK_PUBLISH. Streams cannot expire single entries, so MESSAGE_TTL is
// left to the building block, as Dapr's runtime does for this component.
func (p *PubSub) Features() []pubsub.Feature { return []pubsub.Feature{pubsub.FeatureBulkPublish} }

func (p *PubSub) state() (goredis.UniversalClient, *options, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, fmt.Errorf("%s %q is closed", TypeName, p.name)
	}
	if p.client == nil {
		return nil, nil, fmt.Errorf("%s is not initialised", TypeName)
	}
	return p.client, &p.opts, nil
}

// Publish appends the message to the topic's stream.
func (p *PubSub) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	c, opts, err := p.state()
	if err != nil {
		return err
	}
	if req.Topic == "" {
		return fmt.Errorf("%s %q: publish: topic is empty", TypeName, p.name)
	}
	add, minID := addArgs(opts, p.now(), req.Topic, entryValues(req.Data, req.ContentType, req.Metadata))
	if minID == "" {
		err = c.XAdd(ctx, add).Err()
	} else {
		var cmd *goredis.StringCmd
		_, _ = c.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
			cmd = pipe.XAdd(ctx, add)
			pipe.XTrimMinIDApprox(ctx, req.Topic, minID, 0)
			return nil
		})
		// A failed trim loses nothing: the next publish trims again.
		err = cmd.Err()
	}
	if err != nil {
		return fmt.Errorf("%s %q: publish to stream %q: %w", TypeName, p.name, req.Topic, err)
	}
	return nil
}

// BulkPublish appends the entries to the topic's stream in one round trip. Each entry
// succeeds or fails on its own; none is retried here.
func (p *PubSub) BulkPublish(ctx context.Context, topic string, entries []pubsub.BulkEntry, _ map[string]string) []pubsub.BulkResult {
	results := make([]pubsub.BulkResult, len(entries))
	for i, e := range entries {
		results[i].EntryID = e.EntryID
	}
	fail := func(err error) []pubsub.BulkResult {
		for i := range results {
			results[i].Err = err
		}
		return results
	}
	c, opts, err := p.state()
	if err != nil {
		return fail(err)
	}
	if topic == "" {
		return fail(fmt.Errorf("%s %q: bulk publish: topic is empty", TypeName, p.name))
	}
	if len(entries) == 0 {
		return results
	}
	now := p.now()
	cmds := make([]*goredis.StringCmd, len(entries))
	_, _ = c.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		var minID string
		for i, e := range entries {
			var add *goredis.XAddArgs
			add, minID = addArgs(opts, now, topic, entryValues(e.Data, e.ContentType, e.Metadata))
			cmds[i] = pipe.XAdd(ctx, add)
		}
		if minID != "" {
			pipe.XTrimMinIDApprox(ctx, topic, minID, 0)
		}
		return nil
	})
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			results[i].Err = fmt.Errorf("%s %q: publish entry %q to stream %q: %w", TypeName, p.name, entries[i].EntryID, topic, err)
		}
	}
	return results
}

// entryValues lays a message out as Dapr does, with data first.
func entryValues(data []byte, contentType string, md map[string]string) []any {
	vals := []any{fieldData, data}
	if len(md) > 0 {
		// A map of strings always marshals.
		b, _ := json.Marshal(md)
		vals = append(vals, fieldMetadata, b)
	}
	if contentType != "" {
		vals = append(vals, fieldContentType, contentType)
	}
	return vals
}

// addArgs is the XADD of one entry, and the MINID of a trim to run with it ("" for
// none). XADD trims by one strategy only: maxLenApprox rides on it, and streamTTL too
// when it is the only one set.
func addArgs(o *options, now time.Time, stream string, vals []any) (*goredis.XAddArgs, string) {
	add := &goredis.XAddArgs{Stream: stream, Values: vals}
	var minID string
	if o.StreamTTL > 0 {
		minID = strconv.FormatInt(max(now.Add(-o.StreamTTL).UnixMilli(), 0), 10) + "-0"
	}
	switch {
	case o.MaxLenApprox > 0:
		add.MaxLen, add.Approx = o.MaxLenApprox, true
	case minID != "":
		add.MinID, add.Approx = minID, true
		minID = ""
	}
	return add, minID
}

// Subscribe joins the consumer group (the request's consumerID, else the component's,
// else the app id), creating it and the stream when missing, and starts delivering.
//
// A new group starts at the beginning of the stream ("0"), as in Dapr: an app
// subscribing for the first time gets what was published before it came up and is
// still in the stream.
func (p *PubSub) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	c, opts, err := p.state()
	if err != nil {
		return err
	}
	if req.Topic == "" {
		return fmt.Errorf("%s %q: subscribe: topic is empty", TypeName, p.name)
	}
	if h == nil {
		return fmt.Errorf("%s %q: subscribe to %q: no handler", TypeName, p.name, req.Topic)
	}
	group := opts.ConsumerID
	if v, ok := (components.Metadata{Properties: req.Metadata}).Property(pubsub.ConsumerIDKey); ok && v != "" {
		group = v
	}
	if group == "" {
		return fmt.Errorf("%s %q: subscribe to %q: no consumer group: set metadata %q, or run the sidecar with an app id", TypeName, p.name, req.Topic, pubsub.ConsumerIDKey)
	}
	if err := createGroup(ctx, c, req.Topic, group); err != nil {
		return fmt.Errorf("%s %q: create consumer group %q on stream %q: %w", TypeName, p.name, group, req.Topic, err)
	}
	// Each subscription reads on a connection of its own, so that closing it ends a
	// blocked read at once when the subscription stops.
	reader, err := opts.newClient(1)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, p.name, err)
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = reader.Close()
		return fmt.Errorf("%s %q is closed", TypeName, p.name)
	}
	p.seq++
	s := &subscription{
		client:    c,
		reader:    reader,
		opts:      opts,
		now:       p.now,
		pruneIdle: p.pruneIdle,
		stream:    req.Topic,
		group:     group,
		consumer:  group + "-" + p.instance + "-" + strconv.Itoa(p.seq),
		handler:   h,
		slots:     make(chan struct{}, opts.concurrency(req)),
		inflight:  map[string]struct{}{},
	}
	s.log = p.log.WithValues("stream", s.stream, "group", s.group, "consumer", s.consumer)
	p.wg.Add(1)
	p.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(p.ctx, cancel)
	var once sync.Once
	closeReader := func() { once.Do(func() { _ = reader.Close() }) }
	context.AfterFunc(ctx, closeReader)
	go func() {
		defer p.wg.Done()
		defer stopOnClose()
		s.run(ctx)
		cancel()
		// Once.Do returns only when the close has run, wherever it was started.
		closeReader()
	}()
	return nil
}

func createGroup(ctx context.Context, c goredis.UniversalClient, stream, group string) error {
	err := c.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return err
	}
	return nil
}

// Close stops every subscription, waits for the handler calls in flight (their context
// is cancelled) and closes the connections. It is safe to call more than once, and
// after a failed Init.
func (p *PubSub) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	c := p.client
	p.client = nil
	p.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.Close()
}

// String names the component in logs.
func (p *PubSub) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%s(consumerID=%s)", TypeName, p.opts.ConsumerID)
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }
