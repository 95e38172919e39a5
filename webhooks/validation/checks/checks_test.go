package checks

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
)

func TestComponentErrors(t *testing.T) {
	value := common.DynamicValue{JSON: apiextensionsv1.JSON{Raw: []byte(`"x"`)}}
	cases := []struct {
		name string
		edit func(*daprv1alpha1.Component)
		want string // "" means valid
	}{
		{"valid", func(*daprv1alpha1.Component) {}, ""},
		{"dotted name", func(c *daprv1alpha1.Component) { c.Spec.Type = "middleware.http.oauth2" }, ""},
		{"no family", func(c *daprv1alpha1.Component) { c.Spec.Type = "redis" }, "spec.type"},
		{"unknown family", func(c *daprv1alpha1.Component) { c.Spec.Type = "cache.redis" }, "spec.type"},
		{"empty name", func(c *daprv1alpha1.Component) { c.Spec.Type = "state." }, "spec.type"},
		{"bad initTimeout", func(c *daprv1alpha1.Component) { c.Spec.InitTimeout = "soon" }, "spec.initTimeout"},
		{"value and secretKeyRef", func(c *daprv1alpha1.Component) {
			c.Spec.Metadata = []common.NameValuePair{{Name: "p", Value: value, SecretKeyRef: common.SecretKeyRef{Name: "s"}}}
		}, "spec.metadata[0]"},
		{"value and envRef", func(c *daprv1alpha1.Component) {
			c.Spec.Metadata = []common.NameValuePair{{Name: "p", Value: value, EnvRef: "P"}}
		}, "spec.metadata[0]"},
		{"duplicate item", func(c *daprv1alpha1.Component) {
			c.Spec.Metadata = []common.NameValuePair{{Name: "p", Value: value}, {Name: "p", Value: value}}
		}, "spec.metadata[1].name"},
		{"secretKeyRef without name", func(c *daprv1alpha1.Component) {
			c.Spec.Metadata = []common.NameValuePair{{Name: "p", SecretKeyRef: common.SecretKeyRef{Key: "k"}}}
		}, "spec.metadata[0].secretKeyRef.name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &daprv1alpha1.Component{}
			c.Spec.Type, c.Spec.Version = "state.redis", "v1"
			tc.edit(c)
			errs := ComponentErrors(c)
			if tc.want == "" {
				if len(errs) != 0 {
					t.Errorf("unexpected errors: %v", errs)
				}
				return
			}
			if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), tc.want) {
				t.Errorf("errors %v do not name %s", errs, tc.want)
			}
		})
	}
}

func TestSubscriptionAndResiliencyErrors(t *testing.T) {
	s := &daprv2alpha1.Subscription{}
	s.Spec.Pubsubname, s.Spec.Topic = "pubsub", "orders"
	if errs := SubscriptionErrors(s); len(errs) != 1 || errs[0].Field != "spec.routes" {
		t.Errorf("no route: %v", errs)
	}
	s.Spec.Routes.Rules = []daprv2alpha1.Rule{{Match: `event.type == "x"`, Path: "/x"}}
	if errs := SubscriptionErrors(s); len(errs) != 0 {
		t.Errorf("a rule is a route: %v", errs)
	}

	r := &daprv1alpha1.Resiliency{}
	r.Spec.Policies.Timeouts = map[string]string{"general": "5s", "broken": "5 s"}
	r.Spec.Targets.Apps = map[string]daprv1alpha1.EndpointPolicyNames{"nodeapp": {Timeout: "general", Retry: "missing"}}
	errs := ResiliencyErrors(r)
	got := errs.ToAggregate().Error()
	for _, want := range []string{"spec.policies.timeouts[broken]", "spec.targets.apps[nodeapp].retry"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %s", got, want)
		}
	}
	if len(errs) != 2 {
		t.Errorf("want 2 errors, got %v", errs)
	}
}
