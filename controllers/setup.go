package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
)

// +kubebuilder:rbac:groups=dapr.io,resources=components;configurations;subscriptions;resiliencies;httpendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups=dapr.io,resources=components/status;configurations/status;subscriptions/status;resiliencies/status;httpendpoints/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the Ready reconciler of every dapr.io kind, the one that
// sums up the sidecars' reports on each Component, and the controllers that keep app
// Services and sidecar RBAC beside annotated workloads.
func SetupWithManager(mgr ctrl.Manager) error {
	ctx := context.Background()
	c := mgr.GetClient()
	rec := mgr.GetEventRecorder("outrigger-operator")
	secretsOf := func(sr []secretRef) []string {
		var names []string
		for _, r := range sr {
			names = append(names, r.ref.Name)
		}
		return names
	}
	storeRef := func(a common.Auth) []string {
		if s := secretStoreOf(a); s != BuiltinSecretStore {
			return []string{s}
		}
		return nil
	}

	if err := (&readiness[*daprv1alpha1.Component]{
		client: c, recorder: rec, kind: "Component",
		newObj:  func() *daprv1alpha1.Component { return &daprv1alpha1.Component{} },
		newList: func() client.ObjectList { return &daprv1alpha1.ComponentList{} },
		status:  func(o *daprv1alpha1.Component) *common.Status { return &o.Status.Status },
		refs: func(o *daprv1alpha1.Component) refs {
			return refs{secrets: secretsOf(componentSecretRefs(o)), components: storeRef(o.Auth)}
		},
		verdict: componentReadiness,
	}).setup(ctx, mgr); err != nil {
		return err
	}
	if err := (&readiness[*daprv1alpha1.HTTPEndpoint]{
		client: c, recorder: rec, kind: "HTTPEndpoint",
		newObj:  func() *daprv1alpha1.HTTPEndpoint { return &daprv1alpha1.HTTPEndpoint{} },
		newList: func() client.ObjectList { return &daprv1alpha1.HTTPEndpointList{} },
		status:  func(o *daprv1alpha1.HTTPEndpoint) *common.Status { return &o.Status },
		refs: func(o *daprv1alpha1.HTTPEndpoint) refs {
			return refs{secrets: secretsOf(httpEndpointSecretRefs(o)), components: storeRef(o.Auth)}
		},
		verdict: httpEndpointReadiness,
	}).setup(ctx, mgr); err != nil {
		return err
	}
	if err := (&readiness[*daprv2alpha1.Subscription]{
		client: c, recorder: rec, kind: "Subscription",
		newObj:  func() *daprv2alpha1.Subscription { return &daprv2alpha1.Subscription{} },
		newList: func() client.ObjectList { return &daprv2alpha1.SubscriptionList{} },
		status:  func(o *daprv2alpha1.Subscription) *common.Status { return &o.Status },
		refs: func(o *daprv2alpha1.Subscription) refs {
			return refs{components: []string{o.Spec.Pubsubname}}
		},
		verdict: subscriptionReadiness,
	}).setup(ctx, mgr); err != nil {
		return err
	}
	if err := (&readiness[*daprv1alpha1.Configuration]{
		client: c, recorder: rec, kind: "Configuration",
		newObj:  func() *daprv1alpha1.Configuration { return &daprv1alpha1.Configuration{} },
		newList: func() client.ObjectList { return &daprv1alpha1.ConfigurationList{} },
		status:  func(o *daprv1alpha1.Configuration) *common.Status { return &o.Status },
		refs: func(o *daprv1alpha1.Configuration) refs {
			var names []string
			if o.Spec.Secrets != nil {
				for _, s := range o.Spec.Secrets.Scopes {
					if s.StoreName != BuiltinSecretStore {
						names = append(names, s.StoreName)
					}
				}
			}
			return refs{components: names}
		},
		verdict: configurationReadiness,
	}).setup(ctx, mgr); err != nil {
		return err
	}
	if err := setupAppServices(mgr); err != nil {
		return err
	}
	if err := setupSidecarRBAC(mgr); err != nil {
		return err
	}
	if err := setupComponentApps(ctx, mgr); err != nil {
		return err
	}
	return (&readiness[*daprv1alpha1.Resiliency]{
		client: c, recorder: rec, kind: "Resiliency",
		newObj:  func() *daprv1alpha1.Resiliency { return &daprv1alpha1.Resiliency{} },
		newList: func() client.ObjectList { return &daprv1alpha1.ResiliencyList{} },
		status:  func(o *daprv1alpha1.Resiliency) *common.Status { return &o.Status },
		refs: func(o *daprv1alpha1.Resiliency) refs {
			return refs{components: sortedKeys(o.Spec.Targets.Components)}
		},
		verdict: resiliencyReadiness,
	}).setup(ctx, mgr)
}
