// Package hellokubernetes holds the seed's hello-kubernetes manifests, embedded so that
// `outrigger dev --demo` applies them from any directory.
package hellokubernetes

import "embed"

// Deploy holds deploy/*.yaml: the state store Component and the node and python
// Deployments.
//
//go:embed deploy/*.yaml
var Deploy embed.FS
