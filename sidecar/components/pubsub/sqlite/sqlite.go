// Package sqlite is pubsub.sqlite: a broker in one SQLite file (modernc.org/sqlite,
// pure Go), the embedded default pub/sub of self-hosted mode. Every sidecar on the
// machine opens the same file, so they share topics and consumer groups with no server,
// and messages outlive the processes, SIGKILL included.
//
// A published message is a row. Each consumer group of a topic keeps its position (the
// last message id it has taken) and a lease per message it has taken but not yet
// acknowledged. A consumer claims messages in a short write transaction (BEGIN
// IMMEDIATE, so claims from every process are serialised): first the group's leases
// that have run out, then the messages after the position. Consumers of one group thus
// share its messages and never hold the same one at once; each group gets every
// message. A handler's nil deletes the lease; an error makes the message free again
// after redeliverInterval. A consumer renews the leases of the messages its handlers
// are working on, so only a consumer that died, or stopped renewing, loses a message
// to another of its group, visibilityTimeout after its last renewal. Close cancels the
// handlers in flight and frees their messages at once.
//
// A group is created by its first Subscribe and starts after the newest message then
// published: messages published before a group existed are not delivered to it, those
// published afterwards are, even while none of its consumers runs. Delivery is at least
// once and, beyond one consumer handling one message at a time, unordered.
//
// Metadata:
//
//   - connectionString (required): the database file, as a path ("pubsub.db") or a
//     "file:" URI with driver parameters. Every sidecar that shares topics names the
//     same file. busy_timeout and journal_mode are set by the component; a
//     ":memory:" database is refused, as no other process could reach it.
//   - consumerID: the consumer group; default the app id. A subscription's own
//     consumerID overrides it.
//   - tablePrefix: prefix of the component's tables (default "pubsub_"), to keep two
//     independent brokers in one file.
//   - pollInterval: how often an idle subscription looks for new messages from other
//     processes (default 50ms); a publish from the same process wakes it at once.
//   - visibilityTimeout (or processingTimeout, Dapr's Redis name): how long a message
//     stays leased to a consumer that stops renewing it, having died, before another
//     consumer of its group may take it (default 30s). It also bounds how soon a
//     message is redelivered after its consumer is killed.
//   - redeliverInterval: the wait before a message whose handler failed is delivered
//     again (default 1s).
//   - retention: the longest an undelivered or unacknowledged message is kept, for a
//     group that has stopped consuming (default 24h; 0 keeps it until delivered). A
//     message every group has acknowledged is deleted at the next cleanup.
//   - cleanupInterval: how often the file is pruned, shared by every sidecar on it
//     (default 1m; 0 or less disables pruning).
//   - timeout: the bound on each database operation, waits for the lock included
//     (default 20s).
//   - busyTimeout: how long SQLite itself waits for another connection's lock before
//     the component retries (default 5s).
//   - disableWAL: keep the rollback journal, for file systems without shared memory
//     (network file systems); slower, as readers then block writers.
//
// A publish's ttlInSeconds metadata expires the message (the MESSAGE_TTL feature); the
// publish metadata is delivered with the message.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// TypeName is the component type this package implements.
const TypeName = "pubsub.sqlite"

// Register adds pubsub.sqlite to a registry.
func Register(r *components.Registry[pubsub.PubSub]) {
	r.Register(TypeName, func() pubsub.PubSub { return New() })
}

// ttlKey is the publish metadata that sets a message's time to live, as Dapr names it.
const ttlKey = "ttlInSeconds"

// maxOpenConns bounds the pool: claims of one process then queue in Go, in order,
// rather than in SQLite's busy handler, which sleeps and polls. Nothing holds a
// connection while waiting for another, so the bound cannot deadlock.
const maxOpenConns = 8

