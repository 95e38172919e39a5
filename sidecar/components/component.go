package components

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Metadata is what a component's Init receives: its manifest's identity and its
// metadata items with secretKeyRef and envRef already resolved, every value as text
// (a YAML number or boolean arrives as its JSON text, as Dapr passes it).
type Metadata struct {
	Name       string
	Type       string
	Version    string
	Properties map[string]string
	// AppID and Namespace of the sidecar, for components that scope keys or consumer
	// groups by them.
	AppID     string
	Namespace string
}

// Property returns a metadata value by name, case-insensitively as Dapr matches them.
func (m Metadata) Property(name string) (string, bool) {
	if v, ok := m.Properties[name]; ok {
		return v, true
	}
	for k, v := range m.Properties {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// Component is what every family's interface starts with.
type Component interface {
	Init(ctx context.Context, md Metadata) error
	Close() error
}

// Registry maps a type name ("state.redis") and version to a constructor. Each family
// keeps one; the runtime registers every implementation it ships.
type Registry[T Component] struct {
	mu    sync.RWMutex
	ctors map[string]func() T
}

func registryKey(typ, version string) string {
	if version == "" {
		version = "v1"
	}
	return strings.ToLower(typ) + "/" + strings.ToLower(version)
}

// Register adds a constructor for each version given (v1 when none is).
func (r *Registry[T]) Register(typ string, ctor func() T, versions ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctors == nil {
		r.ctors = map[string]func() T{}
	}
	if len(versions) == 0 {
		versions = []string{"v1"}
	}
	for _, v := range versions {
		r.ctors[registryKey(typ, v)] = ctor
	}
	implemented.Store(strings.ToLower(typ), true)
}

// Create returns a new, uninitialised instance of the type and version.
func (r *Registry[T]) Create(typ, version string) (T, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ctor, ok := r.ctors[registryKey(typ, version)]
	if !ok {
		var zero T
		return zero, fmt.Errorf("component type %s/%s is not implemented by Outrigger (available: %s)", typ, version, strings.Join(r.typesLocked(), ", "))
	}
	return ctor(), nil
}

// Types lists the registered "type/version" keys.
func (r *Registry[T]) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.typesLocked()
}

func (r *Registry[T]) typesLocked() []string {
	out := make([]string, 0, len(r.ctors))
	for k := range r.ctors {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
