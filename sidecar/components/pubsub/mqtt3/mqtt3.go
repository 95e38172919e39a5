// Package mqtt3 is pubsub.mqtt3: Dapr's MQTT 3.1.1 pub/sub, on paho, with Dapr's
// metadata (url, consumerID, qos, retain, cleanSession, caCert, clientCert, clientKey).
//
// # Sessions stand in for consumer groups
//
// MQTT 3.1.1 has no consumer groups. As in Dapr, a consumer ID is an MQTT client ID, and
// its subscriptions live in that client's broker session, which persists unless
// cleanSession is set. With QoS 1 or 2 the broker keeps in the session every message
// that arrives while the client is away and every message it delivered that was never
// acknowledged, and sends them again when a client with the same ID connects. That is
// what carries a message over a failed handler, a Close or a SIGKILL: the next consumer
// with that ID gets it.
//
// The price is that consumers of one ID do not share messages: they take the session
// from each other, since a broker drops the older connection when a new one presents
// its client ID, and each then reconnects and drops the other. So replicas need one
// consumerID each ({podName}, as Dapr's docs advise), and each replica gets every
// message. Shared subscriptions ($share/<group>/<topic>: MQTT 5, and Mosquitto, EMQX and
// HiveMQ as an extension to 3.1.1) would split messages between replicas, but their
// members need distinct client IDs, so what a crashed member had not acknowledged
// stays in a session that nobody resumes. That trades the at-least-once contract for
// load sharing, and the component does not make the trade by itself; a subscription to
// "$share/<group>/<topic>" is passed through, as Dapr does, for users who make it.
//
// # Connections
//
//   - Publishing has its own connection, opened by Init. Its client ID is
//     "<consumerID>-producer-<random>" with a clean session: a producer has nothing for a
//     broker to keep, and a fixed ID (Dapr's older pubsub.mqtt used "<consumerID>-producer")
//     would make replicas that publish drop each other's connections.
//   - Each consumer ID (the component's, or a subscription's consumerID metadata) has one
//     connection, opened by its first Subscribe and closed when its last subscription
//     ends. Opening it only then means a resumed session's messages find a handler, and
//     closing it hands what no handler took back to the broker.
//
// Delivery is Dapr's: automatic acknowledgement is off, and a message is acknowledged
// when its handler returns nil. MQTT has no negative acknowledgement, and a broker
// sends an unacknowledged message again only on reconnect, so a failed handler is
// called again here, with exponential backoff, until it succeeds or its subscription
// ends; the message is then left unacknowledged for the next session. A message that
// reaches a session before the subscription for its topic (a resumed session delivers
// all its topics at once) waits, unacknowledged, for that subscription.
package mqtt3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// TypeName is the component type this package implements.
const TypeName = "pubsub.mqtt3"

// Register adds pubsub.mqtt3 (v1) to a pub/sub registry.
func Register(r *components.Registry[pubsub.PubSub]) {
	r.Register(TypeName, func() pubsub.PubSub { return New() }, "v1")
}

const (
	// retainKey is Dapr's per-request override of the retain property.
	retainKey = "retain"
	// unsubscribeOnCloseKey is Dapr's subscription metadata that unsubscribes when the
	// subscription ends, so that the session stops collecting its topic's messages.
	unsubscribeOnCloseKey = "unsubscribeOnClose"
	// RetainedKey is the delivered message's metadata that says whether the broker
	// kept it as the topic's retained message, as Dapr reports it.
	RetainedKey = "retained"
)

var errClosed = errors.New("pub/sub is closed")

// PubSub is the component. Create it with New, then Init it.
type PubSub struct {
	// timeout bounds each exchange with the broker (connect, subscribe, publish), as
	// Dapr's 20 s wait does.
	timeout time.Duration
	// retryMin and retryMax bound the backoff between calls of a failing handler.
	retryMin, retryMax time.Duration
	// maxReconnect caps paho's backoff between reconnection attempts.
	maxReconnect time.Duration

	opts   options
	broker broker
	log    logr.Logger

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu       sync.Mutex
	producer mqtt.Client
	sessions map[string]*session // consumer ID -> session
	closed   bool
	wg       sync.WaitGroup // one per subscription, until its handlers have returned
}

