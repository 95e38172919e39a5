package v1alpha1

import (
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/diff"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	"github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
)

var readyCondition = metav1.Condition{
	Type:               common.ConditionReady,
	Status:             metav1.ConditionTrue,
	Reason:             "Accepted",
	Message:            "subscription accepted",
	ObservedGeneration: 3,
	LastTransitionTime: metav1.Unix(1700000000, 0),
}

func TestSubscriptionRoundTripFromV1alpha1(t *testing.T) {
	tests := []struct {
		name string
		in   Subscription
		// wantRoutes is what the hub must hold after ConvertTo.
		wantRoutes v2alpha1.Routes
	}{
		{
			name:       "empty",
			in:         Subscription{},
			wantRoutes: v2alpha1.Routes{},
		},
		{
			name: "every field",
			in: Subscription{
				TypeMeta: metav1.TypeMeta{APIVersion: "dapr.io/v1alpha1", Kind: "Subscription"},
				ObjectMeta: metav1.ObjectMeta{
					Name:            "orders",
					Namespace:       "shop",
					UID:             "0d9f7a1e-4c9b-4f4e-9d8a-8f0c1b7e2a11",
					ResourceVersion: "42",
					Generation:      3,
					Labels:          map[string]string{"app": "nodeapp"},
					Annotations:     map[string]string{"team": "checkout"},
					Finalizers:      []string{"dapr.io/finalizer"},
				},
				Spec: SubscriptionSpec{
					Pubsubname:      "pubsub",
					Topic:           "orders",
					Route:           "/orders",
					Metadata:        map[string]string{"rawPayload": "true"},
					DeadLetterTopic: "poison",
					BulkSubscribe:   BulkSubscribe{Enabled: true, MaxMessagesCount: 100, MaxAwaitDurationMs: 40},
				},
				Scoped: common.Scoped{Scopes: []string{"nodeapp", "pythonapp"}},
				Status: common.Status{ObservedGeneration: 3, Conditions: []metav1.Condition{readyCondition}},
			},
			wantRoutes: v2alpha1.Routes{Default: "/orders"},
		},
		{
			name: "rules kept from an earlier v2alpha1 object",
			in: Subscription{
				ObjectMeta: metav1.ObjectMeta{
					Name: "orders",
					Annotations: map[string]string{
						RoutesRulesAnnotation: `[{"match":"event.type == \"a\"","path":"/a"},{"path":"/b"}]`,
					},
				},
				Spec: SubscriptionSpec{Pubsubname: "pubsub", Topic: "orders", Route: "/orders"},
			},
			wantRoutes: v2alpha1.Routes{
				Default: "/orders",
				Rules:   []v2alpha1.Rule{{Match: `event.type == "a"`, Path: "/a"}, {Path: "/b"}},
			},
		},
		{
			name: "malformed rules annotation is kept",
			in: Subscription{
				ObjectMeta: metav1.ObjectMeta{
					Name:        "orders",
					Annotations: map[string]string{RoutesRulesAnnotation: `not json`},
				},
				Spec: SubscriptionSpec{Pubsubname: "pubsub", Topic: "orders", Route: "/orders"},
			},
			wantRoutes: v2alpha1.Routes{Default: "/orders"},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.DeepCopy()

			hub := &v2alpha1.Subscription{}
			if err := in.ConvertTo(hub); err != nil {
				t.Fatalf("ConvertTo: %v", err)
			}
			if !apiequality.Semantic.DeepEqual(hub.Spec.Routes, tt.wantRoutes) {
				t.Errorf("hub routes:\n%s", diff.Diff(tt.wantRoutes, hub.Spec.Routes))
			}
			if _, found := hub.Annotations[RoutesRulesAnnotation]; found && len(tt.wantRoutes.Rules) > 0 {
				t.Errorf("hub still carries %s after the rules were restored", RoutesRulesAnnotation)
			}

			out := &Subscription{TypeMeta: tt.in.TypeMeta}
			if err := out.ConvertFrom(hub); err != nil {
				t.Fatalf("ConvertFrom: %v", err)
			}
			if !apiequality.Semantic.DeepEqual(out, &tt.in) {
				t.Errorf("v1alpha1 -> v2alpha1 -> v1alpha1 is not lossless:\n%s", diff.Diff(&tt.in, out))
			}
			if !apiequality.Semantic.DeepEqual(in, &tt.in) {
				t.Errorf("ConvertTo modified its receiver:\n%s", diff.Diff(&tt.in, in))
			}
		})
	}
}

