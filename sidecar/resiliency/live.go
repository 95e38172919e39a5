package resiliency

import (
	"context"
	"sync/atomic"
)

// Live is a Runner whose policies can be replaced while calls run: each call uses the
// policies in force when it starts. The zero value runs every call once, as Direct.
type Live struct {
	p atomic.Pointer[Policies]
}

// Store puts p in force for the calls that start from now on; nil applies nothing.
func (l *Live) Store(p *Policies) { l.p.Store(p) }

// Load returns the policies in force.
func (l *Live) Load() *Policies { return l.p.Load() }

// MayRetry reports whether the policies in force may run a failed call to target again.
func (l *Live) MayRetry(t Target) bool { return l.p.Load().MayRetry(t) }

// Run runs op under the policies in force.
func (l *Live) Run(ctx context.Context, target Target, op func(ctx context.Context) error) error {
	return l.p.Load().Run(ctx, target, op)
}

var (
	_ Runner = (*Live)(nil)
	_ Runner = (*Policies)(nil)
)
