package jetstream

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// options are the component's metadata, with the names of Dapr's pubsub.jetstream
// (components-contrib pubsub/jetstream/metadata.go). Durations read a bare number as
// seconds, as Dapr's metadata decoder does.
type options struct {
	NatsURL string `metadata:"natsURL" required:"true"`

	JWT     string `metadata:"jwt"`
	SeedKey string `metadata:"seedKey"`
	Token   string `metadata:"token"`
	// TLSClientCert and TLSClientKey are file paths, as Dapr passes them to nats.ClientCert.
	TLSClientCert string `metadata:"tls_client_cert"`
	TLSClientKey  string `metadata:"tls_client_key"`

	// Name is the NATS client name, shown by the server's monitoring.
	Name string `metadata:"name" default:"outrigger - pubsub.jetstream"`

	StreamName     string `metadata:"streamName"`
	DurableName    string `metadata:"durableName"`
	QueueGroupName string `metadata:"queueGroupName"`
	ConsumerID     string `metadata:"consumerID"`

	StartSequence uint64 `metadata:"startSequence"`
	// StartTime is a Unix time in seconds.
	StartTime     *uint64 `metadata:"startTime"`
	DeliverAll    bool    `metadata:"deliverAll"`
	DeliverPolicy string  `metadata:"deliverPolicy"`
	AckPolicy     string  `metadata:"ackPolicy"`

	AckWait       time.Duration `metadata:"ackWait" unit:"s"`
	MaxDeliver    int           `metadata:"maxDeliver"`
	BackOff       []string      `metadata:"backOff"`
	MaxAckPending int           `metadata:"maxAckPending"`
	Replicas      int           `metadata:"replicas"`
	MemoryStorage bool          `metadata:"memoryStorage"`
	Heartbeat     time.Duration `metadata:"heartbeat" unit:"s"`
	// FlowControl and RateLimit configure push consumers in Dapr. Outrigger consumes
	// with pull consumers, which have neither (the server rejects them), so they are
	// accepted for manifests written for Dapr and have no effect.
	FlowControl bool   `metadata:"flowControl"`
	RateLimit   uint64 `metadata:"rateLimit"`

	Domain    string `metadata:"domain"`
	APIPrefix string `metadata:"apiPrefix"`

	// Concurrency is Dapr's "single" or "parallel" (see handlerLimit). Dapr's component
	// reads it as "concurrency" and, overriding that, as the common "concurrencyMode".
	Concurrency     string `metadata:"concurrency"`
	ConcurrencyMode string `metadata:"concurrencyMode"`

	deliverPolicy jetstream.DeliverPolicy
	ackPolicy     jetstream.AckPolicy
	backOff       []time.Duration
	startTime     *time.Time
}

func parseOptions(md components.Metadata) (options, error) {
	var o options
	if err := metadata.Decode(md.Properties, &o); err != nil {
		return o, err
	}
	return o, o.validate()
}

// validate is a chain of small checks, each naming the property at fault; it also
// fills the derived fields.
func (o *options) validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(o.validateURL())
	add(o.validateAuth())
	add(o.parseDeliverPolicy())
	add(o.parseAckPolicy())
	add(o.parseBackOff())
	add(o.validateConsumerLimits())
	for name, v := range map[string]string{"concurrency": o.Concurrency, "concurrencyMode": o.ConcurrencyMode} {
		switch strings.ToLower(v) {
		case "", "single", "parallel":
		default:
			errs = append(errs, fmt.Errorf(`metadata %q: %q must be "single" or "parallel"`, name, v))
		}
	}
	if o.Domain != "" && o.APIPrefix != "" {
		errs = append(errs, errors.New(`metadata "domain" and "apiPrefix" cannot both be set: a domain implies its API prefix`))
	}
	return errors.Join(errs...)
}

func (o *options) validateURL() error {
	for _, u := range strings.Split(o.NatsURL, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if _, err := url.Parse(u); err != nil {
			return fmt.Errorf(`metadata "natsURL": %q is not a URL`, redactURL(u))
		}
	}
	return nil
}

func (o *options) validateAuth() error {
	var errs []error
	if (o.JWT == "") != (o.SeedKey == "") {
		errs = append(errs, errors.New(`metadata "jwt" and "seedKey" must be set together`))
	}
	if (o.TLSClientCert == "") != (o.TLSClientKey == "") {
		errs = append(errs, errors.New(`metadata "tls_client_cert" and "tls_client_key" must be set together`))
	}
	return errors.Join(errs...)
}

