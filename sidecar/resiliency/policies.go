package resiliency

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

// Dapr's defaults for the policies.
const (
	DefaultRetryDuration      = 5 * time.Second        // constant policy
	DefaultInitialInterval    = 500 * time.Millisecond // exponential policy
	DefaultMaxInterval        = 60 * time.Second       // exponential policy
	DefaultMultiplier         = 1.5                    // exponential policy
	DefaultRandomization      = 0.5                    // exponential policy
	DefaultBreakerTimeout     = 60 * time.Second
	DefaultBreakerMaxRequests = 1
	DefaultTrip               = "consecutiveFailures > 5"
)

// Policies are the timeouts, retries and circuit breakers of a set of Resiliency
// resources, compiled for lookups by Target. The zero value and nil apply nothing.
type Policies struct {
	timeouts map[string]time.Duration
	retries  map[string]*retryPolicy
	breakers map[string]*breakerPolicy

	apps, actors, compOut, compIn map[string]names

	log logr.Logger
	// now and jitter are the clock and the random source (tests replace them).
	now    func() time.Time
	jitter func() float64

	mu     sync.Mutex
	states map[breakerKey]*breaker
}

// names are the policies a target names, by policy name; empty is none.
type names struct{ timeout, retry, breaker string }

type retryPolicy struct {
	exponential bool
	duration    time.Duration // constant
	maxInterval time.Duration // exponential
	maxRetries  int           // -1: no limit
	// httpCodes and grpcCodes are `matching`: the status codes that are retried.
	httpCodes, grpcCodes codeSet
}

// retries reports whether the retry policy retries a failure, as Dapr's
// RetryConditionMatch decides: an answer with a status is retried when `matching`
// lists its code (or lists no code of its kind); a failure without a status (the
// target could not be reached, the attempt timed out) always is.
func (rp *retryPolicy) retries(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return true
	}
	if se.GRPC {
		return rp.grpcCodes.has(se.Code)
	}
	return rp.httpCodes.has(se.Code)
}

type breakerPolicy struct {
	name        string
	maxRequests int
	interval    time.Duration
	timeout     time.Duration
	trip        trip
}

// resolved is what applies to one call.
type resolved struct {
	timeout time.Duration
	retry   *retryPolicy
	breaker *breakerPolicy
	key     breakerKey
}

type breakerKey struct {
	family, name, policy string
}

