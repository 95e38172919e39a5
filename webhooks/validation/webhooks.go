// Package validation serves the validating webhooks of the dapr.io resources and the
// Subscription conversion webhook. The decisions live in pure check functions; the
// webhooks only run them and render the answer the API server shows the user.
package validation

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/webhooks/validation/checks"
)

// +kubebuilder:webhook:path=/validate-dapr-io-v1alpha1-component,mutating=false,failurePolicy=fail,sideEffects=None,groups=dapr.io,resources=components,verbs=create;update,versions=v1alpha1,name=vcomponent-v1alpha1.dapr.io,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-dapr-io-v1alpha1-configuration,mutating=false,failurePolicy=fail,sideEffects=None,groups=dapr.io,resources=configurations,verbs=create;update,versions=v1alpha1,name=vconfiguration-v1alpha1.dapr.io,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-dapr-io-v2alpha1-subscription,mutating=false,failurePolicy=fail,sideEffects=None,groups=dapr.io,resources=subscriptions,verbs=create;update,versions=v2alpha1,name=vsubscription-v2alpha1.dapr.io,admissionReviewVersions=v1,matchPolicy=Equivalent
// +kubebuilder:webhook:path=/validate-dapr-io-v1alpha1-resiliency,mutating=false,failurePolicy=fail,sideEffects=None,groups=dapr.io,resources=resiliencies,verbs=create;update,versions=v1alpha1,name=vresiliency-v1alpha1.dapr.io,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-dapr-io-v1alpha1-httpendpoint,mutating=false,failurePolicy=fail,sideEffects=None,groups=dapr.io,resources=httpendpoints,verbs=create;update,versions=v1alpha1,name=vhttpendpoint-v1alpha1.dapr.io,admissionReviewVersions=v1

// SetupWithManager registers the validating webhooks and the Subscription conversion
// webhook (served at /convert because v1alpha1 converts to the v2alpha1 hub).
func SetupWithManager(mgr ctrl.Manager) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &daprv1alpha1.Component{}).
		WithValidator(validator[*daprv1alpha1.Component]{kind: "Component", errors: checks.ComponentErrors, warnings: checks.ComponentWarnings}).
		Complete(); err != nil {
		return err
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &daprv1alpha1.Configuration{}).
		WithValidator(validator[*daprv1alpha1.Configuration]{kind: "Configuration", errors: checks.ConfigurationErrors}).
		Complete(); err != nil {
		return err
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &daprv2alpha1.Subscription{}).
		WithValidator(validator[*daprv2alpha1.Subscription]{kind: "Subscription", errors: checks.SubscriptionErrors}).
		Complete(); err != nil {
		return err
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &daprv1alpha1.Resiliency{}).
		WithValidator(validator[*daprv1alpha1.Resiliency]{kind: "Resiliency", errors: checks.ResiliencyErrors}).
		Complete(); err != nil {
		return err
	}
	return ctrl.NewWebhookManagedBy(mgr, &daprv1alpha1.HTTPEndpoint{}).
		WithValidator(validator[*daprv1alpha1.HTTPEndpoint]{kind: "HTTPEndpoint", errors: checks.HTTPEndpointErrors}).
		Complete()
}

// validator adapts a kind's pure checks to admission.Validator. Deletes are always
// allowed: a malformed object must remain removable.
type validator[T client.Object] struct {
	kind     string
	errors   func(T) field.ErrorList
	warnings func(T) []string
}

func (v validator[T]) ValidateCreate(_ context.Context, obj T) (admission.Warnings, error) {
	return v.validate(obj)
}

func (v validator[T]) ValidateUpdate(_ context.Context, _, obj T) (admission.Warnings, error) {
	return v.validate(obj)
}

func (v validator[T]) ValidateDelete(context.Context, T) (admission.Warnings, error) {
	return nil, nil
}

func (v validator[T]) validate(obj T) (admission.Warnings, error) {
	var warnings admission.Warnings
	if v.warnings != nil {
		warnings = v.warnings(obj)
	}
	if errs := v.errors(obj); len(errs) > 0 {
		gk := schema.GroupKind{Group: daprv1alpha1.GroupVersion.Group, Kind: v.kind}
		return warnings, apierrors.NewInvalid(gk, obj.GetName(), errs)
	}
	return warnings, nil
}
