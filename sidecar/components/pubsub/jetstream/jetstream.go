// Package jetstream is pubsub.jetstream: NATS JetStream, with the metadata of Dapr's
// component (see options.go).
//
// A topic is a NATS subject. Publish stores the message in the stream that covers the
// subject and returns on the server's PubAck.
//
// Streams: Dapr expects the stream to exist, and fails to publish or subscribe
// otherwise. Outrigger, when streamName is set, uses that stream, creating it or adding
// the topic to its subjects as needed; when it is not, it uses the stream that covers
// the topic, or creates one stream per topic named "outrigger-<topic>" (see
// defaultStreamName). The streams it creates have interest retention (see
// options.streamConfig).
//
// Consumer groups: each group is a durable pull consumer of the stream, filtered on the
// topic and named "<group>_<topic>" (see consumerName). The instances of one group pull
// from the same consumer and share its messages; each group gets all of them. The
// group is the subscription's consumerID, else the component's durableName,
// queueGroupName or consumerID, else the app id. Dapr's component instead creates a
// push consumer named durableName; the two cannot share a consumer.
//
// Delivery: a message is acknowledged (and the server's confirmation awaited) only when
// the handler returns nil; on an error it is nak'ed, to come back after the backOff
// interval of that attempt, else after ackWait when set (as Dapr does), else at once. A
// message whose consumer dies comes back after ackWait. maxDeliver bounds the attempts.
package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// TypeName is the component type this package implements.
const TypeName = "pubsub.jetstream"

// Register adds pubsub.jetstream (v1) to a pub/sub registry.
func Register(r *components.Registry[pubsub.PubSub]) {
	r.Register(TypeName, func() pubsub.PubSub { return New() }, "v1")
}

const (
	// ackTimeout bounds the wait for the server to confirm an acknowledgement. An ack
	// that times out leaves the message to be delivered again, never lost.
	ackTimeout = 10 * time.Second
	// drainTimeout bounds how long an ending subscription waits for the messages it
	// had pulled but not handled, to nak them so that other consumers of the group get
	// them at once rather than after ackWait.
	drainTimeout = 5 * time.Second
	// The waits between attempts to restore a subscription whose consumer went away.
	minRetryWait = 500 * time.Millisecond
	maxRetryWait = 30 * time.Second
)

// PubSub is a JetStream pub/sub. Create it with New, then Init it.
type PubSub struct {
	// ctx ends on Close, and with it every subscription.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // subscriptions running

	mu     sync.Mutex // guards nc, js and closed against Close racing Init and Subscribe
	nc     *nats.Conn
	js     jetstream.JetStream
	closed bool

	opts  options
	name  string
	appID string
	log   logr.Logger

	streamMu sync.Mutex // serialises finding or creating streams
	streams  sync.Map   // topic -> stream name, once found or created
}

var _ pubsub.PubSub = (*PubSub)(nil)

// New returns an uninitialised component.
func New() *PubSub {
	ctx, cancel := context.WithCancel(context.Background())
	return &PubSub{ctx: ctx, cancel: cancel, log: logr.Discard()}
}

// Init reads the metadata, connects and checks that JetStream answers.
func (p *PubSub) Init(ctx context.Context, md components.Metadata) error {
	opts, err := parseOptions(md)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	log := logf.FromContext(ctx).WithValues("component", md.Name, "type", TypeName)
	if opts.FlowControl || opts.RateLimit != 0 {
		log.Info("Metadata flowControl and rateLimit configure push consumers and have no effect on Outrigger's pull consumers")
	}
	nc, err := nats.Connect(opts.NatsURL, connectOptions(opts, log)...)
	if err != nil {
		return fmt.Errorf("%s %q: connect to NATS at %s (metadata \"natsURL\"): %w", TypeName, md.Name, redactURLs(opts.NatsURL), err)
	}
	js, err := newJetStream(nc, opts)
	if err == nil {
		_, err = js.AccountInfo(ctx)
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("%s %q: JetStream at %s%s does not answer: %w", TypeName, md.Name, redactURLs(opts.NatsURL), apiHint(opts), err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.nc != nil {
		nc.Close()
		return fmt.Errorf("%s %q: already initialised or closed", TypeName, md.Name)
	}
	p.nc, p.js, p.opts, p.name, p.appID, p.log = nc, js, opts, md.Name, md.AppID, log
	return nil
}

func connectOptions(o options, log logr.Logger) []nats.Option {
	opts := []nats.Option{
		nats.Name(o.Name),
		// A sidecar lives as long as its app: keep reconnecting rather than give up
		// after nats.go's default of 60 attempts.
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Info("Disconnected from NATS", "error", err.Error())
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("Reconnected to NATS", "url", redactURL(nc.ConnectedUrl())) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error(err, "NATS reported an asynchronous error", "subject", subject)
		}),
	}
	switch {
	case o.JWT != "":
		opts = append(opts, nats.UserJWTAndSeed(o.JWT, o.SeedKey))
	case o.TLSClientCert != "":
		opts = append(opts, nats.ClientCert(o.TLSClientCert, o.TLSClientKey))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	return opts
}

func newJetStream(nc *nats.Conn, o options) (jetstream.JetStream, error) {
	switch {
	case o.Domain != "":
		return jetstream.NewWithDomain(nc, o.Domain)
	case o.APIPrefix != "":
		return jetstream.NewWithAPIPrefix(nc, o.APIPrefix)
	}
	return jetstream.New(nc)
}

func apiHint(o options) string {
	switch {
	case o.Domain != "":
		return fmt.Sprintf(" (metadata \"domain\" %q)", o.Domain)
	case o.APIPrefix != "":
		return fmt.Sprintf(" (metadata \"apiPrefix\" %q)", o.APIPrefix)
	}
	return ""
}

// Features lists none, as Dapr's component does: messages carry no TTL, and wildcard
// subscriptions are not promised.
func (p *PubSub) Features() []pubsub.Feature { return nil }

// client returns the JetStream client, or why there is none.
func (p *PubSub) client() (jetstream.JetStream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return nil, fmt.Errorf("%s %q is closed", TypeName, p.name)
	case p.js == nil:
		return nil, fmt.Errorf("%s %q is not initialised", TypeName, p.name)
	}
	return p.js, nil
}

