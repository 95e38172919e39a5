// Package state is the state store family: the interface every store implements, its
// request types, and its registry. Stores know nothing of apps or key prefixes: the
// state building block hands them full keys ("<appid>||<key>").
package state

import (
	"context"
	"errors"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components"
)

// Feature is a capability a store declares; names are Dapr's, as /v1.0/metadata lists them.
type Feature string

const (
	FeatureETag          Feature = "ETAG"
	FeatureTransactional Feature = "TRANSACTIONAL"
	FeatureTTL           Feature = "TTL"
	FeatureQueryAPI      Feature = "QUERY_API"
	// FeatureActorStateStore is declared by a store whose metadata sets
	// actorStateStore: true and that is transactional.
	FeatureActorStateStore Feature = "ACTOR"
)

// Concurrency and consistency options, with Dapr's values.
const (
	FirstWrite = "first-write"
	LastWrite  = "last-write"
	Strong     = "strong"
	Eventual   = "eventual"
)

// Options of a write.
type Options struct {
	Concurrency string // FirstWrite or LastWrite (default)
	Consistency string // Strong or Eventual (default)
}

// GetRequest reads one key.
type GetRequest struct {
	Key         string
	Consistency string
	Metadata    map[string]string
}

// GetResponse is what a store holds for a key. A missing key is a nil response and no
// error.
type GetResponse struct {
	Data        []byte
	ETag        *string
	ContentType *string
	// Expiry is when the item expires, for stores with TTL; nil when it does not.
	Expiry   *time.Time
	Metadata map[string]string
}

// SetRequest writes one key. ETag, when set, must match the stored item's (an item that
// does not exist matches no ETag). With FirstWrite and no ETag, the write only succeeds
// if the key does not exist yet.
type SetRequest struct {
	Key         string
	Value       []byte
	ETag        *string
	ContentType *string
	// TTL expires the item; nil keeps it until deleted. The block only sets it for stores
	// that declare FeatureTTL.
	TTL      *time.Duration
	Options  Options
	Metadata map[string]string
}

// DeleteRequest deletes one key; a missing key is not an error unless an ETag is given.
type DeleteRequest struct {
	Key      string
	ETag     *string
	Options  Options
	Metadata map[string]string
}

// Store is the interface of every state store.
type Store interface {
	components.Component
	Features() []Feature
	Get(ctx context.Context, req *GetRequest) (*GetResponse, error)
	Set(ctx context.Context, req *SetRequest) error
	Delete(ctx context.Context, req *DeleteRequest) error
}

// Operation is one step of a transaction: exactly one of Set and Delete is non-nil.
type Operation struct {
	Set    *SetRequest
	Delete *DeleteRequest
}

// Transactional stores apply several operations atomically: all or none.
type Transactional interface {
	Multi(ctx context.Context, ops []Operation, metadata map[string]string) error
}

// Querier stores answer the state query API (see query.go).
type Querier interface {
	Query(ctx context.Context, q *Query, metadata map[string]string) (*QueryResponse, error)
}

// ETagError reports a failed ETag check; the block turns it into Dapr's 409 (mismatch)
// or 400 (invalid).
type ETagError struct {
	Kind ETagErrorKind
	Err  error
}

type ETagErrorKind int

const (
	ETagMismatch ETagErrorKind = iota // the stored item has another ETag, or none
	ETagInvalid                       // the ETag is not one this store could have issued
)

func (e *ETagError) Error() string {
	msg := "possible etag mismatch"
	if e.Kind == ETagInvalid {
		msg = "invalid etag value"
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *ETagError) Unwrap() error { return e.Err }

// NewETagError is a convenience for stores.
func NewETagError(kind ETagErrorKind, err error) error { return &ETagError{Kind: kind, Err: err} }

// ErrNotSupported lets a store refuse an operation it cannot do.
var ErrNotSupported = errors.New("operation not supported by this state store")

// Has reports whether a store declares a feature.
func Has(s Store, f Feature) bool {
	for _, x := range s.Features() {
		if x == f {
			return true
		}
	}
	return false
}

// Registry holds every state store implementation.
var Registry = &components.Registry[Store]{}