// PubSub is the SQLite broker.
type PubSub struct {
	// Clock returns the current time, for leases, TTLs and retention; nil means
	// time.Now. Every process sharing a file must read the same clock, which the
	// machine's wall clock is.
	Clock func() time.Time

	name string
	opts options
	db   *sql.DB
	q    queries
	log  logr.Logger

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	subs   map[string]map[*subscription]struct{} // by topic, to wake them on a local publish
	// wg counts the calls in flight and the goroutines, for Close to wait on.
	wg sync.WaitGroup
}

// New returns an uninitialised broker.
func New() *PubSub {
	ctx, cancel := context.WithCancel(context.Background())
	return &PubSub{ctx: ctx, cancel: cancel, subs: map[string]map[*subscription]struct{}{}, log: logr.Discard()}
}

var _ pubsub.PubSub = (*PubSub)(nil)

// Init opens the database, creates the tables when missing and starts the cleanup.
func (p *PubSub) Init(ctx context.Context, md components.Metadata) error {
	opts, err := parseOptions(md.Properties)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	if opts.ConsumerID == "" {
		opts.ConsumerID = md.AppID
	}
	dsn, err := opts.dsn()
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	p.mu.Lock()
	if p.db != nil || p.closed {
		p.mu.Unlock()
		return fmt.Errorf("%s %q: already initialised or closed", TypeName, md.Name)
	}
	p.mu.Unlock()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("%s %q: open %q: %w", TypeName, md.Name, opts.ConnectionString, err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	p.mu.Lock()
	p.name, p.opts, p.db, p.q = md.Name, opts, db, newQueries(opts.TablePrefix)
	p.log = logf.FromContext(ctx).WithValues("component", md.Name, "type", TypeName)
	p.mu.Unlock()
	initCtx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := p.migrate(initCtx); err != nil {
		_ = db.Close()
		p.mu.Lock()
		p.db = nil
		p.mu.Unlock()
		return fmt.Errorf("%s %q: open %q: %w", TypeName, md.Name, opts.ConnectionString, err)
	}
	if opts.CleanupInterval > 0 {
		if err := p.enter(); err != nil {
			return err
		}
		go p.cleanupLoop(time.NewTicker(opts.CleanupInterval))
	}
	return nil
}

// Features lists MESSAGE_TTL: a publish's ttlInSeconds is honoured by the broker.
func (p *PubSub) Features() []pubsub.Feature {
	return []pubsub.Feature{pubsub.FeatureMessageTTL}
}

// String names the component in logs.
func (p *PubSub) String() string {
	return fmt.Sprintf("%s(consumerID=%s)", TypeName, p.opts.ConsumerID)
}

// Close stops the subscriptions, waits for the handler calls in flight (their context
// is cancelled and their messages are freed for redelivery at once) and closes the
// database. It is safe after a failed Init, and more than once.
func (p *PubSub) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	db := p.db
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	if db == nil {
		return nil
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("%s %q: close: %w", TypeName, p.name, err)
	}
	return nil
}

// enter admits a call, which Close then waits for; the caller must call p.wg.Done.
func (p *PubSub) enter() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return fmt.Errorf("%s %q: closed", TypeName, p.name)
	case p.db == nil:
		return fmt.Errorf("%s %q: not initialised", TypeName, p.name)
	}
	p.wg.Add(1)
	return nil
}

func (p *PubSub) now() time.Time {
	if p.Clock != nil {
		return p.Clock()
	}
	return time.Now()
}

// opCtx bounds one database operation by the timeout metadata.
func (p *PubSub) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.opts.Timeout)
}

