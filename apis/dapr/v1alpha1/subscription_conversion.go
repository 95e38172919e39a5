package v1alpha1

import (
	"encoding/json"
	"fmt"
	"maps"

	"sigs.k8s.io/controller-runtime/pkg/conversion"

	"github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
)

// RoutesRulesAnnotation holds, on a v1alpha1 Subscription, the v2alpha1
// routes.rules that v1alpha1 cannot express, as a JSON list. Converting back
// to v2alpha1 restores the rules and removes the annotation, so a v2alpha1
// object read and written back through v1alpha1 keeps its rules.
const RoutesRulesAnnotation = "dapr.io/v2alpha1-routes-rules"

var _ conversion.Convertible = &Subscription{}

// ConvertTo converts this v1alpha1 Subscription to the v2alpha1 hub. As in
// Dapr, spec.route becomes spec.routes.default.
func (s *Subscription) ConvertTo(hub conversion.Hub) error {
	dst, ok := hub.(*v2alpha1.Subscription)
	if !ok {
		return fmt.Errorf("convert Subscription %s/%s to v2alpha1: unexpected hub type %T", s.Namespace, s.Name, hub)
	}

	dst.ObjectMeta = *s.ObjectMeta.DeepCopy()
	dst.Spec = v2alpha1.SubscriptionSpec{
		Pubsubname:      s.Spec.Pubsubname,
		Topic:           s.Spec.Topic,
		Routes:          v2alpha1.Routes{Default: s.Spec.Route},
		Metadata:        maps.Clone(s.Spec.Metadata),
		DeadLetterTopic: s.Spec.DeadLetterTopic,
		BulkSubscribe: v2alpha1.BulkSubscribe{
			Enabled:            s.Spec.BulkSubscribe.Enabled,
			MaxMessagesCount:   s.Spec.BulkSubscribe.MaxMessagesCount,
			MaxAwaitDurationMs: s.Spec.BulkSubscribe.MaxAwaitDurationMs,
		},
	}
	dst.Scoped = *s.Scoped.DeepCopy()
	dst.Status = *s.Status.DeepCopy()

	raw, found := dst.Annotations[RoutesRulesAnnotation]
	if !found {
		return nil
	}
	var rules []v2alpha1.Rule
	if err := json.Unmarshal([]byte(raw), &rules); err != nil {
		// Failing here would make the object unreadable in v2alpha1 and break
		// every list that contains it. Keep the annotation as it is instead, so
		// nothing is lost and validation can report it.
		return nil
	}
	dst.Spec.Routes.Rules = rules
	delete(dst.Annotations, RoutesRulesAnnotation)
	if len(dst.Annotations) == 0 {
		dst.Annotations = nil
	}
	return nil
}

// ConvertFrom converts the v2alpha1 hub to this v1alpha1 Subscription. As in
// Dapr, spec.routes.default becomes spec.route; the rules are kept in the
// RoutesRulesAnnotation annotation.
func (s *Subscription) ConvertFrom(hub conversion.Hub) error {
	src, ok := hub.(*v2alpha1.Subscription)
	if !ok {
		return fmt.Errorf("convert Subscription to v1alpha1: unexpected hub type %T", hub)
	}

	s.ObjectMeta = *src.ObjectMeta.DeepCopy()
	s.Spec = SubscriptionSpec{
		Pubsubname:      src.Spec.Pubsubname,
		Topic:           src.Spec.Topic,
		Route:           src.Spec.Routes.Default,
		Metadata:        maps.Clone(src.Spec.Metadata),
		DeadLetterTopic: src.Spec.DeadLetterTopic,
		BulkSubscribe: BulkSubscribe{
			Enabled:            src.Spec.BulkSubscribe.Enabled,
			MaxMessagesCount:   src.Spec.BulkSubscribe.MaxMessagesCount,
			MaxAwaitDurationMs: src.Spec.BulkSubscribe.MaxAwaitDurationMs,
		},
	}
	s.Scoped = *src.Scoped.DeepCopy()
	s.Status = *src.Status.DeepCopy()

	if len(src.Spec.Routes.Rules) == 0 {
		return nil
	}
	raw, err := json.Marshal(src.Spec.Routes.Rules)
	if err != nil {
		return fmt.Errorf("convert Subscription %s/%s to v1alpha1: encode routes.rules: %w", src.Namespace, src.Name, err)
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[RoutesRulesAnnotation] = string(raw)
	return nil
}