// Publish stores the message in the topic's stream and waits for the server's ack.
func (p *PubSub) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	if err := checkTopic(req.Topic, false); err != nil {
		return err
	}
	js, err := p.client()
	if err != nil {
		return err
	}
	if _, err := p.stream(ctx, js, req.Topic); err != nil {
		return err
	}
	msg := &nats.Msg{Subject: req.Topic, Data: req.Data}
	if req.ContentType != "" {
		msg.Header = nats.Header{"Content-Type": []string{req.ContentType}}
	}
	var popts []jetstream.PublishOpt
	if id := cloudEventID(req.Data); id != "" {
		popts = append(popts, jetstream.WithMsgID(id))
	}
	_, err = js.PublishMsg(ctx, msg, popts...)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		// The stream found earlier is gone (deleted, or its subjects changed): find
		// or create one again, once.
		p.streams.Delete(req.Topic)
		if _, serr := p.stream(ctx, js, req.Topic); serr != nil {
			return serr
		}
		_, err = js.PublishMsg(ctx, msg, popts...)
	}
	if err != nil {
		return fmt.Errorf("publish to topic %q: %w", req.Topic, err)
	}
	return nil
}

// cloudEventID returns the id of a CloudEvent envelope. Dapr publishes with it as
// Nats-Msg-Id, so that the server drops a retried publish within its duplicate window.
// Dapr takes the "id" of any JSON object; Outrigger only that of a CloudEvent, so that
// two app payloads that happen to share an "id" field are both kept.
func cloudEventID(data []byte) string {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return ""
	}
	var ce struct {
		ID          any `json:"id"`
		SpecVersion any `json:"specversion"`
	}
	if json.Unmarshal(data, &ce) != nil {
		return ""
	}
	id, _ := ce.ID.(string)
	if spec, _ := ce.SpecVersion.(string); spec == "" {
		return ""
	}
	return id
}

// stream returns the name of the stream that holds the topic, creating or extending
// one when none does.
func (p *PubSub) stream(ctx context.Context, js jetstream.JetStream, topic string) (string, error) {
	if name, ok := p.streams.Load(topic); ok {
		return name.(string), nil
	}
	p.streamMu.Lock()
	defer p.streamMu.Unlock()
	if name, ok := p.streams.Load(topic); ok {
		return name.(string), nil
	}
	var name string
	var err error
	if p.opts.StreamName != "" {
		name, err = p.namedStream(ctx, js, topic)
	} else {
		name, err = p.topicStream(ctx, js, topic)
	}
	if err != nil {
		return "", err
	}
	p.streams.Store(topic, name)
	return name, nil
}