// Publish stores the message; it returns once the row is committed.
func (p *PubSub) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	if req == nil || req.Topic == "" {
		return fmt.Errorf("%s %q: publish: topic is empty", TypeName, p.name)
	}
	var expires sql.NullInt64
	now := p.now()
	if raw, ok := (components.Metadata{Properties: req.Metadata}).Property(ttlKey); ok && raw != "" {
		secs, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%s %q: publish to %q: metadata %q: %q is not a whole number of seconds", TypeName, p.name, req.Topic, ttlKey, raw)
		}
		if secs > 0 {
			expires = sql.NullInt64{Int64: now.Add(time.Duration(secs) * time.Second).UnixMilli(), Valid: true}
		}
	}
	var md sql.NullString
	if len(req.Metadata) > 0 {
		b, err := json.Marshal(req.Metadata)
		if err != nil {
			return fmt.Errorf("%s %q: publish to %q: metadata: %w", TypeName, p.name, req.Topic, err)
		}
		md = sql.NullString{String: string(b), Valid: true}
	}
	var ct sql.NullString
	if req.ContentType != "" {
		ct = sql.NullString{String: req.ContentType, Valid: true}
	}
	data := req.Data
	if data == nil {
		data = []byte{}
	}
	if err := p.enter(); err != nil {
		return err
	}
	defer p.wg.Done()
	ctx, cancel := p.opCtx(ctx)
	defer cancel()
	if _, err := p.exec(ctx, p.q.publish, req.Topic, data, ct, md, now.UnixMilli(), expires); err != nil {
		return fmt.Errorf("%s %q: publish to %q: %w", TypeName, p.name, req.Topic, err)
	}
	p.wake(req.Topic)
	return nil
}

// wake tells this process's subscriptions of a topic that a message is there, so that
// they need not wait for their next poll.
func (p *PubSub) wake(topic string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.subs[topic] {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// subscription is one Subscribe call's consumer.
type subscription struct {
	topic, group string
	// owner marks the leases this subscription holds: settling and renewing touch only
	// those, never a lease another consumer took after this one's ran out.
	owner string
	h     pubsub.Handler
	wake  chan struct{}

	mu       sync.Mutex
	inflight map[int64]struct{} // messages its handlers are working on
}

func (s *subscription) track(id int64) {
	s.mu.Lock()
	s.inflight[id] = struct{}{}
	s.mu.Unlock()
}

func (s *subscription) untrack(id int64) {
	s.mu.Lock()
	delete(s.inflight, id)
	s.mu.Unlock()
}

func (s *subscription) working() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Keys(s.inflight))
}

// Subscribe joins the consumer group (the request's consumerID, else the component's)
// and returns once the group exists in the database, so that every message published
// afterwards is kept for it.
func (p *PubSub) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	if req.Topic == "" {
		return fmt.Errorf("%s %q: subscribe: topic is empty", TypeName, p.name)
	}
	if h == nil {
		return fmt.Errorf("%s %q: subscribe to %q: handler is nil", TypeName, p.name, req.Topic)
	}
	group := p.opts.ConsumerID
	if v, ok := (components.Metadata{Properties: req.Metadata}).Property(pubsub.ConsumerIDKey); ok && v != "" {
		group = v
	}
	if group == "" {
		return fmt.Errorf("%s %q: subscribe to %q: no consumer group: set metadata %q, or run the sidecar with an app id", TypeName, p.name, req.Topic, pubsub.ConsumerIDKey)
	}
	owner, err := randomToken()
	if err != nil {
		return fmt.Errorf("%s %q: subscribe to %q: %w", TypeName, p.name, req.Topic, err)
	}
	if err := p.enter(); err != nil {
		return err
	}
	defer p.wg.Done()
	jctx, cancel := p.opCtx(ctx)
	defer cancel()
	if _, err := p.exec(jctx, p.q.join, req.Topic, group, p.now().UnixMilli()); err != nil {
		return fmt.Errorf("%s %q: subscribe to %q as %q: %w", TypeName, p.name, req.Topic, group, err)
	}
	s := &subscription{topic: req.Topic, group: group, owner: owner, h: h, wake: make(chan struct{}, 1), inflight: map[int64]struct{}{}}
	subCtx, stopSub := context.WithCancel(ctx)
	unhook := context.AfterFunc(p.ctx, stopSub)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		unhook()
		stopSub()
		return fmt.Errorf("%s %q: closed", TypeName, p.name)
	}
	if p.subs[s.topic] == nil {
		p.subs[s.topic] = map[*subscription]struct{}{}
	}
	p.subs[s.topic][s] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.consume(subCtx, s, req.Concurrency())
		unhook()
		stopSub()
		p.mu.Lock()
		delete(p.subs[s.topic], s)
		if len(p.subs[s.topic]) == 0 {
			delete(p.subs, s.topic)
		}
		p.mu.Unlock()
	}()
	return nil
}

