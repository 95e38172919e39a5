package apitest

import (
	"context"
	"testing"

	stateblock "github.com/outrigger-dev/outrigger/sidecar/blocks/state"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/memory"
)

// Store names NewStateBlock loads.
const (
	// FullStore is state.in-memory with every feature.
	FullStore = "statestore"
	// BasicStoreName is state.in-memory without transactions, TTL or queries.
	BasicStoreName = "basic"
)

// NewStateBlock returns the real state block for app appID over two in-memory stores,
// FullStore and BasicStoreName, and the full store for direct inspection.
func NewStateBlock(t testing.TB, appID string) (*stateblock.Block, *memory.Store) {
	t.Helper()
	full := memory.New()
	basicInner := memory.New()
	for name, s := range map[string]state.Store{FullStore: full, BasicStoreName: basicInner} {
		if err := s.Init(context.Background(), components.Metadata{Name: name, Type: memory.TypeName, Version: "v1", AppID: appID}); err != nil {
			t.Fatalf("init %s: %v", name, err)
		}
	}
	t.Cleanup(func() {
		_ = full.Close()
		_ = basicInner.Close()
	})
	return &stateblock.Block{
		AppID: appID,
		Stores: stateblock.NewStaticStores(map[string]stateblock.Handle{
			FullStore:      {Store: full},
			BasicStoreName: {Store: BasicStore{Inner: basicInner}},
		}),
	}, full
}
