package apitest

import (
	"context"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// BasicStore exposes only the plain operations and the ETag feature of a store: no
// transactions, no TTL, no query API. Tests use it over the in-memory store to reach
// the block's "store lacks a feature" errors.
type BasicStore struct {
	Inner state.Store
}

var _ state.Store = BasicStore{}

func (b BasicStore) Init(ctx context.Context, md components.Metadata) error {
	return b.Inner.Init(ctx, md)
}

func (b BasicStore) Close() error { return b.Inner.Close() }

func (b BasicStore) Features() []state.Feature { return []state.Feature{state.FeatureETag} }

func (b BasicStore) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	return b.Inner.Get(ctx, req)
}

func (b BasicStore) Set(ctx context.Context, req *state.SetRequest) error {
	return b.Inner.Set(ctx, req)
}

func (b BasicStore) Delete(ctx context.Context, req *state.DeleteRequest) error {
	return b.Inner.Delete(ctx, req)
}
