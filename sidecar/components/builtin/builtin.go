// Package builtin lists every component implementation this build ships. The sidecar
// registers them to load components; the operator registers them to tell which
// Component types no sidecar can load.
package builtin

import (
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
	pubsubjetstream "github.com/outrigger-dev/outrigger/sidecar/components/pubsub/jetstream"
	pubsubmemory "github.com/outrigger-dev/outrigger/sidecar/components/pubsub/memory"
	pubsubmqtt3 "github.com/outrigger-dev/outrigger/sidecar/components/pubsub/mqtt3"
	pubsubrabbitmq "github.com/outrigger-dev/outrigger/sidecar/components/pubsub/rabbitmq"
	pubsubredis "github.com/outrigger-dev/outrigger/sidecar/components/pubsub/redis"
	pubsubsqlite "github.com/outrigger-dev/outrigger/sidecar/components/pubsub/sqlite"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
	kubesecrets "github.com/outrigger-dev/outrigger/sidecar/components/secretstores/kubernetes"
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
	Pubsub       *components.Registry[pubsub.PubSub]
}

// Register adds every built-in implementation; registering twice is harmless.
func Register(r Registries) {
	memory.Register(r.State)
	sqlite.Register(r.State)
	redis.Register(r.State)
	postgresql.Register(r.State)
	localfile.Register(r.SecretStores)
	localenv.Register(r.SecretStores)
	kubesecrets.Register(r.SecretStores)
	if r.Pubsub != nil {
		pubsubmemory.Register(r.Pubsub)
		pubsubsqlite.Register(r.Pubsub)
		pubsubrabbitmq.Register(r.Pubsub)
		pubsubmqtt3.Register(r.Pubsub)
		pubsubredis.Register(r.Pubsub)
		pubsubjetstream.Register(r.Pubsub)
	}
}

// RegisterDefaults fills the families' global registries.
func RegisterDefaults() {
	Register(Registries{State: state.Registry, SecretStores: secretstores.Registry, Pubsub: pubsub.Registry})
}
