package rabbitmq

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

func TestOptionErrorsNameTheProperty(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props map[string]string
		want  string // a property the error must name
	}{
		{"bad exchange kind", map[string]string{"exchangeKind": "bogus"}, "exchangeKind"},
		{"delivery mode above 2", map[string]string{"deliveryMode": "3"}, "deliveryMode"},
		{"delivery mode not a number", map[string]string{"deliveryMode": "persistent"}, "deliveryMode"},
		{"prefetch count negative", map[string]string{"prefetchCount": "-1"}, "prefetchCount"},
		{"prefetch count over a byte", map[string]string{"prefetchCount": "256"}, "prefetchCount"},
		{"reconnect wait unreadable", map[string]string{"reconnectWaitSeconds": "soon"}, "reconnectWaitSeconds"},
		{"reconnect wait zero", map[string]string{"reconnectWaitSeconds": "0"}, "reconnectWaitSeconds"},
		{"heartbeat unreadable", map[string]string{"heartBeat": "often"}, "heartBeat"},
		{"durable not a boolean", map[string]string{"durable": "maybe"}, "durable"},
		{"concurrency mode", map[string]string{"concurrencyMode": "many"}, "concurrencyMode"},
		{"ttl not a number", map[string]string{"ttlInSeconds": "a minute"}, "ttlInSeconds"},
		{"ttl zero", map[string]string{"ttlInSeconds": "0"}, "ttlInSeconds"},
		{"max length negative", map[string]string{"maxLen": "-5"}, "maxLen"},
		{"protocol unknown", map[string]string{"protocol": "http"}, "protocol"},
		{"protocol differs from the connection string", map[string]string{"connectionString": "amqp://h", "protocol": "amqps"}, "protocol"},
		{"connection string not AMQP", map[string]string{"connectionString": "http://u:secret@h"}, "connectionString"},
		{"client cert without key", map[string]string{"clientCert": "x"}, "clientKey"},
		{"sasl external without certificates", map[string]string{"saslExternal": "true"}, "saslExternal"},
		{"ca cert not PEM", map[string]string{"protocol": "amqps", "caCert": "not a certificate"}, "caCert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New()
			err := p.Init(context.Background(), components.Metadata{Name: "rabbit", Type: TypeName, Properties: tc.props})
			if err == nil {
				t.Fatalf("Init accepted %v", tc.props)
			}
			if !strings.Contains(err.Error(), `"`+tc.want+`"`) {
				t.Errorf("the error does not name %q: %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the password: %v", err)
			}
			if err := p.Close(); err != nil {
				t.Errorf("close after a failed Init: %v", err)
			}
		})
	}
}