// namedStream makes the stream named by streamName hold the topic.
func (p *PubSub) namedStream(ctx context.Context, js jetstream.JetStream, topic string) (string, error) {
	name := p.opts.StreamName
	s, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateStream(ctx, p.opts.streamConfig(name, topic)); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return "", fmt.Errorf("create stream %q (metadata \"streamName\") for topic %q: %w", name, topic, err)
		} else if err == nil {
			return name, nil
		}
		// Another sidecar created it meanwhile: look at what it holds.
		if s, err = js.Stream(ctx, name); err != nil {
			return "", fmt.Errorf("stream %q (metadata \"streamName\"): %w", name, err)
		}
	case err != nil:
		return "", fmt.Errorf("stream %q (metadata \"streamName\"): %w", name, err)
	}
	cfg := s.CachedInfo().Config
	if slices.ContainsFunc(cfg.Subjects, func(pattern string) bool { return covers(pattern, topic) }) {
		return name, nil
	}
	// The stream exists but does not hold the topic, which Dapr would refuse; add it.
	// Two sidecars adding different topics at the same moment can overwrite each
	// other's change (the server offers no compare-and-set on a stream's config); the
	// loser finds out when its publish gets no stream and adds its topic again.
	cfg.Subjects = append(cfg.Subjects, topic)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return "", fmt.Errorf("add topic %q to the subjects of stream %q (metadata \"streamName\"): %w", topic, name, err)
	}
	return name, nil
}

// topicStream returns the stream that covers the topic, creating one for it when none
// does.
func (p *PubSub) topicStream(ctx context.Context, js jetstream.JetStream, topic string) (string, error) {
	name, err := js.StreamNameBySubject(ctx, topic)
	if err == nil {
		return name, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return "", fmt.Errorf("find the stream of topic %q: %w", topic, err)
	}
	name = defaultStreamName(topic)
	_, err = js.CreateStream(ctx, p.opts.streamConfig(name, topic))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Created by another sidecar meanwhile, with a config of its own; it is ours if
		// it holds the topic.
		s, serr := js.Stream(ctx, name)
		if serr == nil && slices.ContainsFunc(s.CachedInfo().Config.Subjects, func(pattern string) bool { return covers(pattern, topic) }) {
			return name, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("no stream holds topic %q (set metadata \"streamName\" or create one), and creating stream %q failed: %w", topic, name, err)
	}
	return name, nil
}

// Subscribe creates (or joins) the durable consumer of the subscription's group and
// starts pulling its messages.
func (p *PubSub) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	if err := checkTopic(req.Topic, true); err != nil {
		return err
	}
	js, err := p.client()
	if err != nil {
		return err
	}
	group := p.opts.group(req, p.appID)
	if group == "" {
		return fmt.Errorf("subscribe to topic %q: no consumer group: set consumerID in the subscription, or durableName, queueGroupName or consumerID in the component", req.Topic)
	}
	s := &subscription{
		p:     p,
		js:    js,
		topic: req.Topic,
		group: group,
		h:     h,
		limit: p.opts.handlerLimit(req),
		log:   p.log.WithValues("topic", req.Topic, "group", group),
	}
	it, err := s.open(ctx)
	if err != nil {
		return err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		it.Stop()
		return fmt.Errorf("%s %q is closed", TypeName, p.name)
	}
	subCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		defer stop()
		s.run(subCtx, it)
	}()
	return nil
}

// Close ends every subscription, waits for the handler calls in flight to return and
// their messages to be acknowledged or nak'ed, and closes the connection.
func (p *PubSub) Close() error {
	p.mu.Lock()
	p.closed = true
	nc := p.nc
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	if nc != nil {
		// Close flushes what is buffered, the last naks among it.
		nc.Close()
	}
	return nil
}

// String names the component in logs.
func (p *PubSub) String() string { return fmt.Sprintf("%s(%s)", TypeName, p.name) }

// subscription is one Subscribe call's consumer and workers.
type subscription struct {
	p     *PubSub
	js    jetstream.JetStream
	topic string
	group string
	h     pubsub.Handler
	limit int
	log   logr.Logger
}

// open makes sure the stream and the group's consumer exist and starts pulling, at most
// limit messages ahead so that a busy instance does not hoard the group's messages.
func (s *subscription) open(ctx context.Context) (jetstream.MessagesContext, error) {
	stream, err := s.p.stream(ctx, s.js, s.topic)
	if err != nil {
		return nil, err
	}
	name := consumerName(s.group, s.topic)
	cons, err := s.js.CreateOrUpdateConsumer(ctx, stream, s.p.opts.consumerConfig(name, s.topic))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s.p.streams.Delete(s.topic)
		}
		return nil, fmt.Errorf("subscribe to topic %q: create consumer %q of group %q on stream %q: %w", s.topic, name, s.group, stream, err)
	}
	mopts := []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(s.limit)}
	if hb := s.p.opts.Heartbeat; hb > 0 {
		mopts = append(mopts, jetstream.PullExpiry(max(jetstream.DefaultExpires, 2*hb)), jetstream.PullHeartbeat(hb))
	}
	it, err := cons.Messages(mopts...)
	if err != nil {
		return nil, fmt.Errorf("subscribe to topic %q: pull from consumer %q on stream %q: %w", s.topic, name, stream, err)
	}
	return it, nil
}