func TestSubscriptionRoundTripFromV2alpha1(t *testing.T) {
	tests := []struct {
		name string
		in   v2alpha1.Subscription
		// wantRoute is what the v1alpha1 object must hold after ConvertFrom.
		wantRoute string
		// wantAnnotation is the rules annotation the v1alpha1 object must hold;
		// empty means none.
		wantAnnotation string
	}{
		{
			name: "empty",
			in:   v2alpha1.Subscription{},
		},
		{
			name: "default route only",
			in: v2alpha1.Subscription{
				ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "shop"},
				Spec: v2alpha1.SubscriptionSpec{
					Pubsubname: "pubsub",
					Topic:      "orders",
					Routes:     v2alpha1.Routes{Default: "/orders"},
				},
			},
			wantRoute: "/orders",
		},
		{
			name: "every field with rules",
			in: v2alpha1.Subscription{
				TypeMeta: metav1.TypeMeta{APIVersion: "dapr.io/v2alpha1", Kind: "Subscription"},
				ObjectMeta: metav1.ObjectMeta{
					Name:        "orders",
					Namespace:   "shop",
					Generation:  7,
					Labels:      map[string]string{"app": "nodeapp"},
					Annotations: map[string]string{"team": "checkout"},
				},
				Spec: v2alpha1.SubscriptionSpec{
					Pubsubname: "pubsub",
					Topic:      "orders",
					Routes: v2alpha1.Routes{
						Rules: []v2alpha1.Rule{
							{Match: `event.type == "order.created"`, Path: "/orders/created"},
							{Match: `event.data.total > 100`, Path: "/orders/big"},
						},
						Default: "/orders",
					},
					Metadata:        map[string]string{"rawPayload": "false"},
					DeadLetterTopic: "poison",
					BulkSubscribe:   v2alpha1.BulkSubscribe{Enabled: true, MaxMessagesCount: 10, MaxAwaitDurationMs: 1000},
				},
				Scoped: common.Scoped{Scopes: []string{"nodeapp"}},
				Status: common.Status{ObservedGeneration: 7, Conditions: []metav1.Condition{readyCondition}},
			},
			wantRoute:      "/orders",
			wantAnnotation: `[{"match":"event.type == \"order.created\"","path":"/orders/created"},{"match":"event.data.total \u003e 100","path":"/orders/big"}]`,
		},
		{
			name: "rules without a default",
			in: v2alpha1.Subscription{
				ObjectMeta: metav1.ObjectMeta{Name: "orders"},
				Spec: v2alpha1.SubscriptionSpec{
					Pubsubname: "pubsub",
					Topic:      "orders",
					Routes:     v2alpha1.Routes{Rules: []v2alpha1.Rule{{Path: "/all"}}},
				},
			},
			wantAnnotation: `[{"path":"/all"}]`,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.DeepCopy()

			spoke := &Subscription{}
			if err := spoke.ConvertFrom(in); err != nil {
				t.Fatalf("ConvertFrom: %v", err)
			}
			if spoke.Spec.Route != tt.wantRoute {
				t.Errorf("route = %q, want %q", spoke.Spec.Route, tt.wantRoute)
			}
			if got := spoke.Annotations[RoutesRulesAnnotation]; got != tt.wantAnnotation {
				t.Errorf("%s = %q, want %q", RoutesRulesAnnotation, got, tt.wantAnnotation)
			}

			out := &v2alpha1.Subscription{TypeMeta: tt.in.TypeMeta}
			if err := spoke.ConvertTo(out); err != nil {
				t.Fatalf("ConvertTo: %v", err)
			}
			if !apiequality.Semantic.DeepEqual(out, &tt.in) {
				t.Errorf("v2alpha1 -> v1alpha1 -> v2alpha1 is not lossless:\n%s", diff.Diff(&tt.in, out))
			}
			if !apiequality.Semantic.DeepEqual(in, &tt.in) {
				t.Errorf("ConvertFrom modified the hub:\n%s", diff.Diff(&tt.in, in))
			}
		})
	}
}

func TestSubscriptionConvertRejectsOtherHubs(t *testing.T) {
	var s Subscription
	if err := s.ConvertTo(&notAHub{}); err == nil {
		t.Error("ConvertTo accepted a hub that is not a v2alpha1 Subscription")
	}
	if err := s.ConvertFrom(&notAHub{}); err == nil {
		t.Error("ConvertFrom accepted a hub that is not a v2alpha1 Subscription")
	}
}

// notAHub is a conversion.Hub of the wrong type.
type notAHub struct{ v2alpha1.SubscriptionList }

func (*notAHub) Hub() {}
