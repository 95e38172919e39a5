// Package components holds what every component family shares: the catalog of the
// families and of the component types this build implements.
package components

import (
	"slices"
	"strings"
	"sync"
)

// Families are the component families Dapr defines; a Component's type is
// "<family>.<name>", where the name may itself contain dots (middleware.http.oauth2).
var Families = []string{
	"state", "pubsub", "bindings", "secretstores", "configuration", "lock",
	"middleware", "nameresolution", "workflow", "conversation", "crypto",
}

// implemented lists the component types that this build of Outrigger provides. Each
// family's registry adds to it as implementations land; the operator reads it to warn
// about manifests no sidecar can load.
var implemented sync.Map // type name -> true

// SplitType splits "state.redis" into its family and name. ok is false when the type is
// not "<family>.<name>" with a known family.
func SplitType(t string) (family, name string, ok bool) {
	family, name, found := strings.Cut(t, ".")
	if !found || name == "" || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return "", "", false
	}
	return family, name, slices.Contains(Families, family)
}

// IsImplemented reports whether a sidecar of this build can load the type.
func IsImplemented(t string) bool {
	_, ok := implemented.Load(strings.ToLower(t))
	return ok
}