func (o *options) parseDeliverPolicy() error {
	policy := strings.ToLower(o.DeliverPolicy)
	if o.DeliverAll {
		if policy != "" && policy != "all" {
			return fmt.Errorf(`metadata "deliverAll" is true but "deliverPolicy" is %q`, o.DeliverPolicy)
		}
		policy = "all"
	}
	// Dapr's default is all: a new consumer group starts at the stream's first message.
	switch policy {
	case "", "all":
		o.deliverPolicy = jetstream.DeliverAllPolicy
	case "last":
		o.deliverPolicy = jetstream.DeliverLastPolicy
	case "new":
		o.deliverPolicy = jetstream.DeliverNewPolicy
	case "sequence":
		o.deliverPolicy = jetstream.DeliverByStartSequencePolicy
	case "time":
		o.deliverPolicy = jetstream.DeliverByStartTimePolicy
	default:
		return fmt.Errorf(`metadata "deliverPolicy": %q must be one of all, last, new, sequence, time`, o.DeliverPolicy)
	}
	// Dapr sends a start sequence or time whatever the policy, and the server then
	// refuses the consumer at subscribe time; say so at Init instead.
	var errs []error
	switch {
	case o.deliverPolicy == jetstream.DeliverByStartSequencePolicy && o.StartSequence == 0:
		errs = append(errs, errors.New(`metadata "startSequence" is required when "deliverPolicy" is "sequence"`))
	case o.deliverPolicy != jetstream.DeliverByStartSequencePolicy && o.StartSequence != 0:
		errs = append(errs, fmt.Errorf(`metadata "startSequence" is set, but "deliverPolicy" is %q, not "sequence"`, o.DeliverPolicy))
	}
	switch {
	case o.deliverPolicy == jetstream.DeliverByStartTimePolicy && o.StartTime == nil:
		errs = append(errs, errors.New(`metadata "startTime" (Unix seconds) is required when "deliverPolicy" is "time"`))
	case o.deliverPolicy != jetstream.DeliverByStartTimePolicy && o.StartTime != nil && *o.StartTime != 0:
		errs = append(errs, fmt.Errorf(`metadata "startTime" is set, but "deliverPolicy" is %q, not "time"`, o.DeliverPolicy))
	}
	if o.deliverPolicy == jetstream.DeliverByStartTimePolicy && o.StartTime != nil {
		t := time.Unix(int64(*o.StartTime), 0)
		o.startTime = &t
	}
	return errors.Join(errs...)
}

func (o *options) parseAckPolicy() error {
	switch strings.ToLower(o.AckPolicy) {
	case "", "explicit":
		o.ackPolicy = jetstream.AckExplicitPolicy
	case "all":
		// An AckAll consumer takes each ack for every earlier message too, which would
		// acknowledge messages whose handler failed or is still running on another
		// worker or replica. The contract is that only a handled message is
		// acknowledged, so "all" is accepted for manifests written for Dapr and runs as
		// explicit.
		o.ackPolicy = jetstream.AckExplicitPolicy
	case "none":
		// The user's choice of at-most-once delivery: the server forgets a message once
		// it is sent, whatever the handler returns.
		o.ackPolicy = jetstream.AckNonePolicy
	default:
		return fmt.Errorf(`metadata "ackPolicy": %q must be one of explicit, all, none`, o.AckPolicy)
	}
	return nil
}

// parseBackOff reads a comma-separated list of durations, a bare number being seconds
// as in Dapr.
func (o *options) parseBackOff() error {
	o.backOff = nil
	for _, s := range o.BackOff {
		d, err := time.ParseDuration(s)
		if err != nil {
			n, nerr := strconv.ParseInt(s, 10, 64)
			if nerr != nil {
				return fmt.Errorf(`metadata "backOff": %q is not a duration such as "5s" or a number of seconds`, s)
			}
			d = time.Duration(n) * time.Second
		}
		if d <= 0 {
			return fmt.Errorf(`metadata "backOff": %q must be positive`, s)
		}
		o.backOff = append(o.backOff, d)
	}
	return nil
}

