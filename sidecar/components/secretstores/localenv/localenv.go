// Package localenv is the secretstores.local.env component: the sidecar's environment
// variables as secrets, for local development.
package localenv

import (
	"context"
	"os"
	"runtime"
	"strings"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
)

// Type is the component type this package implements.
const TypeName = "secretstores.local.env"

// Register adds the store to a secret store registry.
func Register(r *components.Registry[secretstores.Store]) {
	r.Register(TypeName, func() secretstores.Store { return New() })
}

// Options are Dapr's metadata of local.env.
type Options struct {
	// Prefix limits the store to the variables that start with it, and is removed from
	// the secret names: with prefix MYAPP_, secret DB reads MYAPP_DB.
	Prefix string `metadata:"prefix"`
}

// Store is a local.env secret store.
type Store struct {
	opts Options
	// Environ and LookupEnv read the environment; nil uses the process's.
	Environ   func() []string
	LookupEnv func(string) (string, bool)
}

var _ secretstores.Store = (*Store)(nil)

// New returns an uninitialised store reading the process's environment.
func New() *Store { return &Store{} }

func (s *Store) Init(_ context.Context, md components.Metadata) error {
	if s.Environ == nil {
		s.Environ = os.Environ
	}
	if s.LookupEnv == nil {
		s.LookupEnv = os.LookupEnv
	}
	return metadata.Decode(md.Properties, &s.opts)
}

// allowed keeps the sidecar's own secrets from the app, as Dapr does: DAPR_* (such as
// DAPR_API_TOKEN) and APP_API_TOKEN are never served.
func allowed(key string) bool {
	key = strings.ToUpper(key)
	return key != "APP_API_TOKEN" && !strings.HasPrefix(key, "DAPR_")
}

// GetSecret returns {name: value}. As in Dapr, a variable that is not set, or not
// allowed, gives an empty value rather than an error.
func (s *Store) GetSecret(_ context.Context, name string, _ map[string]string) (map[string]string, error) {
	key := s.opts.Prefix + name
	var value string
	if allowed(key) {
		value, _ = s.LookupEnv(key)
	}
	return map[string]string{name: value}, nil
}

func (s *Store) BulkGetSecret(context.Context, map[string]string) (map[string]map[string]string, error) {
	prefix := s.opts.Prefix
	out := map[string]map[string]string{}
	for _, kv := range s.Environ() {
		key, value, ok := strings.Cut(kv, "=")
		if !ok || key == "" || !allowed(key) || len(key) <= len(prefix) || !hasPrefix(key, prefix) {
			continue
		}
		name := key[len(prefix):]
		out[name] = map[string]string{name: value}
	}
	return out, nil
}

// hasPrefix matches as the OS matches variable names: case-insensitively on Windows.
func hasPrefix(key, prefix string) bool {
	if runtime.GOOS == "windows" {
		return strings.EqualFold(key[:len(prefix)], prefix)
	}
	return strings.HasPrefix(key, prefix)
}

func (s *Store) Features() []secretstores.Feature { return []secretstores.Feature{} }

func (s *Store) Close() error { return nil }
