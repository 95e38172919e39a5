package selfhosted

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/nameresolution"
)

// DefaultTTL is how long a resolution is reused before the registry is read again.
const DefaultTTL = 2 * time.Second

// Resolver resolves app ids through the registry directory: a running sidecar's
// internal gRPC port on loopback. Entries of sidecars that are gone are ignored.
// Resolutions are cached for TTL, since reading the registry costs a file read and a
// process check per call; Forget drops one, when a call to it failed.
type Resolver struct {
	// Dir is the registry directory (see Dir).
	Dir string
	// Host is where the sidecars listen; 127.0.0.1 when empty.
	Host string
	// TTL of a cached resolution: 0 is DefaultTTL, negative turns the cache off.
	TTL time.Duration
	// Now is the clock of the cache; nil is time.Now.
	Now func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	addr    string
	expires time.Time
}

var _ nameresolution.Forgetter = (*Resolver)(nil)

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Resolve ignores the namespace: one machine is one namespace, as with Dapr's mDNS
// resolver.
func (r *Resolver) Resolve(_ context.Context, appID, _ string) (string, error) {
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl > 0 {
		r.mu.Lock()
		c, ok := r.cache[appID]
		r.mu.Unlock()
		if ok && r.now().Before(c.expires) {
			return c.addr, nil
		}
	}
	addr, err := r.lookup(appID)
	if err != nil || ttl < 0 {
		return addr, err
	}
	r.mu.Lock()
	if r.cache == nil {
		r.cache = map[string]cached{}
	}
	r.cache[appID] = cached{addr: addr, expires: r.now().Add(ttl)}
	r.mu.Unlock()
	return addr, nil
}

// Forget drops the cached resolution of appID.
func (r *Resolver) Forget(appID, _ string) {
	r.mu.Lock()
	delete(r.cache, appID)
	r.mu.Unlock()
}

func (r *Resolver) lookup(appID string) (string, error) {
	e, err := Lookup(r.Dir, appID)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%w: no sidecar of app %q is running (registry %s)", nameresolution.ErrNotFound, appID, r.Dir)
		}
		return "", err
	}
	if e.InternalGRPCPort <= 0 {
		return "", fmt.Errorf("%w: the registry entry of app %q has no internal gRPC port", nameresolution.ErrNotFound, appID)
	}
	host := r.Host
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(e.InternalGRPCPort)), nil
}
