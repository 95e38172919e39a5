// Package static resolves app ids from a fixed map, for tests and fixed topologies.
package static

import (
	"context"
	"fmt"

	"github.com/outrigger-dev/outrigger/sidecar/nameresolution"
)

// Resolver maps "appID" or "appID.namespace" to host:port; the namespaced key wins.
type Resolver map[string]string

func (r Resolver) Resolve(_ context.Context, appID, namespace string) (string, error) {
	if addr, ok := r[appID+"."+namespace]; ok && namespace != "" {
		return addr, nil
	}
	if addr, ok := r[appID]; ok {
		return addr, nil
	}
	return "", fmt.Errorf("%w: %q", nameresolution.ErrNotFound, appID)
}