// New returns an uninitialised component.
func New() *PubSub {
	ctx, cancel := context.WithCancel(context.Background())
	return &PubSub{
		timeout:      20 * time.Second,
		retryMin:     100 * time.Millisecond,
		retryMax:     30 * time.Second,
		maxReconnect: 15 * time.Second,
		log:          logr.Discard(),
		ctx:          ctx,
		cancel:       cancel,
		sessions:     map[string]*session{},
	}
}

// Init reads the metadata and connects the producer, so that a wrong url or
// credentials fail here.
func (p *PubSub) Init(ctx context.Context, md components.Metadata) error {
	opts, b, err := parseOptions(md)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, errClosed)
	case p.producer != nil:
		p.mu.Unlock()
		return fmt.Errorf("%s %q: already initialised", TypeName, md.Name)
	}
	p.opts, p.broker = opts, b
	p.log = logf.FromContext(ctx).WithValues("component", md.Name, "type", TypeName)
	p.mu.Unlock()

	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	co := p.clientOptions(opts.ConsumerID+"-producer-"+hex.EncodeToString(suffix), true)
	producer := mqtt.NewClient(co)
	if err := p.wait(ctx, producer.Connect()); err != nil {
		go producer.Disconnect(0) // stops a connect still in progress
		return fmt.Errorf("%s %q: connect to the broker: %w", TypeName, md.Name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		producer.Disconnect(0)
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, errClosed)
	}
	p.producer = producer
	return nil
}

// clientOptions are paho's settings for one connection; subscribers add their
// handlers.
func (p *PubSub) clientOptions(clientID string, cleanSession bool) *mqtt.ClientOptions {
	co := mqtt.NewClientOptions().
		AddBroker(p.broker.addr).
		SetClientID(clientID).
		SetUsername(p.broker.username).
		SetPassword(p.broker.password).
		SetCleanSession(cleanSession).
		// Handlers block (that is what a handler does), and are bounded per
		// subscription instead.
		SetOrderMatters(false).
		// The handler's result decides the acknowledgement.
		SetAutoAckDisabled(true).
		// The first connection's error reaches Init or Subscribe; later drops are
		// retried for ever.
		SetConnectRetry(false).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(p.maxReconnect).
		// A Subscribe made while the connection is down goes out once it is back.
		SetResumeSubs(true).
		SetConnectTimeout(p.timeout)
	if p.broker.tls != nil {
		co.SetTLSConfig(p.broker.tls)
	}
	return co
}

// wait waits for a paho token, within ctx, the component's life and the timeout.
func (p *PubSub) wait(ctx context.Context, tok mqtt.Token) error {
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-p.ctx.Done():
		return errClosed
	case <-timer.C:
		return fmt.Errorf("no answer from the broker in %s", p.timeout)
	}
}

// Features: a subscription topic may hold MQTT's wildcards, as in Dapr.
func (p *PubSub) Features() []pubsub.Feature {
	return []pubsub.Feature{pubsub.FeatureSubscribeWildcards}
}

// Publish sends the message with the component's QoS and returns once the broker has
// acknowledged it (at QoS 0, once it is written). The request's retain metadata
// overrides the component's, as in Dapr.
func (p *PubSub) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	if err := validTopic(req.Topic); err != nil {
		return fmt.Errorf("publish to %q: %w", req.Topic, err)
	}
	p.mu.Lock()
	producer, closed, opts := p.producer, p.closed, p.opts
	p.mu.Unlock()
	switch {
	case closed:
		return errClosed
	case producer == nil:
		return errors.New("pub/sub is not initialised")
	}
	retain := opts.Retain
	if v := req.Metadata[retainKey]; v != "" {
		var err error
		if retain, err = metadata.ParseBool(v); err != nil {
			return fmt.Errorf("publish to %q: metadata %q: %q %w", req.Topic, retainKey, v, err)
		}
	}
	if err := p.wait(ctx, producer.Publish(req.Topic, opts.QoS, retain, req.Data)); err != nil {
		return fmt.Errorf("publish to %q: %w", req.Topic, err)
	}
	return nil
}

