// Package common holds the types shared by every version of the dapr.io API
// group: name/value items with secret and environment references, free-form
// values, the top-level auth and scopes blocks, and the status that Outrigger
// adds to each kind.
//
// The types are not registered with a scheme; they are embedded in the kinds
// of apis/dapr/v1alpha1 and apis/dapr/v2alpha1.
//
// +kubebuilder:object:generate=true
package common