// consume claims and dispatches messages until ctx ends, with at most limit handler
// calls at once, then waits for those in flight.
func (p *PubSub) consume(ctx context.Context, s *subscription, limit int) {
	slots := make(chan struct{}, limit)
	var handlers sync.WaitGroup
	stopRenew := make(chan struct{})
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		p.renewLoop(s, stopRenew)
	}()
	defer func() {
		handlers.Wait()
		close(stopRenew)
		<-renewDone
	}()
	// Reset discards a pending tick (Go 1.23 timers), so a wake-up needs no drain.
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		free := 1
	fill:
		for free < limit {
			select {
			case slots <- struct{}{}:
				free++
			default:
				break fill
			}
		}
		cctx, cancel := p.opCtx(ctx)
		batch, err := p.claim(cctx, s, free)
		cancel()
		for range free - len(batch) {
			<-slots
		}
		for _, d := range batch {
			s.track(d.id)
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				defer func() { <-slots }()
				p.handle(ctx, s, d)
			}()
		}
		wait := p.opts.PollInterval
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// claim has already retried a busy database for the whole timeout; what is
			// left is worth a log line, not a tight loop.
			p.log.Error(err, "Claiming messages failed", "topic", s.topic, "consumerID", s.group)
			wait = max(wait, time.Second)
		case len(batch) == free:
			// A full batch suggests more are waiting.
			continue
		}
		idle.Reset(wait)
		select {
		case <-s.wake:
		case <-idle.C:
		case <-ctx.Done():
			return
		}
	}
}

// handle runs the handler on one message and records the outcome.
func (p *PubSub) handle(ctx context.Context, s *subscription, d delivery) {
	defer s.untrack(d.id)
	herr := s.h(ctx, d.msg)
	at := p.now()
	if herr != nil && ctx.Err() == nil {
		at = at.Add(p.opts.RedeliverInterval)
	}
	// A cancelled subscription still records the outcome: an acknowledgement must not
	// be lost, and a message its handler gave up on is freed for the group at once
	// rather than after visibilityTimeout.
	sctx, cancel := p.opCtx(context.WithoutCancel(ctx))
	defer cancel()
	if err := p.settle(sctx, s, d.id, herr == nil, at); err != nil {
		p.log.Error(err, "Recording a delivery's outcome failed; the message will be delivered again", "topic", s.topic,
			"consumerID", s.group, "messageID", d.id, "acknowledged", herr == nil)
	}
}

// renewLoop keeps the leases of the messages being handled from running out, until
// stop is closed.
func (p *PubSub) renewLoop(s *subscription, stop <-chan struct{}) {
	t := time.NewTicker(p.opts.VisibilityTimeout / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ids := s.working()
			if len(ids) == 0 {
				continue
			}
			ctx, cancel := p.opCtx(context.Background())
			err := p.renew(ctx, s, ids)
			cancel()
			if err != nil {
				p.log.Error(err, "Renewing message leases failed; another consumer may take them", "topic", s.topic, "consumerID", s.group, "messages", len(ids))
			}
		}
	}
}

// cleanupLoop prunes the file on each tick until Close.
func (p *PubSub) cleanupLoop(tick *time.Ticker) {
	defer p.wg.Done()
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
			ctx, cancel := p.opCtx(p.ctx)
			err := p.maybeCleanup(ctx)
			cancel()
			if err != nil && p.ctx.Err() == nil {
				// The next tick tries again; meanwhile the file only holds more rows.
				p.log.Error(err, "Pruning messages failed")
			}
		}
	}
}

func randomToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate lease owner: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