// Subscribe joins the session of the request's consumerID (else the component's),
// connecting it if this is its first subscription, and returns once the broker has
// granted the subscription.
//
// When ctx ends the subscription's handlers are cancelled and the messages they held
// stay unacknowledged. The broker subscription stays in the session, as in Dapr, so
// that the session keeps collecting the topic's messages for the next subscriber;
// subscription metadata unsubscribeOnClose=true (or cleanSession) removes it.
func (p *PubSub) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	if err := validFilter(req.Topic); err != nil {
		return fmt.Errorf("subscribe to %q: %w", req.Topic, err)
	}
	unsubscribe := false
	if v := req.Metadata[unsubscribeOnCloseKey]; v != "" {
		var err error
		if unsubscribe, err = metadata.ParseBool(v); err != nil {
			return fmt.Errorf("subscribe to %q: metadata %q: %q %w", req.Topic, unsubscribeOnCloseKey, v, err)
		}
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	if p.producer == nil {
		p.mu.Unlock()
		return errors.New("pub/sub is not initialised")
	}
	consumerID := p.opts.ConsumerID
	if v := req.Metadata[pubsub.ConsumerIDKey]; v != "" {
		consumerID = v
	}
	s := p.sessions[consumerID]
	if s == nil {
		s = &session{p: p, clientID: consumerID}
		p.sessions[consumerID] = s
	}
	// Added under the lock that Close takes, so that Close waits for this
	// subscription.
	p.wg.Add(1)
	p.mu.Unlock()

	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	sub := &subscription{
		s:           s,
		filter:      req.Topic,
		handler:     h,
		ctx:         sctx,
		sem:         make(chan struct{}, req.Concurrency()),
		unsubscribe: unsubscribe || p.opts.CleanSession,
	}
	end := func() {
		cancel()
		stop()
		s.remove(sub)
		p.wg.Done()
	}
	if err := s.add(sub); err != nil {
		end()
		return fmt.Errorf("subscribe to %q as %q: %w", req.Topic, consumerID, err)
	}
	if err := s.subscribe(sctx, sub); err != nil {
		end()
		return fmt.Errorf("subscribe to %q as %q: %w", req.Topic, consumerID, err)
	}
	p.log.V(1).Info("Subscribed", "topic", req.Topic, "consumerID", consumerID, "qos", p.opts.QoS)
	go func() {
		<-sctx.Done()
		end()
	}()
	return nil
}

// Close ends every subscription, waits for the handler calls in flight, and
// disconnects. Messages the handlers had not acknowledged stay with the broker.
func (p *PubSub) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	// Each subscription ends by itself, the last one of a session disconnecting it.
	p.wg.Wait()
	p.mu.Lock()
	producer := p.producer
	p.mu.Unlock()
	if producer != nil {
		producer.Disconnect(250)
	}
	return nil
}

var _ pubsub.PubSub = (*PubSub)(nil)

// String names the component in logs.
func (p *PubSub) String() string {
	return fmt.Sprintf("%s(consumerID=%s)", TypeName, p.opts.ConsumerID)
}

// session is one consumer ID's broker session and the subscriptions that share it.
type session struct {
	p        *PubSub
	clientID string

	// connMu orders what changes the session at the broker (connect, SUBSCRIBE,
	// UNSUBSCRIBE, disconnect), so that an UNSUBSCRIBE of an ended subscription never
	// overtakes a new SUBSCRIBE to the same topic.
	connMu sync.Mutex

	mu   sync.Mutex
	conn *conn // nil while no subscription needs the session
	subs []*subscription
	// waiting holds the unacknowledged messages that no subscription has taken: they
	// go to the first one that matches, and back to the broker when the connection
	// ends.
	waiting []mqtt.Message
}

