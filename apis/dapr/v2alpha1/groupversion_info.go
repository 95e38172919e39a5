// Package v2alpha1 contains the dapr.io/v2alpha1 API: Subscription with
// routing rules. It is the storage version and the conversion hub for
// Subscription.
//
// +kubebuilder:object:generate=true
// +groupName=dapr.io
package v2alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "dapr.io", Version: "v2alpha1"}

	// SchemeBuilder registers the kinds of this package with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
