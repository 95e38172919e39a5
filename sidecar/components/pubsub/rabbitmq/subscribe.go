package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// Subscription metadata Dapr's component reads.
const (
	mdQueueName            = "queueName"
	mdQueueType            = "queueType"
	mdMaxPriority          = "maxPriority"
	mdSingleActiveConsumer = "singleActiveConsumer"
	mdMaxLen               = "maxLen"
	mdMaxLenBytes          = "maxLenBytes"
)

// subscription is one Subscribe call: its queue, its handler, and the channel it
// consumes on, which it opens again after every reconnect.
type subscription struct {
	p           *PubSub
	topic       string
	queue       string
	routingKeys []string
	args        amqp.Table
	prefetch    int
	h           pubsub.Handler
	log         logr.Logger

	ctx      context.Context // ends with the Subscribe ctx or Close
	sem      chan struct{}   // bounds handler calls, across reconnects too
	handlers sync.WaitGroup  // handler calls and channel retirements in flight
}

// Subscribe consumes the topic as the request's consumer group (its consumerID, else
// the component's, else the app id) on the queue <consumerID>-<topic>, or the
// subscription's queueName. It returns once the queue is bound and consumed from.
func (p *PubSub) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	p.mu.Lock()
	if err := p.usableLocked(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: subscribe to topic %q: %w", TypeName, req.Topic, err)
	}
	// Added under mu, so that Close either sees it or this sees closed.
	p.wg.Add(1)
	p.mu.Unlock()
	sub, err := p.newSubscription(req, h)
	if err != nil {
		p.wg.Done()
		return fmt.Errorf("%s: subscribe to topic %q: %w", TypeName, req.Topic, err)
	}

	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	sub.ctx = sctx
	s, ch, deliveries, err := sub.start()
	if err != nil {
		stop()
		cancel()
		p.wg.Done()
		return fmt.Errorf("%s: subscribe to topic %q (queue %q) on %s: %w", TypeName, req.Topic, sub.queue, p.opts.broker, err)
	}
	go func() {
		defer p.wg.Done()
		defer stop()
		defer cancel()
		sub.run(s, ch, deliveries)
	}()
	return nil
}

// newSubscription reads the request's metadata.
func (p *PubSub) newSubscription(req pubsub.SubscribeRequest, h pubsub.Handler) (*subscription, error) {
	if req.Topic == "" {
		return nil, errors.New("the topic is empty")
	}
	if h == nil {
		return nil, errors.New("the handler is nil")
	}
	md := req.Metadata
	group := p.opts.ConsumerID
	if v := md[pubsub.ConsumerIDKey]; v != "" {
		group = v
	}
	queue := md[mdQueueName]
	if queue == "" {
		if group == "" {
			return nil, errors.New(`no consumer group: set metadata "consumerID" on the component or the subscription, or "queueName" on the subscription`)
		}
		queue = group + "-" + req.Topic
	}
	keys := []string{""}
	if v := md[mdRoutingKey]; v != "" {
		keys = keys[:0]
		for k := range strings.SplitSeq(v, ",") {
			keys = append(keys, strings.TrimSpace(k))
		}
	}
	args, err := p.opts.subscriptionArgs(md)
	if err != nil {
		return nil, err
	}
	concurrency := req.Concurrency()
	if p.opts.single {
		concurrency = 1
	}
	// Dapr sets no prefetch limit unless prefetchCount is given. Outrigger uses the
	// subscription's concurrency instead: the semaphore would hold any more messages
	// unacknowledged here, where the group's other consumers cannot have them.
	prefetch := int(p.opts.PrefetchCount)
	if prefetch == 0 {
		prefetch = concurrency
	}
	return &subscription{
		p:           p,
		topic:       req.Topic,
		queue:       queue,
		routingKeys: keys,
		args:        args,
		prefetch:    prefetch,
		h:           h,
		log:         p.log.WithValues("topic", req.Topic, "queue", queue),
		sem:         make(chan struct{}, concurrency),
	}, nil
}

