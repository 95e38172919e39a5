package runtime

import (
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores/localenv"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores/localfile"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/memory"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/postgresql"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/redis"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/sqlite"
	"github.com/outrigger-dev/outrigger/sidecar/compstore"
)

// registerComponents gives a component store every implementation this build ships.
func registerComponents(s *compstore.Store) {
	memory.Register(s.Registries.State)
	sqlite.Register(s.Registries.State)
	redis.Register(s.Registries.State)
	postgresql.Register(s.Registries.State)
	localfile.Register(s.Registries.SecretStores)
	localenv.Register(s.Registries.SecretStores)
}