// Compile merges the Resiliency resources (already filtered by scope) into Policies. A
// policy defined twice takes the later definition, as does a target. A target that
// names a policy defined by none of them is an error; so is a malformed duration or
// retry `matching` list. A circuit breaker whose trip expression does not compile is
// logged as an error and left out, with the targets that name it: the other policies
// apply.
func Compile(list []*v1alpha1.Resiliency, log logr.Logger) (*Policies, error) {
	p := &Policies{
		timeouts: map[string]time.Duration{},
		retries:  map[string]*retryPolicy{},
		breakers: map[string]*breakerPolicy{},
		apps:     map[string]names{},
		actors:   map[string]names{},
		compOut:  map[string]names{},
		compIn:   map[string]names{},
		log:      log,
		states:   map[breakerKey]*breaker{},
	}
	var errs []error
	// Breakers whose trip does not compile are left out, and so are not unknown names.
	badTrip := map[string]bool{}
	for _, r := range list {
		if r == nil {
			continue
		}
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("Resiliency %q: "+format, append([]any{r.Name}, args...)...))
		}
		pol := r.Spec.Policies
		for _, name := range sortedKeys(pol.Timeouts) {
			d, err := parseDuration(pol.Timeouts[name], 0)
			if err != nil {
				fail("policies.timeouts.%s: %v", name, err)
				continue
			}
			p.timeouts[name] = d
		}
		for _, name := range sortedKeys(pol.Retries) {
			rp, err := compileRetry(pol.Retries[name])
			if err != nil {
				fail("policies.retries.%s: %v", name, err)
				continue
			}
			p.retries[name] = rp
		}
		for _, name := range sortedKeys(pol.CircuitBreakers) {
			bp, err := compileBreaker(name, pol.CircuitBreakers[name])
			var te *tripError
			if errors.As(err, &te) {
				log.Error(fmt.Errorf("Resiliency %q: policies.circuitBreakers.%s: %w", r.Name, name, err),
					"Circuit breaker left out: its trip expression does not compile", "Resiliency", r.Name, "circuitBreaker", name)
				delete(p.breakers, name)
				badTrip[name] = true
				continue
			}
			if err != nil {
				fail("policies.circuitBreakers.%s: %v", name, err)
				continue
			}
			delete(badTrip, name)
			p.breakers[name] = bp
		}
	}
	// Targets are resolved against the policies of every resource.
	for _, r := range list {
		if r == nil {
			continue
		}
		check := func(where string, n names) {
			if _, ok := p.timeouts[n.timeout]; n.timeout != "" && !ok {
				errs = append(errs, fmt.Errorf("Resiliency %q: %s.timeout names %q, which is not in policies.timeouts", r.Name, where, n.timeout))
			}
			if _, ok := p.retries[n.retry]; n.retry != "" && !ok {
				errs = append(errs, fmt.Errorf("Resiliency %q: %s.retry names %q, which is not in policies.retries", r.Name, where, n.retry))
			}
			if _, ok := p.breakers[n.breaker]; n.breaker != "" && !ok && !badTrip[n.breaker] {
				errs = append(errs, fmt.Errorf("Resiliency %q: %s.circuitBreaker names %q, which is not in policies.circuitBreakers", r.Name, where, n.breaker))
			}
		}
		t := r.Spec.Targets
		for _, id := range sortedKeys(t.Apps) {
			a := t.Apps[id]
			n := names{a.Timeout, a.Retry, a.CircuitBreaker}
			check("targets.apps."+id, n)
			p.apps[id] = n
		}
		for _, typ := range sortedKeys(t.Actors) {
			a := t.Actors[typ]
			n := names{a.Timeout, a.Retry, a.CircuitBreaker}
			check("targets.actors."+typ, n)
			p.actors[typ] = n
		}
		for _, c := range sortedKeys(t.Components) {
			cp := t.Components[c]
			out := names{cp.Outbound.Timeout, cp.Outbound.Retry, cp.Outbound.CircuitBreaker}
			in := names{cp.Inbound.Timeout, cp.Inbound.Retry, cp.Inbound.CircuitBreaker}
			check("targets.components."+c+".outbound", out)
			check("targets.components."+c+".inbound", in)
			p.compOut[c] = out
			p.compIn[c] = in
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func parseDuration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

func compileRetry(r v1alpha1.Retry) (*retryPolicy, error) {
	rp := &retryPolicy{maxRetries: -1}
	switch r.Policy {
	case "", "constant":
	case "exponential":
		rp.exponential = true
	default:
		return nil, fmt.Errorf("policy %q is neither constant nor exponential", r.Policy)
	}
	var err error
	if rp.duration, err = parseDuration(r.Duration, DefaultRetryDuration); err != nil {
		return nil, fmt.Errorf("duration: %w", err)
	}
	if rp.maxInterval, err = parseDuration(r.MaxInterval, DefaultMaxInterval); err != nil {
		return nil, fmt.Errorf("maxInterval: %w", err)
	}
	if r.MaxRetries != nil && *r.MaxRetries >= 0 {
		rp.maxRetries = int(*r.MaxRetries)
	}
	if rp.httpCodes, err = parseCodes(r.Matching.HTTPStatusCodes, httpCodes, "an HTTP"); err != nil {
		return nil, fmt.Errorf("matching.httpStatusCodes: %w", err)
	}
	if rp.grpcCodes, err = parseCodes(r.Matching.GRPCStatusCodes, grpcCodes, "a gRPC"); err != nil {
		return nil, fmt.Errorf("matching.gRPCStatusCodes: %w", err)
	}
	return rp, nil
}

// tripError is a trip expression that does not compile.
type tripError struct {
	expr string
	err  error
}

func (e *tripError) Error() string { return fmt.Sprintf("trip %q: %v", e.expr, e.err) }
func (e *tripError) Unwrap() error { return e.err }

func compileBreaker(name string, c v1alpha1.CircuitBreaker) (*breakerPolicy, error) {
	bp := &breakerPolicy{name: name, maxRequests: int(c.MaxRequests)}
	if bp.maxRequests <= 0 {
		bp.maxRequests = DefaultBreakerMaxRequests
	}
	var err error
	if bp.interval, err = parseDuration(c.Interval, 0); err != nil {
		return nil, fmt.Errorf("interval: %w", err)
	}
	if bp.timeout, err = parseDuration(c.Timeout, DefaultBreakerTimeout); err != nil {
		return nil, fmt.Errorf("timeout: %w", err)
	}
	if bp.trip, err = compileTrip(c.Trip); err != nil {
		return nil, &tripError{expr: c.Trip, err: err}
	}
	return bp, nil
}

// lookup finds what applies to a call to target: the policies the target names, else
// Dapr's default policies (DefaultAppRetryPolicy, DefaultComponentOutboundTimeoutPolicy,
// DefaultRetryPolicy, ...). Calls from the sidecar to its own app carry no policy: the
// calling sidecar applies the app's.
func (p *Policies) lookup(t Target) (resolved, bool) {
	var n names
	var family []string // default policy infixes, most specific first
	switch {
	case (t.Kind == "app" || t.Kind == "endpoint") && t.Direction != Inbound:
		n, family = p.apps[t.Name], []string{"App", ""}
	case t.Kind == "actor":
		n, family = p.actors[t.Name], []string{"Actor", ""}
	case t.Kind == "component" && t.Direction == Inbound:
		n, family = p.compIn[t.Name], []string{"ComponentInbound", "Component", ""}
	case t.Kind == "component":
		n, family = p.compOut[t.Name], []string{"ComponentOutbound", "Component", ""}
	default:
		return resolved{}, false
	}
	pick := func(name, kind string, has func(string) bool) string {
		if name != "" {
			return name
		}
		for _, f := range family {
			if d := "Default" + f + kind + "Policy"; has(d) {
				return d
			}
		}
		return ""
	}
	var r resolved
	if name := pick(n.timeout, "Timeout", func(s string) bool { _, ok := p.timeouts[s]; return ok }); name != "" {
		r.timeout = p.timeouts[name]
	}
	if name := pick(n.retry, "Retry", func(s string) bool { _, ok := p.retries[s]; return ok }); name != "" {
		r.retry = p.retries[name]
	}
	if name := pick(n.breaker, "CircuitBreaker", func(s string) bool { _, ok := p.breakers[s]; return ok }); name != "" {
		r.breaker = p.breakers[name]
		if r.breaker != nil {
			r.key = breakerKey{family: t.Kind + "/" + string(t.Direction), name: t.Name, policy: name}
		}
	}
	return r, r.timeout > 0 || r.retry != nil || r.breaker != nil
}

// MayRetry reports whether a failed call to target may be run again, so that the
// caller keeps what another attempt needs (a request body).
func (p *Policies) MayRetry(t Target) bool {
	if p == nil {
		return false
	}
	r, _ := p.lookup(t)
	return r.retry != nil && r.retry.maxRetries != 0
}

func (p *Policies) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

func (p *Policies) breakerFor(r resolved) *breaker {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.states[r.key]
	if b == nil {
		b = &breaker{pol: r.breaker, now: p.clock}
		p.states[r.key] = b
	}
	return b
}

// Run runs op under the policies that apply to target: each attempt under the
// timeout and the circuit breaker, the attempts as the retry policy says (a
// StatusError only when `matching` lists its code). An error after the caller's
// context ended, or from an open circuit breaker, is not retried. The context of a
// successful attempt, or of one that failed with a StatusError, is not cancelled
// before its deadline, since a response may stream after Run returns.
func (p *Policies) Run(ctx context.Context, target Target, op func(ctx context.Context) error) error {
	if p == nil {
		return Direct{}.Run(ctx, target, op)
	}
	r, ok := p.lookup(target)
	if !ok {
		return Direct{}.Run(ctx, target, op)
	}
	var b *breaker
	if r.breaker != nil {
		b = p.breakerFor(r)
	}
	for attempt := 0; ; attempt++ {
		err := p.attempt(ctx, r.timeout, b, target, op)
		if err == nil {
			return nil
		}
		if e, stop := unpermanent(err); stop {
			return e
		}
		if ctx.Err() != nil || errors.Is(err, ErrCircuitOpen) || errors.Is(err, ErrTooManyRequests) {
			return err
		}
		if r.retry == nil || (r.retry.maxRetries >= 0 && attempt >= r.retry.maxRetries) || !r.retry.retries(err) {
			return err
		}
		t := time.NewTimer(p.backoff(r.retry, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func (p *Policies) attempt(ctx context.Context, timeout time.Duration, b *breaker, target Target, op func(context.Context) error) error {
	var gen uint64
	if b != nil {
		var err error
		if gen, err = b.allow(); err != nil {
			return fmt.Errorf("%s %s: %w", target.Kind, target.Name, err)
		}
	}
	actx, cancel := ctx, context.CancelFunc(nil)
	if timeout > 0 {
		actx, cancel = withTimeout(ctx, timeout)
	}
	err := op(actx)
	if err != nil && cancel != nil && !isStatus(err) {
		cancel()
	}
	if b != nil {
		switch {
		case err == nil:
			b.done(gen, outcomeSuccess)
		case ctx.Err() != nil:
			b.done(gen, outcomeIgnored)
		default:
			if b.done(gen, outcomeFailure) {
				p.log.Info("Circuit breaker opened", "target", target.Kind, "name", target.Name, "circuitBreaker", b.pol.name)
			}
		}
	}
	return err
}

// withTimeout is context.WithTimeout; a successful attempt leaves its context to its
// deadline or its parent's end.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// backoff is the wait before retry number attempt+1.
func (p *Policies) backoff(rp *retryPolicy, attempt int) time.Duration {
	if !rp.exponential {
		return rp.duration
	}
	// As Dapr's exponential back-off: 500ms, then times 1.5, each randomised by ±50%,
	// capped by maxInterval.
	base := DefaultInitialInterval
	for range attempt {
		base = time.Duration(float64(base) * DefaultMultiplier)
		if base >= rp.maxInterval {
			base = rp.maxInterval
			break
		}
	}
	j := rand.Float64
	if p.jitter != nil {
		j = p.jitter
	}
	d := time.Duration(float64(base) * (1 - DefaultRandomization + 2*DefaultRandomization*j()))
	return min(d, rp.maxInterval)
}
