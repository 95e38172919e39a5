// Package resiliency is the one seam every outbound call from a building block to a
// component goes through, so that timeouts, retries, circuit breakers, metrics and
// tracing are added in one place.
package resiliency

import (
	"context"
	"errors"
)

// Direction of a call relative to the sidecar.
type Direction string

const (
	Outbound Direction = "outbound" // sidecar to component or to another app
	Inbound  Direction = "inbound"  // sidecar to its own app (deliveries)
)

// Target names what a call reaches: a component ("statestore"), an app or an actor type.
type Target struct {
	Kind      string // "component", "app", "actor"
	Name      string
	Direction Direction
	// Operation is the block's name for the call ("state.get"), for metrics and traces.
	Operation string
}

// Runner runs op under the policies that apply to target.
type Runner interface {
	Run(ctx context.Context, target Target, op func(ctx context.Context) error) error
}

// Direct runs every operation once, as is: the runner until Resiliency resources are
// applied.
type Direct struct{}

func (Direct) Run(ctx context.Context, _ Target, op func(ctx context.Context) error) error {
	err, _ := unpermanent(op(ctx))
	return err
}

// MayRetry reports whether r may run a failed call to target more than once; a
// runner that cannot tell is taken not to.
func MayRetry(r Runner, target Target) bool {
	m, ok := r.(interface{ MayRetry(Target) bool })
	return ok && m.MayRetry(target)
}

// permanentError is an error that no retry policy retries.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err so that Run returns it (unwrapped) at once instead of retrying:
// an attempt that cannot be repeated, such as a request whose streamed body was partly
// sent.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// unpermanent reports whether err was marked Permanent, and returns it unwrapped.
func unpermanent(err error) (error, bool) {
	var pe *permanentError
	if errors.As(err, &pe) {
		return pe.err, true
	}
	return err, false
}
