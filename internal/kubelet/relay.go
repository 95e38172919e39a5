package kubelet

import (
	"errors"
	"io"
	"net"
	"sync"
)

// relays joins the connections accepted on its listeners to connections it dials, and
// closes all of them at once.
type relays struct {
	mu     sync.Mutex
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// serve accepts on ln until Close and joins each connection to one that dial opens,
// copying both ways and passing half-closes on.
func (r *relays) serve(ln net.Listener, dial func() (net.Conn, error)) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = ln.Close()
		return
	}
	r.lns = append(r.lns, ln)
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			go r.handle(in, dial)
		}
	}()
}

func (r *relays) handle(in net.Conn, dial func() (net.Conn, error)) {
	if !r.track(in) {
		_ = in.Close()
		return
	}
	defer r.untrack(in)
	out, err := dial()
	if err != nil {
		_ = in.Close()
		return
	}
	if !r.track(out) {
		_ = in.Close()
		_ = out.Close()
		return
	}
	defer r.untrack(out)
	join(in, out)
}

func (r *relays) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.conns == nil {
		r.conns = map[net.Conn]struct{}{}
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relays) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

// Close stops the listeners and cuts the connections in flight.
func (r *relays) Close() {
	r.mu.Lock()
	r.closed = true
	lns, conns := r.lns, r.conns
	r.lns, r.conns = nil, nil
	r.mu.Unlock()
	for _, ln := range lns {
		_ = ln.Close()
	}
	for c := range conns {
		_ = c.Close()
	}
	r.wg.Wait()
}

func join(a, b net.Conn) {
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if c, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = c.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
}
