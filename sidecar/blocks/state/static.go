package state

import (
	"sort"
	"sync"
)

// StaticStores is a fixed set of stores, for tests and for tools that run the block
// without the runtime's hot-swapping slots. Set is safe while calls are in flight.
type StaticStores struct {
	mu     sync.RWMutex
	stores map[string]Handle
}

// NewStaticStores returns a set holding the handles by name.
func NewStaticStores(stores map[string]Handle) *StaticStores {
	s := &StaticStores{stores: map[string]Handle{}}
	for k, v := range stores {
		s.stores[k] = v
	}
	return s
}

// Set adds or replaces a store.
func (s *StaticStores) Set(name string, h Handle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stores == nil {
		s.stores = map[string]Handle{}
	}
	s.stores[name] = h
}

// Acquire returns the store by name; release does nothing, since nothing is swapped.
func (s *StaticStores) Acquire(name string) (Handle, func(), bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.stores[name]
	return h, func() {}, ok
}

// Names lists the stores.
func (s *StaticStores) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.stores))
	for k := range s.stores {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
