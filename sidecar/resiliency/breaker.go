package resiliency

import (
	"errors"
	"sync"
	"time"
)

// ErrCircuitOpen is returned without calling the target while its circuit breaker is
// open; ErrTooManyRequests when a half-open breaker already lets its maxRequests
// through. Neither is retried.
var (
	ErrCircuitOpen     = errors.New("circuit breaker is open")
	ErrTooManyRequests = errors.New("too many requests while the circuit breaker is half-open")
)

type breakerState int

const (
	stateClosed breakerState = iota
	stateOpen
	stateHalfOpen
)

type outcome int

const (
	outcomeSuccess outcome = iota
	outcomeFailure
	outcomeIgnored // the caller gave up: neither a success nor a failure
)

// breaker is one target's circuit breaker, as sony/gobreaker (Dapr's) behaves:
// closed, it opens when a failure makes its trip expression true; open, it refuses
// calls for timeout, then half-opens; half-open, it lets maxRequests calls through and
// closes when that many succeed in a row, or opens again at the first failure.
type breaker struct {
	pol *breakerPolicy
	now func() time.Time

	mu         sync.Mutex
	state      breakerState
	generation uint64
	counts     counts // of this generation
	expiry     time.Time
}

// current moves to the state the clock calls for; b.mu is held.
func (b *breaker) current(now time.Time) {
	switch b.state {
	case stateClosed:
		if b.pol.interval > 0 && !b.expiry.IsZero() && !now.Before(b.expiry) {
			b.newGeneration(now)
		}
	case stateOpen:
		if !now.Before(b.expiry) {
			b.set(stateHalfOpen, now)
		}
	}
}

func (b *breaker) newGeneration(now time.Time) {
	b.generation++
	b.counts = counts{}
	switch b.state {
	case stateClosed:
		if b.pol.interval > 0 {
			b.expiry = now.Add(b.pol.interval)
		} else {
			b.expiry = time.Time{}
		}
	case stateOpen:
		b.expiry = now.Add(b.pol.timeout)
	default:
		b.expiry = time.Time{}
	}
}

func (b *breaker) set(s breakerState, now time.Time) {
	b.state = s
	b.newGeneration(now)
}

// allow admits a call or says why not; the generation goes back to done.
func (b *breaker) allow() (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.current(now)
	switch b.state {
	case stateOpen:
		return 0, ErrCircuitOpen
	case stateHalfOpen:
		if b.counts.requests >= int64(b.pol.maxRequests) {
			return 0, ErrTooManyRequests
		}
	}
	b.counts.requests++
	if b.state == stateClosed && b.pol.interval > 0 && b.expiry.IsZero() {
		b.expiry = now.Add(b.pol.interval)
	}
	return b.generation, nil
}

// done records a call's outcome and reports whether the breaker opened.
func (b *breaker) done(gen uint64, o outcome) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.current(now)
	if gen != b.generation {
		return false
	}
	c := &b.counts
	switch o {
	case outcomeIgnored:
		// As if the call had not been made: in half-open, it frees its place.
		if c.requests > 0 {
			c.requests--
		}
	case outcomeSuccess:
		c.totalSuccesses++
		c.consecutiveSuccesses++
		c.consecutiveFailures = 0
		if b.state == stateHalfOpen && c.consecutiveSuccesses >= int64(b.pol.maxRequests) {
			b.set(stateClosed, now)
		}
	case outcomeFailure:
		c.totalFailures++
		c.consecutiveFailures++
		c.consecutiveSuccesses = 0
		if b.state == stateHalfOpen || (b.state == stateClosed && b.pol.trip.trips(c)) {
			b.set(stateOpen, now)
			return true
		}
	}
	return false
}