func TestOptionDefaultsAreDapr(t *testing.T) {
	o, err := parseOptions(components.Metadata{AppID: "app", Properties: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	want := options{
		Hostname: "localhost", Durable: true, DeletedWhenUnused: true, ExchangeKind: "fanout",
		ReconnectWait: 3 * time.Second, HeartBeat: 10 * time.Second, ConcurrencyMode: "parallel", ConsumerID: "app",
	}
	got := o
	got.uri, got.broker, got.tlsCfg = "", "", nil
	if got != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if o.uri != "amqp://localhost" || o.broker != "amqp://localhost:5672/" {
		t.Errorf("uri = %q, broker = %q", o.uri, o.broker)
	}
	if o.AutoAck || o.RequeueInFailure || o.PrefetchCount != 0 || o.single {
		t.Errorf("autoAck, requeueInFailure, prefetchCount or concurrency differ from Dapr's defaults: %+v", o)
	}
}

func TestOptionConnection(t *testing.T) {
	for _, tc := range []struct {
		name              string
		props             map[string]string
		wantURI, wantName string
		amqps             bool
	}{
		{"connection string", map[string]string{"connectionString": "amqp://u:p@rabbit:5673/v"}, "amqp://u:p@rabbit:5673/v", "amqp://rabbit:5673/v", false},
		{"deprecated host", map[string]string{"host": "amqp://u:p@rabbit"}, "amqp://u:p@rabbit", "amqp://rabbit:5672/", false},
		{"connection string wins over host", map[string]string{"connectionString": "amqp://a", "host": "amqp://b"}, "amqp://a", "amqp://a:5672/", false},
		{"parts", map[string]string{"hostname": "rabbit:5671", "username": "u", "password": "p", "protocol": "amqps"}, "amqps://u:p@rabbit:5671", "amqps://rabbit:5671/", true},
		{"user without password", map[string]string{"hostname": "rabbit", "username": "u"}, "amqp://u@rabbit", "amqp://rabbit:5672/", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(components.Metadata{Properties: tc.props})
			if err != nil {
				t.Fatal(err)
			}
			if o.uri != tc.wantURI || o.broker != tc.wantName || o.isAMQPS != tc.amqps {
				t.Errorf("uri = %q, broker = %q, amqps = %v; want %q, %q, %v", o.uri, o.broker, o.isAMQPS, tc.wantURI, tc.wantName, tc.amqps)
			}
		})
	}
}

func TestOptionDurationsReadSecondsAsDapr(t *testing.T) {
	o, err := parseOptions(components.Metadata{Properties: map[string]string{"reconnectWaitSeconds": "7", "heartBeat": "1m", "ttlInSeconds": "30", "concurrencyMode": "single"}})
	if err != nil {
		t.Fatal(err)
	}
	if o.ReconnectWait != 7*time.Second || o.HeartBeat != time.Minute || o.ttl != 30*time.Second || !o.single {
		t.Errorf("reconnectWait = %s, heartBeat = %s, ttl = %s, single = %v", o.ReconnectWait, o.HeartBeat, o.ttl, o.single)
	}
}

func TestSubscriptionMetadata(t *testing.T) {
	p := New()
	p.opts.ConsumerID = "app"
	p.opts.MaxLen = 10
	for _, tc := range []struct {
		name      string
		md        map[string]string
		wantQueue string
		wantErr   string
	}{
		{"component group", nil, "app-orders", ""},
		{"subscription group", map[string]string{"consumerID": "other"}, "other-orders", ""},
		{"queue name", map[string]string{"queueName": "mine"}, "mine", ""},
		{"bad queue type", map[string]string{"queueType": "stream"}, "", "queueType"},
		{"bad max priority", map[string]string{"maxPriority": "high"}, "", "maxPriority"},
		{"bad max length", map[string]string{"maxLen": "-1"}, "", "maxLen"},
		{"bad single active consumer", map[string]string{"singleActiveConsumer": "sometimes"}, "", "singleActiveConsumer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := p.newSubscription(subReq("orders", tc.md), nopHandler)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), `"`+tc.wantErr+`"`) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sub.queue != tc.wantQueue {
				t.Errorf("queue = %q, want %q", sub.queue, tc.wantQueue)
			}
			if sub.args["x-max-length"] != int64(10) || sub.args["x-queue-type"] != "classic" {
				t.Errorf("args = %v", sub.args)
			}
			if err := sub.args.Validate(); err != nil {
				t.Errorf("args are not a valid AMQP table: %v", err)
			}
		})
	}
	p.opts.ConsumerID = ""
	if _, err := p.newSubscription(subReq("orders", nil), nopHandler); err == nil || !strings.Contains(err.Error(), "consumerID") {
		t.Errorf("no consumer group: err = %v", err)
	}
}

func TestSubscriptionConcurrency(t *testing.T) {
	p := New()
	p.opts.ConsumerID = "app"
	req := subReq("t", nil)
	req.MaxConcurrency = 3
	sub, err := p.newSubscription(req, nopHandler)
	if err != nil {
		t.Fatal(err)
	}
	if cap(sub.sem) != 3 || sub.prefetch != 3 {
		t.Errorf("concurrency %d, prefetch %d; want 3 and 3", cap(sub.sem), sub.prefetch)
	}
	p.opts.PrefetchCount = 50
	p.opts.single = true
	sub, err = p.newSubscription(req, nopHandler)
	if err != nil {
		t.Fatal(err)
	}
	if cap(sub.sem) != 1 || sub.prefetch != 50 {
		t.Errorf("concurrency %d, prefetch %d; want 1 (concurrencyMode single) and 50", cap(sub.sem), sub.prefetch)
	}
}

func subReq(topic string, md map[string]string) pubsub.SubscribeRequest {
	return pubsub.SubscribeRequest{Topic: topic, Metadata: md}
}

func nopHandler(context.Context, *pubsub.Message) error { return nil }