// subscriptionArgs are the queue arguments of a subscription: the component's maxLen
// and maxLenBytes, overridden by the subscription's, its queueType (classic unless
// given, as Dapr declares it), maxPriority and singleActiveConsumer.
func (o *options) subscriptionArgs(md map[string]string) (amqp.Table, error) {
	args := o.queueArgs()
	var errs []error
	for _, f := range []struct{ key, arg string }{{mdMaxLen, argMaxLength}, {mdMaxLenBytes, argMaxLengthBytes}} {
		if v := md[f.key]; v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				errs = append(errs, fmt.Errorf("metadata %q: %q is not a non-negative whole number", f.key, v))
				continue
			}
			args[f.arg] = n
		}
	}
	if v := md[mdMaxPriority]; v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("metadata %q: %q is not a non-negative whole number", mdMaxPriority, v))
		} else {
			// Dapr caps it at 255, as AMQP priorities are one byte.
			args[argMaxPriority] = uint8(min(n, math.MaxUint8))
		}
	}
	switch v := md[mdQueueType]; v {
	case "":
		args[amqp.QueueTypeArg] = amqp.QueueTypeClassic
	case amqp.QueueTypeClassic, amqp.QueueTypeQuorum:
		args[amqp.QueueTypeArg] = v
	default:
		errs = append(errs, fmt.Errorf("metadata %q: %q must be %q or %q", mdQueueType, v, amqp.QueueTypeClassic, amqp.QueueTypeQuorum))
	}
	if v := md[mdSingleActiveConsumer]; v != "" {
		on, err := metadata.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("metadata %q: %q %w", mdSingleActiveConsumer, v, err))
		} else if on {
			args[argSingleActiveConsumer] = true
		}
	}
	return args, errors.Join(errs...)
}

// start sets the subscription up for the first time, waiting a while for the broker
// if it is being reconnected.
func (s *subscription) start() (*session, *amqp.Channel, <-chan amqp.Delivery, error) {
	ctx, cancel := context.WithTimeout(s.ctx, subscribeTimeout)
	defer cancel()
	for {
		sess, err := s.p.waitSession(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		ch, deliveries, err := s.setup(sess)
		if err == nil {
			return sess, ch, deliveries, nil
		}
		if !sess.conn.IsClosed() {
			// The broker refused something (a queue declared with other arguments, say):
			// trying again will not help.
			return nil, nil, nil, err
		}
	}
}

// setup declares the topic's exchange and the group's queue (and its dead-letter
// exchange and queue with enableDeadLetter), binds them, and starts consuming, on a
// channel of its own so that its prefetch and any channel error stay its own.
func (s *subscription) setup(sess *session) (*amqp.Channel, <-chan amqp.Delivery, error) {
	o := &s.p.opts
	ch, err := sess.conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("open a channel: %w", err)
	}
	fail := func(step string, err error) (*amqp.Channel, <-chan amqp.Delivery, error) {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("%s: %w", step, err)
	}
	if err := ch.ExchangeDeclare(s.topic, o.ExchangeKind, o.Durable, o.DeletedWhenUnused, false, false, nil); err != nil {
		return fail(fmt.Sprintf("declare exchange %q", s.topic), err)
	}
	args := maps.Clone(s.args)
	if o.EnableDeadLetter {
		dlx, dlq := "dlx-"+s.queue, "dlq-"+s.queue
		// As in Dapr: the dead-letter exchange and queue are durable whatever "durable"
		// says, and the queue is lazy, to keep what may pile up there on disk.
		if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout, true, o.DeletedWhenUnused, false, false, nil); err != nil {
			return fail(fmt.Sprintf("declare dead-letter exchange %q", dlx), err)
		}
		dlqArgs := o.queueArgs()
		dlqArgs[argQueueMode] = "lazy"
		if _, err := ch.QueueDeclare(dlq, true, o.DeletedWhenUnused, false, false, dlqArgs); err != nil {
			return fail(fmt.Sprintf("declare dead-letter queue %q", dlq), err)
		}
		if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
			return fail(fmt.Sprintf("bind dead-letter queue %q", dlq), err)
		}
		args[argDeadLetterExchange] = dlx
	}
	if _, err := ch.QueueDeclare(s.queue, o.Durable, o.DeletedWhenUnused, false, false, args); err != nil {
		return fail(fmt.Sprintf("declare queue %q", s.queue), err)
	}
	if err := ch.Qos(s.prefetch, 0, false); err != nil {
		return fail("set the prefetch count", err)
	}
	for _, key := range s.routingKeys {
		if err := ch.QueueBind(s.queue, key, s.topic, false, nil); err != nil {
			return fail(fmt.Sprintf("bind queue %q to exchange %q with routing key %q", s.queue, s.topic, key), err)
		}
	}
	deliveries, err := ch.Consume(s.queue, "", o.AutoAck, false, false, false, nil)
	if err != nil {
		return fail(fmt.Sprintf("consume queue %q", s.queue), err)
	}
	return ch, deliveries, nil
}

