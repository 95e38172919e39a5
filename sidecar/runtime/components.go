package runtime

import (
	"github.com/outrigger-dev/outrigger/sidecar/components/builtin"
	"github.com/outrigger-dev/outrigger/sidecar/compstore"
)

// registerComponents gives a component store every implementation this build ships.
func registerComponents(s *compstore.Store) {
	builtin.Register(builtin.Registries{State: s.Registries.State, SecretStores: s.Registries.SecretStores, Pubsub: s.Registries.Pubsub})
}
