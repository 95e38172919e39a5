// Package builtin lists every component implementation this build ships. The sidecar
// registers them to load components; the operator registers them to tell which
// Component types no sidecar can load.
package builtin

import (
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores/localenv"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores/localfile"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/memory"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/postgresql"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/redis"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/sqlite"
)

// Registries are the family registries to fill.
type Registries struct {
	State        *components.Registry[state.Store]
	SecretStores *components.Registry[secretstores.Store]
}

// Register adds every built-in implementation; registering twice is harmless.
func Register(r Registries) {
	memory.Register(r.State)
	sqlite.Register(r.State)
	redis.Register(r.State)
	postgresql.Register(r.State)
	localfile.Register(r.SecretStores)
	localenv.Register(r.SecretStores)
}

// RegisterDefaults fills the families' global registries.
func RegisterDefaults() {
	Register(Registries{State: state.Registry, SecretStores: secretstores.Registry})
}
