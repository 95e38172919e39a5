// Package state is the state building block: Dapr's semantics between the transports
// and the stores. It prefixes keys (<appid>||<key>, per the store's keyPrefix), checks
// keys, ETags, options and features, parses queries, and runs every store call through
// the resiliency seam. It returns *apierrors.Error values; it knows nothing of HTTP or
// gRPC.
package state

import (
	"context"

	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// Stores is how the block finds the store loaded under a name, per call: the component
// may be swapped or removed between calls.
type Stores interface {
	// Acquire returns the store and its key-prefix setting; release must be called
	// when the call is done. ok is false when no store of that name is loaded.
	Acquire(name string) (h Handle, release func(), ok bool)
	// Names lists the loaded state stores, to tell "not found" from "none configured".
	Names() []string
}

// Handle is a loaded store and how its keys are prefixed.
type Handle struct {
	Store state.Store
	// KeyPrefix is the component's keyPrefix metadata: "appid" (default), "name",
	// "namespace", "none", or any other string used literally as the prefix.
	KeyPrefix string
}

// API is what the transports call. Keys in requests and responses are the app's keys,
// never prefixed.
type API interface {
	Get(ctx context.Context, store string, req GetRequest) (*Item, error)
	BulkGet(ctx context.Context, store string, req BulkGetRequest) ([]BulkItem, error)
	Save(ctx context.Context, store string, items []SaveRequest) error
	Delete(ctx context.Context, store string, req DeleteRequest) error
	DeleteBulk(ctx context.Context, store string, reqs []DeleteRequest) error
	Transact(ctx context.Context, store string, req TransactionRequest) error
	Query(ctx context.Context, store string, req QueryRequest) (*QueryResult, error)
}

// GetRequest reads one key.
type GetRequest struct {
	Key         string
	Consistency string // "", "eventual" or "strong"
	Metadata    map[string]string
}

// Item is a stored value. Get returns nil, nil for a missing key (HTTP 204).
type Item struct {
	Key         string
	Value       []byte
	ETag        *string
	ContentType *string
	Metadata    map[string]string // e.g. ttlExpireTime, as Dapr reports it
}

// BulkGetRequest reads several keys, at most Parallelism at a time (0: the block's default).
type BulkGetRequest struct {
	Keys        []string
	Parallelism int
	Metadata    map[string]string
}

// BulkItem is one key of a bulk read: a missing key has no Value and no Error.
type BulkItem struct {
	Key         string
	Value       []byte
	ETag        *string
	ContentType *string
	Metadata    map[string]string
	Error       string
}

// SaveRequest writes one key. Metadata may carry ttlInSeconds and contentType.
type SaveRequest struct {
	Key      string
	Value    []byte
	ETag     *string
	Options  state.Options
	Metadata map[string]string
}

// DeleteRequest deletes one key.
type DeleteRequest struct {
	Key      string
	ETag     *string
	Options  state.Options
	Metadata map[string]string
}

// TransactionOperation is "upsert" (Save set) or "delete" (Delete set).
type TransactionOperation struct {
	Operation string
	Save      *SaveRequest
	Delete    *DeleteRequest
}

// TransactionRequest is applied atomically by a transactional store.
type TransactionRequest struct {
	Operations []TransactionOperation
	Metadata   map[string]string
}

// QueryRequest carries the query as the app sent it (JSON).
type QueryRequest struct {
	Query    []byte
	Metadata map[string]string
}

// QueryResult is a page of results with app keys.
type QueryResult struct {
	Results  []state.QueryItem
	Token    string
	Metadata map[string]string
}
