// Package resiliency is the one seam every outbound call from a building block to a
// component goes through, so that timeouts, retries, circuit breakers, metrics and
// tracing are added in one place.
package resiliency

import "context"

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
	return op(ctx)
}
