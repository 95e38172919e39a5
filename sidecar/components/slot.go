package components

import (
	"sync"
	"sync/atomic"
)

// Slot holds the live instance of one loaded component. Calls acquire the current
// instance and release it when done; a swap publishes the new instance at once and
// closes the old one when its last in-flight call has released it. Nothing blocks a
// call while a swap happens.
type Slot[T Component] struct {
	cur atomic.Pointer[instance[T]]
}

type instance[T Component] struct {
	value    T
	inflight sync.WaitGroup
	mu       sync.Mutex // guards retired against a concurrent acquire
	retired  bool
}

// NewSlot returns a slot holding v.
func NewSlot[T Component](v T) *Slot[T] {
	s := &Slot[T]{}
	s.cur.Store(&instance[T]{value: v})
	return s
}

// Acquire returns the current instance and a release function, or ok=false once the
// slot is closed. The caller must call release exactly once.
func (s *Slot[T]) Acquire() (v T, release func(), ok bool) {
	for {
		in := s.cur.Load()
		if in == nil {
			var zero T
			return zero, func() {}, false
		}
		in.mu.Lock()
		if in.retired {
			// Lost a race with a swap: the new instance is already published.
			in.mu.Unlock()
			continue
		}
		in.inflight.Add(1)
		in.mu.Unlock()
		return in.value, in.inflight.Done, true
	}
}

// Swap publishes v and returns a channel that is closed, with the old instance's Close
// error, once the old instance has drained and been closed.
func (s *Slot[T]) Swap(v T) <-chan error {
	return s.retire(s.cur.Swap(&instance[T]{value: v}))
}

// Close empties the slot: later Acquire calls fail, and the instance is closed when
// its in-flight calls finish.
func (s *Slot[T]) Close() <-chan error {
	return s.retire(s.cur.Swap(nil))
}

func (s *Slot[T]) retire(old *instance[T]) <-chan error {
	done := make(chan error, 1)
	if old == nil {
		done <- nil
		close(done)
		return done
	}
	old.mu.Lock()
	old.retired = true
	old.mu.Unlock()
	go func() {
		old.inflight.Wait()
		done <- old.value.Close()
		close(done)
	}()
	return done
}
