// Package apitest holds what the transports' tests share: a Runtime whose health and
// metadata a test sets, and the real state block over in-memory stores.
package apitest

import (
	"sync"

	"github.com/outrigger-dev/outrigger/sidecar/api"
)

// Runtime is an api.Runtime for transport tests: the transports only read its state and
// record calls, so a plain struct stands in for the sidecar.
type Runtime struct {
	mu          sync.Mutex
	md          api.Metadata
	healthy     error
	outbound    error
	shutdownCh  chan struct{}
	shutdownOne sync.Once
}

// NewRuntime returns a healthy runtime reporting md; SetExtendedMetadata changes its
// own copy of md.Extended.
func NewRuntime(md api.Metadata) *Runtime {
	ext := make(map[string]string, len(md.Extended))
	for k, v := range md.Extended {
		ext[k] = v
	}
	md.Extended = ext
	return &Runtime{md: md, shutdownCh: make(chan struct{})}
}

func (r *Runtime) Metadata() api.Metadata {
	r.mu.Lock()
	defer r.mu.Unlock()
	md := r.md
	md.Extended = make(map[string]string, len(r.md.Extended))
	for k, v := range r.md.Extended {
		md.Extended[k] = v
	}
	return md
}

func (r *Runtime) SetExtendedMetadata(key, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.md.Extended[key] = value
}

func (r *Runtime) Healthy() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.healthy
}

func (r *Runtime) OutboundHealthy() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.outbound
}

// SetHealth sets what Healthy and OutboundHealthy return.
func (r *Runtime) SetHealth(healthy, outbound error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.healthy, r.outbound = healthy, outbound
}

func (r *Runtime) Shutdown() { r.shutdownOne.Do(func() { close(r.shutdownCh) }) }

// ShutdownCalled is closed once Shutdown has been called.
func (r *Runtime) ShutdownCalled() <-chan struct{} { return r.shutdownCh }