// run hands the messages to the handler until ctx ends, restoring the subscription
// if its consumer goes away underneath it, and returns once every handler call has
// returned.
func (s *subscription) run(ctx context.Context, it jetstream.MessagesContext) {
	sem := make(chan struct{}, s.limit)
	var handlers sync.WaitGroup
	defer handlers.Wait()
	wait := minRetryWait
	for {
		delivered, why := s.consume(ctx, it, sem, &handlers)
		if ctx.Err() != nil {
			return
		}
		s.log.Info("Restoring the subscription", "reason", why.Error())
		if delivered {
			wait = minRetryWait
		}
		for {
			// A subscription that worked is restored at once; one that ended before
			// delivering anything, or could not be restored, waits longer each time,
			// so that a server that keeps refusing it is not hammered.
			if !delivered {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				wait = min(2*wait, maxRetryWait)
			}
			var err error
			if it, err = s.open(ctx); err == nil {
				break
			}
			s.log.Error(err, "Cannot restore the subscription", "retryIn", wait.String())
			delivered = false
		}
	}
}

// consume runs one iterator until ctx ends (it then returns a nil error) or the
// iterator stops delivering (it returns why); it reports whether it delivered any
// message.
func (s *subscription) consume(ctx context.Context, it jetstream.MessagesContext, sem chan struct{}, handlers *sync.WaitGroup) (delivered bool, _ error) {
	for {
		// Take a worker slot before taking a message, so that no message waits for one.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			s.drain(it)
			return delivered, nil
		}
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			<-sem
			switch {
			case ctx.Err() != nil:
				s.drain(it)
				return delivered, nil
			case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrBadRequest):
				// The consumer or its stream was deleted, or the pull was refused; the
				// iterator has stopped.
				return delivered, err
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				// Connected, yet the server does not serve the pull requests: the
				// consumer can be gone without the server saying so (a deletion that
				// failed half-way). Opening again recreates it if so.
				it.Stop()
				return delivered, err
			}
			s.log.Info("Pulling messages failed", "error", err.Error())
			continue
		}
		if ctx.Err() != nil {
			<-sem
			s.release(msg)
			s.drain(it)
			return delivered, nil
		}
		delivered = true
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer func() { <-sem }()
			s.handle(ctx, msg)
		}()
	}
}

// drain stops pulling and naks what was pulled but never handed to the handler.
func (s *subscription) drain(it jetstream.MessagesContext) {
	it.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return
		}
		s.release(msg)
	}
}

// release hands a message that was pulled but not handled back to the group.
func (s *subscription) release(msg jetstream.Msg) {
	if s.p.opts.ackPolicy != jetstream.AckNonePolicy {
		_ = msg.Nak()
	}
}

// handle runs the handler on one message and settles it with the server.
func (s *subscription) handle(ctx context.Context, msg jetstream.Msg) {
	m := &pubsub.Message{
		Topic: s.topic,
		Data:  msg.Data(),
		// Dapr reports the subject the message was published to, which differs from
		// the topic when the subscription holds a wildcard.
		Metadata: map[string]string{"Topic": msg.Subject()},
	}
	if h := msg.Headers(); h != nil {
		m.ContentType = h.Get("Content-Type")
	}
	err := s.h(ctx, m)
	if s.p.opts.ackPolicy == jetstream.AckNonePolicy {
		return
	}
	if err != nil {
		s.nak(ctx, msg, err)
		return
	}
	// Wait for the server to confirm: an ack merely sent may be lost with the
	// connection, and a caller that closes the component right after a handler
	// returned must not see that message again.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		s.log.Error(err, "Acknowledging a handled message failed; it will be delivered again", "subject", msg.Subject())
	}
}

func (s *subscription) nak(ctx context.Context, msg jetstream.Msg, handlerErr error) {
	var delay time.Duration
	// A handler interrupted by the end of its subscription did not fail: let another
	// consumer of the group have the message at once.
	if ctx.Err() == nil {
		var delivered uint64 = 1
		if md, err := msg.Metadata(); err == nil {
			delivered = md.NumDelivered
		}
		delay = s.p.opts.nakDelay(delivered)
		s.log.V(1).Info("Handler failed; the message will be delivered again", "subject", msg.Subject(), "error", handlerErr.Error(), "delay", delay.String())
	}
	var err error
	if delay > 0 {
		err = msg.NakWithDelay(delay)
	} else {
		err = msg.Nak()
	}
	if err != nil {
		s.log.Error(err, "Nak failed; the message will be delivered again after ackWait", "subject", msg.Subject())
	}
}
