// Package rabbitmq is pubsub.rabbitmq: Dapr's RabbitMQ pub/sub on amqp091-go, with
// Dapr's metadata and topology so that Dapr and Outrigger sidecars can share a broker.
// Each topic is an exchange named after it (of kind exchangeKind); each consumer group
// has a queue named <consumerID>-<topic> bound to it, so the consumers of one group
// compete for its messages and every group gets all of them.
//
// One connection carries everything: a publishing channel in confirm mode and one
// channel per subscription. A background loop watches the connection and, once it is
// lost (a broker restart, the network, a forced close), dials again every
// reconnectWaitSeconds; each subscription then declares its exchange and queue again and
// goes on consuming, with no new Subscribe call.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-logr/logr"
	amqp "github.com/rabbitmq/amqp091-go"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// TypeName is the component type this package implements.
const TypeName = "pubsub.rabbitmq"

// Register adds pubsub.rabbitmq (v1) to a registry.
func Register(r *components.Registry[pubsub.PubSub]) {
	r.Register(TypeName, func() pubsub.PubSub { return New() })
}

const (
	argMaxLength            = "x-max-length"
	argMaxLengthBytes       = "x-max-length-bytes"
	argDeadLetterExchange   = "x-dead-letter-exchange"
	argMaxPriority          = "x-max-priority"
	argSingleActiveConsumer = "x-single-active-consumer"
	argQueueMode            = "x-queue-mode"

	// connectTimeout bounds the TCP connect and the TLS and AMQP handshakes of a dial,
	// as amqp091-go's default dialer does.
	connectTimeout = 30 * time.Second
	// subscribeTimeout is how long Subscribe waits for a connection when the broker is
	// being reconnected, as long as Dapr waits for a subscription to start.
	subscribeTimeout = time.Minute
	// locale is the only one RabbitMQ offers.
	locale = "en_US"
)

var (
	errClosed         = errors.New("the component is closed")
	errNotInitialised = errors.New("the component is not initialised")
)

// PubSub is the RabbitMQ pub/sub. Create it with New, then Init it.
type PubSub struct {
	// dial opens a connection to the broker the options name; tests wrap it to make the
	// broker unreachable for a while.
	dial func(ctx context.Context) (*amqp.Connection, error)

	opts options
	log  logr.Logger

	// ctx ends when Close is called; every subscription and the reconnect loop stop
	// with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the reconnect loop and every subscription's goroutine

	mu          sync.Mutex
	initialised bool
	closed      bool
	sess        *session      // nil while disconnected
	ready       chan struct{} // closed while sess is set, replaced when it is lost
	lastErr     error         // why the broker is unreachable
	pub         *publisher

	// pubOpen lets one Publish at a time open the publishing channel.
	pubOpen chan struct{}
}

// session is one connection to the broker.
type session struct {
	conn   *amqp.Connection
	closes chan *amqp.Error // the connection's NotifyClose; read by the reconnect loop only
	lost   chan struct{}    // closed once the reconnect loop has given the session up
}

var _ pubsub.PubSub = (*PubSub)(nil)

// New returns an uninitialised component.
func New() *PubSub {
	ctx, cancel := context.WithCancel(context.Background())
	p := &PubSub{
		ctx:     ctx,
		cancel:  cancel,
		ready:   make(chan struct{}),
		pubOpen: make(chan struct{}, 1),
		log:     logr.Discard(),
	}
	p.dial = p.dialBroker
	return p
}

// Init reads the metadata and connects. As in Dapr, a broker that cannot be reached
// fails Init; once connected, a lost connection is redialled in the background.
func (p *PubSub) Init(ctx context.Context, md components.Metadata) error {
	opts, err := parseOptions(md)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	p.mu.Lock()
	if p.initialised || p.closed {
		p.mu.Unlock()
		return fmt.Errorf("%s %q: already initialised or closed", TypeName, md.Name)
	}
	p.initialised = true
	p.opts = opts
	p.log = logf.FromContext(ctx).WithValues("component", md.Name, "type", TypeName)
	p.mu.Unlock()

	s, err := p.connect(ctx)
	if err != nil {
		// Publish and Subscribe then fail at once rather than wait for a reconnect loop
		// that never started.
		p.mu.Lock()
		p.initialised = false
		p.mu.Unlock()
		return fmt.Errorf("%s %q: cannot reach RabbitMQ at %s: %w", TypeName, md.Name, opts.broker, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = s.conn.Close()
		return fmt.Errorf("%s %q: closed during Init", TypeName, md.Name)
	}
	p.sess = s
	close(p.ready)
	p.wg.Add(1)
	go p.maintain(s)
	return nil
}

// Features lists MESSAGE_TTL: a message's ttlInSeconds becomes its AMQP expiration.
func (p *PubSub) Features() []pubsub.Feature {
	return []pubsub.Feature{pubsub.FeatureMessageTTL}
}

// Close stops every subscription, waits for the handler calls in flight (their context
// is cancelled) and closes the connection. Unacknowledged messages go back to their
// queues when their channels close.
func (p *PubSub) Close() error {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	if already {
		return nil
	}
	p.mu.Lock()
	s := p.sess
	p.sess, p.pub = nil, nil
	p.mu.Unlock()
	if s != nil {
		if err := s.conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
			return fmt.Errorf("%s: close the connection to %s: %w", TypeName, p.opts.broker, err)
		}
	}
	return nil
}

