package runtime

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
	pubsubblock "github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub"
	"github.com/outrigger-dev/outrigger/sidecar/compstore"
	"github.com/outrigger-dev/outrigger/sidecar/resources"
)

// newIngressCount is Dapr's dapr_component_pubsub_ingress_count: messages processed,
// by outcome (success, retry, drop).
func newIngressCount() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dapr_component_pubsub_ingress_count",
		Help: "The number of incoming messages arriving from the pub/sub component, by processing status.",
	}, []string{"app_id", "component", "namespace", "process_status", "topic"})
}

// setUpPubsub builds the pub/sub block: publishing at once, subscriptions once the app
// channel is up (startPubsub).
func (r *Runtime) setUpPubsub(set *resources.Set, iv *invocation) *pubsubblock.Block {
	r.ingressCount = newIngressCount()
	b := &pubsubblock.Block{
		AppID:     r.cfg.AppID,
		Namespace: r.cfg.Namespace,
		PubSubs:   r.components.PubSubs(),
		Runner:    &r.live.policies,
		Log:       r.log.WithName("pubsub"),
		OnIngress: func(component, topic, outcome string) {
			r.ingressCount.WithLabelValues(r.cfg.AppID, component, r.cfg.Namespace, outcome, topic).Inc()
		},
	}
	if r.cfg.AppPort > 0 {
		if appchannel.IsGRPC(r.cfg.AppProtocol) {
			b.App = pubsubblock.GRPCApp{Conn: iv.appConn, Token: r.cfg.AppAPIToken}
		} else if ch, ok := iv.block.App.(*appchannel.Channel); ok {
			b.App = pubsubblock.HTTPApp{Channel: ch}
		}
	}
	b.SetDeclared(declaredSubscriptions(set.Subscriptions))
	r.components.OnChange = func(family, name string) {
		if family == compstore.FamilyPubsub {
			b.ComponentChanged(name)
		}
	}
	return b
}

// startPubsub subscribes once the app channel is up.
func (r *Runtime) startPubsub(ctx context.Context, b *pubsubblock.Block, appUp <-chan struct{}) {
	select {
	case <-appUp:
	case <-ctx.Done():
		return
	}
	b.Start(ctx)
}

// stopPubsub ends the subscriptions, giving deliveries in flight the grace period.
func (r *Runtime) stopPubsub(b *pubsubblock.Block) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.GracefulShutdown)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		r.log.Error(err, "Stopping the subscriptions")
	}
}

// declaredSubscriptions turns Subscription resources into the block's subscriptions.
func declaredSubscriptions(rs []resources.Resource[*daprv2alpha1.Subscription]) []pubsubblock.Subscription {
	out := make([]pubsubblock.Subscription, 0, len(rs))
	for _, r := range rs {
		s := r.Object.Spec
		sub := pubsubblock.Subscription{
			PubsubName: s.Pubsubname, Topic: s.Topic, Metadata: s.Metadata,
			Default: s.Routes.Default, DeadLetterTopic: s.DeadLetterTopic,
		}
		for _, rule := range s.Routes.Rules {
			sub.Rules = append(sub.Rules, pubsubblock.RuleInfo{Match: rule.Match, Path: rule.Path})
		}
		if s.BulkSubscribe.Enabled {
			sub.Bulk = pubsubblock.BulkSubscribe{Enabled: true, MaxMessages: int(s.BulkSubscribe.MaxMessagesCount),
				MaxAwait: time.Duration(s.BulkSubscribe.MaxAwaitDurationMs) * time.Millisecond}
			if sub.Bulk.MaxMessages <= 0 {
				sub.Bulk.MaxMessages = pubsubblock.DefaultBulkMaxMessages
			}
			if sub.Bulk.MaxAwait <= 0 {
				sub.Bulk.MaxAwait = pubsubblock.DefaultBulkMaxAwait
			}
		}
		out = append(out, sub)
	}
	return out
}

func (r *Runtime) subscriptions() []pubsubblock.SubscriptionInfo {
	if r.pubsub == nil {
		return nil
	}
	return r.pubsub.Subscriptions()
}
