// Package resources is where a sidecar's manifests come from: a directory of YAML files
// in self-hosted mode, the Kubernetes API server in Kubernetes mode. Each source gives
// the same typed objects (the CRD types of apis/dapr), already filtered by scopes and
// namespace for this app, and each will emit the same Events that drive hot reload.
package resources

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
)

// Kind is a resource kind of the dapr.io group.
type Kind string

const (
	KindComponent     Kind = "Component"
	KindSubscription  Kind = "Subscription"
	KindConfiguration Kind = "Configuration"
	KindResiliency    Kind = "Resiliency"
	KindHTTPEndpoint  Kind = "HTTPEndpoint"
)

// Object is any dapr.io resource: *v1alpha1.Component, *v2alpha1.Subscription (v1alpha1
// Subscriptions are converted), *v1alpha1.Configuration, *v1alpha1.Resiliency or
// *v1alpha1.HTTPEndpoint.
type Object interface {
	metav1.Object
	runtime.Object
}

// Origin says where a resource was read.
type Origin struct {
	// File is the manifest file; empty for objects read from the API server.
	File string
	// Document is the position of the YAML document in File, from 1.
	Document int
	// Line is where the document starts in File, from 1.
	Line int
}

func (o Origin) String() string {
	if o.File == "" {
		return "the API server"
	}
	return fmt.Sprintf("%s:%d (document %d)", o.File, o.Line, o.Document)
}

// Resource is one loaded object and where it came from.
type Resource[T Object] struct {
	Object T
	Origin Origin
}

// Set is every resource a source holds for this app, in the order the manifests were
// read (paths in order, files by name, documents in order).
type Set struct {
	Components     []Resource[*daprv1alpha1.Component]
	Subscriptions  []Resource[*daprv2alpha1.Subscription]
	Configurations []Resource[*daprv1alpha1.Configuration]
	Resiliencies   []Resource[*daprv1alpha1.Resiliency]
	HTTPEndpoints  []Resource[*daprv1alpha1.HTTPEndpoint]

	// Skipped lists what was read and left out, and why: documents of other kinds,
	// resources scoped to other apps or namespaces, files that are not YAML.
	Skipped []Skipped
}

// Skipped is a document (or file) that was read and deliberately left out.
type Skipped struct {
	Origin Origin
	// Kind is "apiVersion/kind" for documents of another kind, else the dapr.io kind.
	Kind   string
	Name   string
	Reason string
}

// EventType is what happened to a resource.
type EventType int

const (
	Added EventType = iota + 1
	Updated
	Deleted
)

func (t EventType) String() string {
	switch t {
	case Added:
		return "Added"
	case Updated:
		return "Updated"
	case Deleted:
		return "Deleted"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change to one resource. Object is the new state, or for Deleted the last
// known one. A source emits Deleted, not Updated, when a change takes a resource out of
// this app's scopes, so that consumers never re-check scopes.
type Event struct {
	Kind   Kind
	Type   EventType
	Object Object
	Origin Origin
}

// Source is where manifests come from. The directory source implements Load now; a
// Kubernetes informer source and an fsnotify watcher of the directory will implement
// both methods.
type Source interface {
	// Load reads every resource for this app: the initial list.
	Load(ctx context.Context) (*Set, error)
	// Watch sends an Event for each change after Load, until ctx ends. A source that
	// cannot watch returns an error wrapping errors.ErrUnsupported at once.
	Watch(ctx context.Context, events chan<- Event) error
}

// InScope reports whether a resource with these scopes applies to the app: an empty
// list means every app, as in Dapr (IsAppScoped).
func InScope(scopes []string, appID string) bool {
	return len(scopes) == 0 || slices.Contains(scopes, appID)
}

// InNamespace reports whether a resource of namespace ns applies to a sidecar of
// namespace sidecarNS. As in Dapr's component authorizer, either being empty matches:
// self-hosted manifests usually have no namespace, and a self-hosted sidecar has one
// only when NAMESPACE is set.
func InNamespace(ns, sidecarNS string) bool {
	return ns == "" || sidecarNS == "" || ns == sidecarNS
}