// dialBroker connects with the options' URI, TLS, SASL, heartbeat and client name.
// Cancelling ctx interrupts a dial in progress, so that Close need not wait for a
// broker that accepts TCP but never answers.
func (p *PubSub) dialBroker(ctx context.Context) (*amqp.Connection, error) {
	var stopInterrupt func() bool
	cfg := amqp.Config{
		Heartbeat: p.opts.HeartBeat,
		Locale:    locale,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: connectTimeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Heartbeats start only after the handshake; amqp091-go clears this deadline
			// once it is done.
			deadline := time.Now().Add(connectTimeout)
			if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
				deadline = dl
			}
			if err := c.SetDeadline(deadline); err != nil {
				_ = c.Close()
				return nil, err
			}
			stopInterrupt = context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
			return c, nil
		},
	}
	if p.opts.ClientName != "" {
		cfg.Properties = amqp.NewConnectionProperties()
		cfg.Properties.SetClientConnectionName(p.opts.ClientName)
	}
	if p.opts.isAMQPS {
		if p.opts.tlsCfg != nil {
			// amqp091-go writes ServerName into the configuration it is given.
			cfg.TLSClientConfig = p.opts.tlsCfg.Clone()
		}
		if p.opts.SaslExternal {
			cfg.SASL = []amqp.Authentication{&amqp.ExternalAuth{}}
		}
	}
	conn, err := amqp.DialConfig(p.opts.uri, cfg)
	if stopInterrupt != nil && !stopInterrupt() && err == nil {
		// ctx ended after the handshake had begun: the connection's deadline may already
		// be in the past, and the caller is going away anyway.
		_ = conn.Close()
		return nil, ctx.Err()
	}
	return conn, err
}

// connect dials and watches the new connection.
func (p *PubSub) connect(ctx context.Context) (*session, error) {
	conn, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &session{
		conn:   conn,
		closes: conn.NotifyClose(make(chan *amqp.Error, 1)),
		lost:   make(chan struct{}),
	}, nil
}

// maintain waits for the connection to be lost, then redials every reconnectWait
// until it succeeds or the component is closed. Subscriptions notice the new session
// through ready and resubscribe themselves.
func (p *PubSub) maintain(s *session) {
	defer p.wg.Done()
	for {
		var cause error = errors.New("the connection was closed")
		select {
		case <-p.ctx.Done():
			return
		case e, ok := <-s.closes:
			if ok && e != nil {
				cause = e
			}
		}
		if p.ctx.Err() != nil {
			return
		}
		p.lose(s, cause)
		p.log.Error(cause, "Lost the connection to RabbitMQ, reconnecting", "broker", p.opts.broker, "wait", p.opts.ReconnectWait)
		for {
			if !sleep(p.ctx, p.opts.ReconnectWait) {
				return
			}
			ns, err := p.connect(p.ctx)
			if err != nil {
				p.mu.Lock()
				p.lastErr = err
				p.mu.Unlock()
				p.log.Error(err, "Cannot reconnect to RabbitMQ, trying again", "broker", p.opts.broker, "wait", p.opts.ReconnectWait)
				continue
			}
			if !p.adopt(ns) {
				_ = ns.conn.Close()
				return
			}
			p.log.Info("Reconnected to RabbitMQ", "broker", p.opts.broker)
			s = ns
			break
		}
	}
}

// lose forgets a session whose connection has closed.
func (p *PubSub) lose(s *session, cause error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess == s {
		p.sess = nil
		p.ready = make(chan struct{})
		p.lastErr = cause
	}
	close(s.lost)
}

// adopt makes a new session current, unless the component was closed meanwhile.
func (p *PubSub) adopt(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.sess = s
	p.lastErr = nil
	close(p.ready)
	return true
}

// current returns the session in use, or an error when there is none.
func (p *PubSub) current() (*session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usableLocked(); err != nil {
		return nil, err
	}
	if p.sess == nil || p.sess.conn.IsClosed() {
		return nil, p.notConnectedLocked()
	}
	return p.sess, nil
}

func (p *PubSub) usableLocked() error {
	switch {
	case p.closed:
		return errClosed
	case !p.initialised:
		return errNotInitialised
	}
	return nil
}

func (p *PubSub) notConnectedLocked() error {
	cause := p.lastErr
	if cause == nil {
		cause = errors.New("the connection was closed")
	}
	return fmt.Errorf("not connected to the broker, reconnecting every %s: %w", p.opts.ReconnectWait, cause)
}

// waitSession returns a live session, waiting for the reconnect loop while there is
// none, until ctx ends.
func (p *PubSub) waitSession(ctx context.Context) (*session, error) {
	for {
		p.mu.Lock()
		s, ready, closed := p.sess, p.ready, p.closed
		p.mu.Unlock()
		if closed {
			return nil, errClosed
		}
		var wait <-chan struct{}
		switch {
		case s == nil:
			wait = ready
		case s.conn.IsClosed():
			// The reconnect loop has not noticed yet; once it has, ready is renewed.
			wait = s.lost
		default:
			return s, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			p.mu.Lock()
			err := p.notConnectedLocked()
			p.mu.Unlock()
			return nil, fmt.Errorf("%w (gave up waiting: %w)", err, ctx.Err())
		}
	}
}

// sleep waits for d, and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// String names the component in logs.
func (p *PubSub) String() string { return fmt.Sprintf("%s(%s)", TypeName, p.opts.broker) }
