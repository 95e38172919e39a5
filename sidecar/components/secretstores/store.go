// Package secretstores is the secret store family: the interface every secret store
// implements and its registry. Secret stores serve the secrets API
// (/v1.0/secrets/<store>/<name>) and resolve the secretKeyRef values of other
// components' metadata.
package secretstores

import (
	"context"
	"errors"
	"slices"
	"strconv"

	"github.com/outrigger-dev/outrigger/sidecar/components"
)

// Feature is a capability a store declares; names are Dapr's, as /v1.0/metadata lists
// them.
type Feature string

// FeatureMultipleKeyValuesPerSecret is declared by a store whose secrets hold several
// keys each (a Kubernetes Secret, local.file with multiValued).
const FeatureMultipleKeyValuesPerSecret Feature = "MULTIPLE_KEY_VALUES_PER_SECRET"

// Store is the interface of every secret store.
type Store interface {
	components.Component
	Features() []Feature
	// GetSecret returns the keys and values of one secret. A store with one value per
	// secret returns {name: value}. A missing secret is an error wrapping
	// ErrSecretNotFound.
	GetSecret(ctx context.Context, name string, metadata map[string]string) (map[string]string, error)
	// BulkGetSecret returns every secret the store holds, by name.
	BulkGetSecret(ctx context.Context, metadata map[string]string) (map[string]map[string]string, error)
}

// ErrSecretNotFound lets the secrets block tell a missing secret from a failing store.
var ErrSecretNotFound = errors.New("secret not found")

// Has reports whether a store declares a feature.
func Has(s Store, f Feature) bool { return slices.Contains(s.Features(), f) }

// Registry holds every secret store implementation.
var Registry = &components.Registry[Store]{}

// NotFound returns the error for a missing secret; it matches ErrSecretNotFound.
func NotFound(name string) error { return &notFoundError{name: name} }

type notFoundError struct{ name string }

func (e *notFoundError) Error() string        { return "secret " + strconv.Quote(e.name) + " not found" }
func (e *notFoundError) Is(target error) bool { return target == ErrSecretNotFound }