func (o *options) validateConsumerLimits() error {
	var errs []error
	if o.AckWait < 0 {
		errs = append(errs, fmt.Errorf(`metadata "ackWait": %s must not be negative`, o.AckWait))
	}
	if o.MaxDeliver < -1 {
		errs = append(errs, fmt.Errorf(`metadata "maxDeliver": %d must be positive, or -1 for no limit`, o.MaxDeliver))
	}
	// The server refuses a back-off list unless every delivery it schedules is
	// bounded by maxDeliver.
	if len(o.backOff) > 0 && (o.MaxDeliver <= 0 || o.MaxDeliver <= len(o.backOff)) {
		errs = append(errs, fmt.Errorf(`metadata "backOff" has %d intervals, so "maxDeliver" must be set above %d`, len(o.backOff), len(o.backOff)))
	}
	if o.MaxAckPending < -1 {
		errs = append(errs, fmt.Errorf(`metadata "maxAckPending": %d must be positive, or -1 for no limit`, o.MaxAckPending))
	}
	if o.Replicas < 0 {
		errs = append(errs, fmt.Errorf(`metadata "replicas": %d must not be negative`, o.Replicas))
	}
	if o.Heartbeat != 0 && (o.Heartbeat < 500*time.Millisecond || o.Heartbeat > 30*time.Second) {
		errs = append(errs, fmt.Errorf(`metadata "heartbeat": %s must be between 500ms and 30s`, o.Heartbeat))
	}
	return errors.Join(errs...)
}

// group is the consumer group a subscription joins: the request's consumerID, else the
// component's durableName, queueGroupName or consumerID, else the app id. Dapr's
// component reads durableName and queueGroupName; its runtime fills consumerID with
// the app id when a manifest sets none, so that comes after them.
func (o *options) group(req pubsub.SubscribeRequest, appID string) string {
	for _, g := range []string{req.Metadata[pubsub.ConsumerIDKey], o.DurableName, o.QueueGroupName, o.ConsumerID, appID} {
		if g != "" {
			return g
		}
	}
	return ""
}

// handlerLimit bounds a subscription's concurrent handler calls. Dapr's "single"
// handles one message at a time; as Dapr's default it would override every
// subscription's own bound, so only an explicit "single" does.
func (o *options) handlerLimit(req pubsub.SubscribeRequest) int {
	mode := o.Concurrency
	if o.ConcurrencyMode != "" {
		mode = o.ConcurrencyMode
	}
	if strings.EqualFold(mode, "single") {
		return 1
	}
	return req.Concurrency()
}

// consumerConfig is the durable pull consumer of a group on a topic.
func (o *options) consumerConfig(name, topic string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "Outrigger pubsub.jetstream subscription to " + topic,
		FilterSubject: topic,
		DeliverPolicy: o.deliverPolicy,
		OptStartSeq:   o.StartSequence,
		OptStartTime:  o.startTime,
		AckPolicy:     o.ackPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		BackOff:       o.backOff,
		MaxAckPending: o.MaxAckPending,
		Replicas:      o.Replicas,
		MemoryStorage: o.MemoryStorage,
	}
}

// streamConfig is the stream Outrigger creates when none covers a topic. Interest
// retention keeps a message until every consumer group has acknowledged it, and drops
// a message no group listens to, so a stream made for convenience never grows without
// bound. Groups are durable consumers and outlive their subscribers, so a group that
// is away keeps its messages.
func (o *options) streamConfig(name, topic string) jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if o.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        name,
		Description: "Created by Outrigger pubsub.jetstream",
		Subjects:    []string{topic},
		Retention:   jetstream.InterestPolicy,
		Storage:     storage,
		Replicas:    max(o.Replicas, 1),
	}
}

// nakDelay is how long the server waits before delivering a failed message again:
// the back-off interval for this attempt, else ackWait (as Dapr does), else at once.
// The server applies backOff only to messages not acknowledged in time, never to
// naks, so the component picks the interval itself.
func (o *options) nakDelay(numDelivered uint64) time.Duration {
	if n := len(o.backOff); n > 0 {
		i := int(min(max(numDelivered, 1)-1, uint64(n-1)))
		return o.backOff[i]
	}
	return o.AckWait
}

// redactURL hides a URL's user information, for errors: NATS takes a token as the
// user name as well as a password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return "(not shown: it may hold credentials)"
		}
		return raw
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	return u.String()
}

// redactURLs redacts each URL of a comma-separated list.
func redactURLs(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = redactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}