// run consumes until the subscription ends, setting up again whenever the channel or
// the connection is lost.
func (s *subscription) run(sess *session, ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	defer s.handlers.Wait()
	wait := s.p.opts.ReconnectWait
	for {
		s.consume(ch, deliveries)
		for {
			if s.ctx.Err() != nil {
				return
			}
			// With the connection still up, only this channel or consumer ended (the
			// broker cancels a consumer whose queue was deleted); pause before trying
			// again rather than spin. A lost connection is paced by the reconnect loop.
			if !sess.conn.IsClosed() && !sleep(s.ctx, wait) {
				return
			}
			var err error
			if sess, err = s.p.waitSession(s.ctx); err != nil {
				return
			}
			if ch, deliveries, err = s.setup(sess); err == nil {
				s.log.Info("Resubscribed")
				break
			}
			s.log.Error(err, "Cannot resubscribe, trying again", "wait", wait)
		}
	}
}

// consume hands deliveries to the handler, at most cap(sem) at a time, until the
// delivery channel closes or the subscription ends; then it retires the channel.
func (s *subscription) consume(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	var inFlight sync.WaitGroup
	defer s.retire(ch, &inFlight)
	for s.ctx.Err() == nil {
		var d amqp.Delivery
		select {
		case <-s.ctx.Done():
			return
		case got, ok := <-deliveries:
			if !ok {
				return
			}
			d = got
		}
		if s.ctx.Err() != nil {
			// Both were ready and the delivery won: it stays unacknowledged, and closing
			// the channel requeues it.
			return
		}
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			// d stays unacknowledged; closing the channel requeues it.
			return
		}
		inFlight.Add(1)
		s.handlers.Add(1)
		go func() {
			defer s.handlers.Done()
			defer inFlight.Done()
			defer func() { <-s.sem }()
			s.handle(d)
		}()
	}
}

// retire closes a channel once the handler calls of its deliveries have returned, so
// that their acks still reach it; the broker requeues whatever it holds unacknowledged
// when it closes.
func (s *subscription) retire(ch *amqp.Channel, inFlight *sync.WaitGroup) {
	s.handlers.Add(1)
	go func() {
		defer s.handlers.Done()
		inFlight.Wait()
		_ = ch.Close()
	}()
}

// handle calls the handler and settles the delivery: ack when it returns nil, nack
// otherwise.
func (s *subscription) handle(d amqp.Delivery) {
	msg := &pubsub.Message{Topic: s.topic, Data: d.Body, ContentType: d.ContentType}
	if s.p.opts.PublishMessagePropertiesToMetadata {
		msg.Metadata = deliveryMetadata(d)
	}
	err := s.h(s.ctx, msg)
	if s.p.opts.AutoAck {
		if err != nil {
			s.log.Error(err, "Handler failed on an auto-acknowledged message, which is lost")
		}
		return
	}
	if err == nil {
		if err := d.Ack(false); err != nil {
			s.log.V(1).Info("Cannot acknowledge a message; the broker will deliver it again", "error", err.Error())
		}
		return
	}
	if s.ctx.Err() != nil {
		// The subscription is ending and the handler gave up on the message rather than
		// judging it: leave it unacknowledged, and closing the channel requeues it for
		// the group's next consumer whatever requeueInFailure says.
		return
	}
	// The pub/sub building block has already retried the message in-process under its
	// resiliency policy before returning this error, so this nack is the final verdict.
	// As in Dapr, requeueInFailure=false (its default) lets the broker drop the message,
	// or move it to the dead-letter queue with enableDeadLetter; true puts it back on
	// the queue at once.
	if err := d.Nack(false, s.p.opts.RequeueInFailure); err != nil {
		s.log.V(1).Info("Cannot reject a message; the broker will deliver it again", "error", err.Error())
	}
}

// deliveryMetadata is what Dapr reports of a message with
// publishMessagePropertiesToMetadata: its AMQP properties and headers.
func deliveryMetadata(d amqp.Delivery) map[string]string {
	md := map[string]string{}
	if d.MessageId != "" {
		md["messageid"] = d.MessageId
	}
	if d.CorrelationId != "" {
		md["correlationid"] = d.CorrelationId
	}
	if d.Type != "" {
		md["type"] = d.Type
	}
	if d.ContentType != "" {
		md["contenttype"] = d.ContentType
	}
	for k, v := range d.Headers {
		switch v := v.(type) {
		case nil:
		case string:
			md[k] = v
		case []byte:
			md[k] = string(v)
		default:
			md[k] = fmt.Sprint(v)
		}
	}
	return md
}