// conn is one paho client of a session; messages of an earlier one are not taken,
// since their acknowledgement could no longer reach the broker.
type conn struct {
	client   mqtt.Client
	connects atomic.Int64
}

// add registers sub before its SUBSCRIBE goes out: a resumed session delivers what it
// held as soon as it connects.
func (s *session) add(sub *subscription) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.subs {
		if o.filter == sub.filter && o.ctx.Err() == nil {
			return errors.New("the consumer already has a subscription to this topic")
		}
	}
	s.subs = append(s.subs, sub)
	return nil
}

// subscribe connects the session if needed and subscribes it to sub's topic.
func (s *session) subscribe(ctx context.Context, sub *subscription) error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	tok := c.client.Subscribe(sub.filter, s.p.opts.QoS, nil)
	if err := s.p.wait(ctx, tok); err != nil {
		return err
	}
	// paho keys the result by the topic without a $share prefix; there is one.
	for _, granted := range tok.(*mqtt.SubscribeToken).Result() {
		if granted == 0x80 {
			return errors.New("the broker refused the subscription")
		}
	}
	// Messages that reached the session before this subscription existed.
	s.mu.Lock()
	var mine []mqtt.Message
	s.waiting = slices.DeleteFunc(s.waiting, func(m mqtt.Message) bool {
		if matches(sub.filter, m.Topic()) {
			mine = append(mine, m)
			return true
		}
		return false
	})
	sub.inflight.Add(len(mine))
	s.mu.Unlock()
	for _, m := range mine {
		go sub.handle(c, m)
	}
	return nil
}

// connect returns the session's connection, opening it if there is none. connMu is
// held.
func (s *session) connect(ctx context.Context) (*conn, error) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c = &conn{}
	co := s.p.clientOptions(s.clientID, s.p.opts.CleanSession)
	co.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { s.dispatch(c, m) })
	co.SetOnConnectHandler(func(mqtt.Client) { s.onConnect(c) })
	co.SetConnectionLostHandler(func(_ mqtt.Client, err error) { s.onLost(c, err) })
	c.client = mqtt.NewClient(co)
	// Current before it connects, so that what the broker sends right after CONNACK
	// is taken.
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	if err := s.p.wait(ctx, c.client.Connect()); err != nil {
		s.mu.Lock()
		s.conn, s.waiting = nil, nil
		s.mu.Unlock()
		go c.client.Disconnect(0)
		return nil, fmt.Errorf("connect to the broker: %w", err)
	}
	return c, nil
}

// dispatch hands a message to the live subscription whose topic matches it, an exact
// match first, or keeps it waiting for one.
func (s *session) dispatch(c *conn, m mqtt.Message) {
	s.mu.Lock()
	if s.conn != c {
		s.mu.Unlock()
		return
	}
	var sub *subscription
	for _, o := range s.subs {
		if o.ctx.Err() != nil || !matches(o.filter, m.Topic()) {
			continue
		}
		if sub == nil || filterTopic(o.filter) == m.Topic() {
			sub = o
		}
	}
	if sub != nil {
		sub.inflight.Add(1)
	} else if m.Qos() > 0 {
		// At QoS 0 there is nothing to acknowledge, and nothing the broker would
		// resend.
		s.waiting = append(s.waiting, m)
	}
	s.mu.Unlock()
	if sub != nil {
		sub.handle(c, m)
	}
}

