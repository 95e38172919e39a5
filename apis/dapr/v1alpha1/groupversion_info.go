// Package v1alpha1 contains the dapr.io/v1alpha1 API: Component,
// Configuration, Subscription, Resiliency and HTTPEndpoint. JSON field names
// are Dapr's, so manifests written for Dapr apply unchanged.
//
// +kubebuilder:object:generate=true
// +groupName=dapr.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "dapr.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
