package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// Request metadata Dapr's component reads when publishing.
const (
	mdRoutingKey    = "routingKey"
	mdTTLInSeconds  = "ttlInSeconds"
	mdPriority      = "priority"
	mdContentType   = "contentType"
	mdMessageID     = "messageID"
	mdCorrelationID = "correlationID"
	mdType          = "type"
)

// publisher is the publishing channel of one session, in confirm mode.
type publisher struct {
	sess   *session
	ch     *amqp.Channel
	closes chan *amqp.Error // the channel's NotifyClose

	mu         sync.Mutex
	declared   map[string]bool // exchanges declared on this channel
	closeErr   *amqp.Error
	closeKnown bool
}

// Publish declares the topic's exchange and publishes the message to it, and returns
// once the broker has confirmed it.
//
// The channel is always in confirm mode, whatever publisherConfirm says. Without a
// confirm, basic.publish is fire-and-forget: it returns once the frame is written to the
// socket, and a message in a buffer when the connection drops, or one the broker fails
// to enqueue, is lost with no error, which breaks the contract that Publish returns
// once the broker has the message. The price is one round trip per message; Dapr with
// publisherConfirm=true pays the same. As in Dapr, the message is not mandatory: the
// broker confirms and drops a message whose exchange has no queue bound, as a topic
// with no subscriber drops it.
//
// A broker that cannot be reached fails the call at once with an error naming it; the
// pub/sub building block's resiliency policy decides whether to try again. Nothing
// waits past ctx.
func (p *PubSub) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	if req.Topic == "" {
		return fmt.Errorf("%s: publish: the topic is empty", TypeName)
	}
	msg := p.publishing(req)
	key, _ := lookup(req.Metadata, mdRoutingKey)
	done := make(chan error, 1)
	// amqp091-go's declare and publish calls take no context; a broker that stops
	// reading (a resource alarm blocks publishers) must not hold the caller past ctx.
	go func() { done <- p.publish(ctx, req.Topic, key, msg) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("%s: publish to topic %q on %s: %w", TypeName, req.Topic, p.opts.broker, err)
	}
	return nil
}

func (p *PubSub) publish(ctx context.Context, topic, key string, msg amqp.Publishing) error {
	for attempt := 0; ; attempt++ {
		pub, err := p.publisher(ctx)
		if err != nil {
			return err
		}
		err = pub.publish(ctx, p.opts, topic, key, msg)
		if err == nil {
			return nil
		}
		// The broker closes the channel on a channel error: most often the exchange was
		// declared here and has since been auto-deleted (deletedWhenUnused) with its
		// last queue, or another publish on the channel failed. A new channel declares
		// the exchange again; the connection itself must still be up.
		if attempt == 0 && ctx.Err() == nil && pub.ch.IsClosed() && !pub.sess.conn.IsClosed() {
			continue
		}
		return err
	}
}