// onConnect subscribes again after a reconnection: a clean session, or a broker that
// lost its sessions, starts with none.
func (s *session) onConnect(c *conn) {
	if c.connects.Add(1) == 1 {
		return // the first connection's SUBSCRIBEs come from Subscribe
	}
	s.mu.Lock()
	filters := map[string]byte{}
	for _, sub := range s.subs {
		if sub.ctx.Err() == nil {
			filters[sub.filter] = s.p.opts.QoS
		}
	}
	s.mu.Unlock()
	s.p.log.Info("Reconnected to the broker", "consumerID", s.clientID, "subscriptions", len(filters))
	if len(filters) == 0 {
		return
	}
	if err := s.p.wait(s.p.ctx, c.client.SubscribeMultiple(filters, nil)); err != nil && s.p.ctx.Err() == nil {
		// The connection is most likely down again, and this runs again when it is
		// back.
		s.p.log.Error(err, "Resubscribe after reconnecting", "consumerID", s.clientID)
	}
}

// onLost drops the waiting messages: their acknowledgements could not reach the
// broker, which sends them again on reconnection.
func (s *session) onLost(c *conn, err error) {
	s.mu.Lock()
	if s.conn == c {
		s.waiting = nil
	}
	s.mu.Unlock()
	if s.p.ctx.Err() == nil {
		s.p.log.Error(err, "Connection to the broker lost; reconnecting", "consumerID", s.clientID)
	}
}

// remove ends sub in the session once its handlers have returned: it unsubscribes at
// the broker when asked to, and disconnects the session when it was the last.
func (s *session) remove(sub *subscription) {
	s.mu.Lock()
	s.subs = slices.DeleteFunc(s.subs, func(o *subscription) bool { return o == sub })
	s.mu.Unlock()
	sub.inflight.Wait()

	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.mu.Lock()
	c, idle := s.conn, len(s.subs) == 0
	shared := slices.ContainsFunc(s.subs, func(o *subscription) bool { return o.filter == sub.filter && o.ctx.Err() == nil })
	if idle {
		s.conn, s.waiting = nil, nil
	}
	s.mu.Unlock()
	if c == nil {
		return
	}
	// Not on Close: a component that is replaced leaves its session subscribed for
	// the next one, as in Dapr.
	if sub.unsubscribe && !shared && s.p.ctx.Err() == nil {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := s.p.wait(ctx, c.client.Unsubscribe(sub.filter)); err != nil {
			s.p.log.Error(err, "Unsubscribe", "topic", sub.filter, "consumerID", s.clientID)
		}
	}
	if idle {
		c.client.Disconnect(250)
	}
}

// subscription is one Subscribe call.
type subscription struct {
	s           *session
	filter      string
	handler     pubsub.Handler
	ctx         context.Context
	sem         chan struct{} // bounds the handler calls in flight
	unsubscribe bool
	inflight    sync.WaitGroup // messages taken and not yet acknowledged or released
}

// handle calls the handler until it returns nil, then acknowledges the message. When
// the subscription ends first, the message goes back to the session unacknowledged.
// A message waiting to be called again does not count against the concurrency bound,
// so that one failing message does not hold up the others.
func (sub *subscription) handle(c *conn, m mqtt.Message) {
	defer sub.inflight.Done()
	backoff := sub.s.p.retryMin
	for attempt := 1; ; attempt++ {
		select {
		case sub.sem <- struct{}{}:
		case <-sub.ctx.Done():
			sub.s.dispatch(c, m)
			return
		}
		err := sub.handler(sub.ctx, &pubsub.Message{
			Topic: m.Topic(),
			// A copy per call: a handler that failed may have kept or changed it.
			Data:     slices.Clone(m.Payload()),
			Metadata: map[string]string{RetainedKey: strconv.FormatBool(m.Retained())},
		})
		<-sub.sem
		if err == nil {
			m.Ack()
			return
		}
		if sub.ctx.Err() != nil {
			sub.s.dispatch(c, m)
			return
		}
		sub.s.p.log.Error(err, "Message handler failed; calling it again", "topic", m.Topic(), "messageID", m.MessageID(), "attempt", attempt, "retryIn", backoff)
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-sub.ctx.Done():
			timer.Stop()
			sub.s.dispatch(c, m)
			return
		}
		backoff = min(2*backoff, sub.s.p.retryMax)
	}
}
