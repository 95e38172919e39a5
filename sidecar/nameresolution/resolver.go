// Package nameresolution finds the sidecar of an app: where its internal gRPC port
// listens. Kubernetes, self-hosted and static resolvers share one interface.
package nameresolution

import (
	"context"
	"errors"
)

// ErrNotFound means no sidecar serves the app; callers answer Dapr's not-found error.
var ErrNotFound = errors.New("app not found")

// Resolver resolves an app id in a namespace to a host:port of its sidecar's internal
// gRPC server.
type Resolver interface {
	Resolve(ctx context.Context, appID, namespace string) (string, error)
}

// Forgetter is a Resolver that caches: Forget drops the resolution of an app, which
// callers do when a call to the resolved address failed to connect.
type Forgetter interface {
	Forget(appID, namespace string)
}