// publisher returns the current session's publishing channel, opening it if needed.
func (p *PubSub) publisher(ctx context.Context) (*publisher, error) {
	usable := func() (*session, *publisher, error) {
		s, err := p.current()
		if err != nil {
			return nil, nil, err
		}
		p.mu.Lock()
		pub := p.pub
		p.mu.Unlock()
		if pub != nil && pub.sess == s && !pub.ch.IsClosed() {
			return s, pub, nil
		}
		return s, nil, nil
	}
	if _, pub, err := usable(); err != nil || pub != nil {
		return pub, err
	}
	select {
	case p.pubOpen <- struct{}{}:
		defer func() { <-p.pubOpen }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Another Publish may have opened it while this one waited.
	s, pub, err := usable()
	if err != nil || pub != nil {
		return pub, err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open a channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("put the channel in confirm mode: %w", err)
	}
	pub = &publisher{sess: s, ch: ch, closes: ch.NotifyClose(make(chan *amqp.Error, 1)), declared: map[string]bool{}}
	p.mu.Lock()
	if p.sess == s && !p.closed {
		p.pub = pub
	}
	p.mu.Unlock()
	return pub, nil
}

func (pub *publisher) publish(ctx context.Context, o options, topic, key string, msg amqp.Publishing) error {
	if err := pub.declare(o, topic); err != nil {
		return pub.explain(fmt.Errorf("declare exchange %q: %w", topic, err))
	}
	confirm, err := pub.ch.PublishWithDeferredConfirmWithContext(ctx, topic, key, false, false, msg)
	if err != nil {
		return pub.explain(err)
	}
	acked, err := confirm.WaitContext(ctx)
	switch {
	case err != nil:
		return err
	case !acked:
		return pub.explain(errors.New("the broker did not confirm the message"))
	}
	return nil
}

// declare declares the topic's exchange once per channel; a new channel (after a
// reconnect, or a channel error) declares again, in case the broker lost it.
func (pub *publisher) declare(o options, topic string) error {
	pub.mu.Lock()
	done := pub.declared[topic]
	pub.mu.Unlock()
	if done {
		return nil
	}
	if err := pub.ch.ExchangeDeclare(topic, o.ExchangeKind, o.Durable, o.DeletedWhenUnused, false, false, nil); err != nil {
		return err
	}
	pub.mu.Lock()
	pub.declared[topic] = true
	pub.mu.Unlock()
	return nil
}

// explain adds why the broker closed the channel, when it did: a publish to a deleted
// exchange only shows as a missing confirm otherwise.
func (pub *publisher) explain(err error) error {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if !pub.closeKnown {
		select {
		case e, ok := <-pub.closes:
			pub.closeKnown = true
			if ok {
				pub.closeErr = e
			}
		default:
		}
	}
	if pub.closeErr != nil && !errors.Is(err, pub.closeErr) {
		return fmt.Errorf("%w: the broker closed the channel: %w", err, pub.closeErr)
	}
	return err
}

// publishing builds the AMQP message as Dapr does: content type text/plain unless the
// request says otherwise, the component's deliveryMode, and the request metadata's
// ttlInSeconds, priority, messageID, correlationID and type.
func (p *PubSub) publishing(req *pubsub.PublishRequest) amqp.Publishing {
	msg := amqp.Publishing{
		ContentType:  req.ContentType,
		Body:         req.Data,
		DeliveryMode: p.opts.DeliveryMode,
	}
	if msg.ContentType == "" {
		msg.ContentType = "text/plain"
	}
	md := req.Metadata
	if v, ok := lookup(md, mdContentType); ok {
		msg.ContentType = v
	}
	if v, ok := lookup(md, mdMessageID); ok {
		msg.MessageId = v
	}
	if v, ok := lookup(md, mdCorrelationID); ok {
		msg.CorrelationId = v
	}
	if v, ok := lookup(md, mdType); ok {
		msg.Type = v
	}
	// Dapr logs an unreadable ttlInSeconds or priority and publishes without it; apps
	// that rely on that keep working.
	ttl := p.opts.ttl
	if v, ok := lookup(md, mdTTLInSeconds); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			ttl = secondsToDuration(n)
		} else {
			p.log.Info("Ignoring an invalid ttlInSeconds", "topic", req.Topic, "ttlInSeconds", v)
		}
	}
	if ttl > 0 {
		// RabbitMQ takes a per-message TTL in milliseconds, as text.
		msg.Expiration = strconv.FormatInt(ttl.Milliseconds(), 10)
	}
	if v, ok := lookup(md, mdPriority); ok {
		if n, err := strconv.Atoi(v); err == nil {
			msg.Priority = uint8(min(max(n, 0), math.MaxUint8))
		} else {
			p.log.Info("Ignoring an invalid priority", "topic", req.Topic, "priority", v)
		}
	}
	return msg
}

// lookup finds a metadata value by name, case-insensitively as Dapr's component does.
func lookup(md map[string]string, name string) (string, bool) {
	if v, ok := md[name]; ok && v != "" {
		return v, true
	}
	for k, v := range md {
		if v != "" && strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}
