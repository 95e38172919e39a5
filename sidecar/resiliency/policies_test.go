package resiliency

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

func parse(t *testing.T, docs ...string) []*v1alpha1.Resiliency {
	t.Helper()
	var out []*v1alpha1.Resiliency
	for _, d := range docs {
		r := &v1alpha1.Resiliency{}
		if err := yaml.UnmarshalStrict([]byte(d), r); err != nil {
			t.Fatalf("%v\n%s", err, d)
		}
		out = append(out, r)
	}
	return out
}

const full = `
metadata: {name: full}
spec:
  policies:
    timeouts:
      general: 5s
      fast: 50ms
      DefaultComponentOutboundTimeoutPolicy: 7s
      DefaultTimeoutPolicy: 9s
    retries:
      plain: {}
      fixed: {policy: constant, duration: 10ms, maxRetries: 3}
      expo: {policy: exponential, maxInterval: 2s, maxRetries: -1}
      never: {maxRetries: 0}
    circuitBreakers:
      simple: {maxRequests: 2, timeout: 30s, trip: consecutiveFailures > 3}
      dflt: {}
      fancy: {trip: "requests > 10 && failureRatio > 0.5"}
  targets:
    apps:
      b: {timeout: fast, retry: fixed, circuitBreaker: simple}
      c: {timeout: general, circuitBreaker: fancy}
    actors:
      cart: {retry: expo}
    components:
      statestore:
        outbound: {retry: fixed, circuitBreaker: dflt}
        inbound: {timeout: general}
`

func TestCompile(t *testing.T) {
	p, err := Compile(parse(t, full), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		target  Target
		timeout time.Duration
		retry   *retryPolicy
		breaker string
		trip    int
	}{
		{Target{Kind: "app", Name: "b", Direction: Outbound}, 50 * time.Millisecond,
			&retryPolicy{duration: 10 * time.Millisecond, maxInterval: DefaultMaxInterval, maxRetries: 3}, "simple", 3},
		// A trip expression that does not compile (failureRatio is no count) leaves the
		// breaker out.
		{Target{Kind: "app", Name: "c", Direction: Outbound}, 5 * time.Second, nil, "", 0},
		// HTTPEndpoints are targeted as apps; the default timeout applies to the others.
		{Target{Kind: "endpoint", Name: "b", Direction: Outbound}, 50 * time.Millisecond,
			&retryPolicy{duration: 10 * time.Millisecond, maxInterval: DefaultMaxInterval, maxRetries: 3}, "simple", 3},
		{Target{Kind: "app", Name: "other", Direction: Outbound}, 9 * time.Second, nil, "", 0},
		// The sidecar's calls to its own app carry no policy.
		{Target{Kind: "app", Name: "b", Direction: Inbound}, 0, nil, "", 0},
		{Target{Kind: "actor", Name: "cart"}, 9 * time.Second,
			&retryPolicy{exponential: true, duration: DefaultRetryDuration, maxInterval: 2 * time.Second, maxRetries: -1}, "", 0},
		{Target{Kind: "component", Name: "statestore", Direction: Outbound}, 7 * time.Second,
			&retryPolicy{duration: 10 * time.Millisecond, maxInterval: DefaultMaxInterval, maxRetries: 3}, "dflt", 5},
		{Target{Kind: "component", Name: "statestore", Direction: Inbound}, 5 * time.Second, nil, "", 0},
		{Target{Kind: "component", Name: "pubsub", Direction: Outbound}, 7 * time.Second, nil, "", 0},
		{Target{Kind: "component", Name: "pubsub", Direction: Inbound}, 9 * time.Second, nil, "", 0},
	}
	for _, tt := range tests {
		r, _ := p.lookup(tt.target)
		if r.timeout != tt.timeout {
			t.Errorf("%+v: timeout %v, want %v", tt.target, r.timeout, tt.timeout)
		}
		switch {
		case (r.retry == nil) != (tt.retry == nil):
			t.Errorf("%+v: retry %+v, want %+v", tt.target, r.retry, tt.retry)
		case r.retry != nil && !reflect.DeepEqual(*r.retry, *tt.retry):
			t.Errorf("%+v: retry %+v, want %+v", tt.target, *r.retry, *tt.retry)
		}
		var name string
		var trip int
		if r.breaker != nil {
			name, trip = r.breaker.name, int(r.breaker.trip.after)
		}
		if name != tt.breaker || trip != tt.trip {
			t.Errorf("%+v: breaker %q trips after %d, want %q after %d", tt.target, name, trip, tt.breaker, tt.trip)
		}
	}
	if b := p.breakers["simple"]; b.maxRequests != 2 || b.timeout != 30*time.Second {
		t.Errorf("simple: %+v", *b)
	}
	if b := p.breakers["dflt"]; b.maxRequests != 1 || b.timeout != DefaultBreakerTimeout || b.interval != 0 {
		t.Errorf("dflt: %+v", *b)
	}
	if r := p.retries["plain"]; r.duration != DefaultRetryDuration || r.maxRetries != -1 || r.exponential {
		t.Errorf("plain: %+v", *r)
	}
	if r := p.retries["never"]; r.maxRetries != 0 {
		t.Errorf("never: %+v", *r)
	}
}

func TestCompileAcrossResources(t *testing.T) {
	// A target may name a policy of another resource; a later definition wins.
	p, err := Compile(parse(t,
		"metadata: {name: one}\nspec: {policies: {timeouts: {t: 1s}}}",
		"metadata: {name: two}\nspec: {policies: {timeouts: {t: 2s}}, targets: {apps: {b: {timeout: t}}}}",
	), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := p.lookup(Target{Kind: "app", Name: "b"}); r.timeout != 2*time.Second {
		t.Errorf("timeout %v", r.timeout)
	}
	if p, err := Compile(nil, logr.Discard()); err != nil || p == nil {
		t.Errorf("no resources: %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"unknown names", `
metadata: {name: r}
spec:
  policies: {timeouts: {t: 1s}}
  targets:
    apps: {b: {timeout: nope, retry: gone}}
    components: {s: {inbound: {circuitBreaker: missing}}}`,
			[]string{`Resiliency "r": targets.apps.b.timeout names "nope"`, `targets.apps.b.retry names "gone"`,
				`targets.components.s.inbound.circuitBreaker names "missing"`}},
		{"bad timeout", "metadata: {name: r}\nspec: {policies: {timeouts: {t: soon}}}", []string{"policies.timeouts.t"}},
		{"negative timeout", "metadata: {name: r}\nspec: {policies: {timeouts: {t: -1s}}}", []string{"negative duration"}},
		{"bad retry policy", "metadata: {name: r}\nspec: {policies: {retries: {x: {policy: linear}}}}", []string{`policy "linear"`}},
		{"bad retry duration", "metadata: {name: r}\nspec: {policies: {retries: {x: {duration: often}}}}", []string{"policies.retries.x: duration"}},
		{"bad maxInterval", "metadata: {name: r}\nspec: {policies: {retries: {x: {policy: exponential, maxInterval: 1}}}}", []string{"maxInterval"}},
		{"bad breaker timeout", "metadata: {name: r}\nspec: {policies: {circuitBreakers: {x: {timeout: later}}}}", []string{"policies.circuitBreakers.x: timeout"}},
		// The timeout that failed is not defined, so the target's reference fails too.
		{"reference to a bad policy", "metadata: {name: r}\nspec: {policies: {timeouts: {t: x}}, targets: {apps: {b: {timeout: t}}}}",
			[]string{"policies.timeouts.t", `targets.apps.b.timeout names "t"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(parse(t, tt.doc), logr.Discard())
			if err == nil {
				t.Fatalf("compiled: %+v", p)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// A target naming a circuit breaker whose trip does not compile is not an error:
	// the breaker is left out.
	if _, err := Compile(parse(t, "metadata: {name: r}\nspec: {policies: {circuitBreakers: {x: {trip: 'requests >'}}}, targets: {apps: {b: {circuitBreaker: x}}}}"), logr.Discard()); err != nil {
		t.Error(err)
	}
}

func TestBackoff(t *testing.T) {
	p := &Policies{jitter: func() float64 { return 0.5 }} // no randomisation
	expo := &retryPolicy{exponential: true, maxInterval: 2 * time.Second}
	want := []time.Duration{500 * time.Millisecond, 750 * time.Millisecond, 1125 * time.Millisecond, 1687500 * time.Microsecond, 2 * time.Second, 2 * time.Second}
	for i, w := range want {
		if got := p.backoff(expo, i); got != w {
			t.Errorf("exponential attempt %d: %v, want %v", i, got, w)
		}
	}
	p.jitter = func() float64 { return 0 }
	if got := p.backoff(expo, 0); got != 250*time.Millisecond {
		t.Errorf("low jitter: %v", got)
	}
	p.jitter = func() float64 { return 0.999999 }
	if got := p.backoff(expo, 10); got != 2*time.Second {
		t.Errorf("high jitter is capped: %v", got)
	}
	if got := p.backoff(&retryPolicy{duration: 3 * time.Second}, 7); got != 3*time.Second {
		t.Errorf("constant: %v", got)
	}
}

func compile(t *testing.T, doc string) *Policies {
	t.Helper()
	p, err := Compile(parse(t, doc), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var appB = Target{Kind: "app", Name: "b", Direction: Outbound, Operation: "invoke"}

func TestRunRetries(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		retry    string
		failures int // the op fails this many times, then succeeds
		calls    int
		err      error
	}{
		{"no retry policy", "", 5, 1, boom},
		{"maxRetries 0", "{duration: 1ms, maxRetries: 0}", 5, 1, boom},
		{"maxRetries 3 exhausted", "{duration: 1ms, maxRetries: 3}", 10, 4, boom},
		{"maxRetries 3 succeeds", "{duration: 1ms, maxRetries: 3}", 2, 3, nil},
		{"unlimited", "{duration: 1ms}", 20, 21, nil},
		{"unlimited -1", "{duration: 1ms, maxRetries: -1}", 7, 8, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "metadata: {name: r}\nspec:\n  targets: {apps: {b: {}}}\n"
			if tt.retry != "" {
				doc = "metadata: {name: r}\nspec:\n  policies: {retries: {r: " + tt.retry + "}}\n  targets: {apps: {b: {retry: r}}}\n"
			}
			p := compile(t, doc)
			calls := 0
			err := p.Run(context.Background(), appB, func(context.Context) error {
				calls++
				if calls <= tt.failures {
					return boom
				}
				return nil
			})
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Errorf("err %v, want %v", err, tt.err)
			}
			if calls != tt.calls {
				t.Errorf("%d calls, want %d", calls, tt.calls)
			}
		})
	}
}

func TestRunTimeoutPerAttempt(t *testing.T) {
	p := compile(t, `
metadata: {name: r}
spec:
  policies:
    timeouts: {short: 1ms}
    retries: {r: {duration: 1ms, maxRetries: 2}}
  targets: {apps: {b: {timeout: short, retry: r}}}`)
	var calls int
	var deadlines []time.Time
	err := p.Run(context.Background(), appB, func(ctx context.Context) error {
		calls++
		d, ok := ctx.Deadline()
		if !ok {
			t.Error("the attempt has no deadline")
		}
		deadlines = append(deadlines, d)
		<-ctx.Done() // a target that never answers
		return ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v", err)
	}
	if calls != 3 {
		t.Errorf("%d calls, want 3: each attempt has its own timeout", calls)
	}
	for i := 1; i < len(deadlines); i++ {
		if !deadlines[i].After(deadlines[i-1]) {
			t.Errorf("attempt %d shares the deadline of the one before", i)
		}
	}

	// A successful attempt's context outlives Run (a response may stream after it).
	p = compile(t, "metadata: {name: r}\nspec:\n  policies: {timeouts: {long: 1h}}\n  targets: {apps: {b: {timeout: long}}}")
	var attempt context.Context
	if err := p.Run(context.Background(), appB, func(ctx context.Context) error { attempt = ctx; return nil }); err != nil {
		t.Fatal(err)
	}
	if attempt.Err() != nil {
		t.Errorf("the successful attempt's context ended with Run: %v", attempt.Err())
	}
}

func TestRunNoRetryAfterCallerCancel(t *testing.T) {
	p := compile(t, `
metadata: {name: r}
spec:
  policies: {retries: {r: {duration: 1ms}}}
  targets: {apps: {b: {retry: r}}}`)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := p.Run(ctx, appB, func(ctx context.Context) error {
		calls++
		cancel()
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("err %v after %d calls, want canceled after 1", err, calls)
	}

	// Nor while waiting between attempts.
	p = compile(t, `
metadata: {name: r}
spec:
  policies: {retries: {r: {duration: 1h}}}
  targets: {apps: {b: {retry: r}}}`)
	ctx, cancel = context.WithCancel(context.Background())
	calls = 0
	done := make(chan error)
	go func() {
		done <- p.Run(ctx, appB, func(context.Context) error { calls++; return errors.New("boom") })
	}()
	cancel()
	if err := <-done; err == nil || calls != 1 {
		t.Errorf("err %v after %d calls", err, calls)
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestCircuitBreaker(t *testing.T) {
	p := compile(t, `
metadata: {name: r}
spec:
  policies: {circuitBreakers: {cb: {trip: consecutiveFailures > 2, timeout: 30s, maxRequests: 2}}}
  targets: {apps: {b: {circuitBreaker: cb}}}`)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p.now = clock.Now
	boom := errors.New("boom")
	var calls atomic.Int32
	run := func(target Target, err error) error {
		return p.Run(context.Background(), target, func(context.Context) error { calls.Add(1); return err })
	}

	// Successes reset the count of consecutive failures.
	for range 2 {
		_ = run(appB, boom)
	}
	_ = run(appB, nil)
	for range 2 {
		_ = run(appB, boom)
	}
	if err := run(appB, nil); err != nil {
		t.Fatalf("closed breaker: %v", err)
	}
	// Three failures in a row open it (consecutiveFailures > 2).
	for range 3 {
		if err := run(appB, boom); !errors.Is(err, boom) {
			t.Fatalf("closed breaker: %v", err)
		}
	}
	calls.Store(0)
	if err := run(appB, nil); !errors.Is(err, ErrCircuitOpen) || calls.Load() != 0 {
		t.Fatalf("open breaker: %v, %d calls", err, calls.Load())
	}
	// Another target has its own breaker.
	if err := run(Target{Kind: "endpoint", Name: "b", Direction: Outbound}, nil); err != nil {
		t.Fatalf("another target: %v", err)
	}
	clock.Add(29 * time.Second)
	if err := run(appB, nil); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("before the timeout: %v", err)
	}

	// After the timeout it half-opens; a failure opens it again.
	clock.Add(time.Second)
	if err := run(appB, boom); !errors.Is(err, boom) {
		t.Fatalf("half-open: %v", err)
	}
	if err := run(appB, nil); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("reopened: %v", err)
	}

	// Half-open again, maxRequests successes close it.
	clock.Add(30 * time.Second)
	for i := range 2 {
		if err := run(appB, nil); err != nil {
			t.Fatalf("half-open success %d: %v", i, err)
		}
	}
	for i := range 5 {
		if err := run(appB, nil); err != nil {
			t.Fatalf("closed again, call %d: %v", i, err)
		}
	}
}

func TestCircuitBreakerHalfOpenLimit(t *testing.T) {
	p := compile(t, `
metadata: {name: r}
spec:
  policies:
    circuitBreakers: {cb: {trip: consecutiveFailures > 0, timeout: 10s}}
    retries: {r: {duration: 1ms, maxRetries: 5}}
  targets: {components: {store: {outbound: {circuitBreaker: cb, retry: r}}}}`)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p.now = clock.Now
	store := Target{Kind: "component", Name: "store", Direction: Outbound, Operation: "state.get"}
	calls := 0
	// The first failure opens it; the retry meets the open breaker and stops.
	err := p.Run(context.Background(), store, func(context.Context) error { calls++; return errors.New("boom") })
	if !errors.Is(err, ErrCircuitOpen) || calls != 1 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	// Inbound calls to the same component have their own (no) breaker.
	if err := p.Run(context.Background(), Target{Kind: "component", Name: "store", Direction: Inbound}, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	clock.Add(10 * time.Second)
	// Half-open lets one request through; a second one meanwhile is refused.
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- p.Run(context.Background(), store, func(context.Context) error { close(entered); <-release; return nil })
	}()
	<-entered
	if err := p.Run(context.Background(), store, func(context.Context) error { return nil }); !errors.Is(err, ErrTooManyRequests) {
		t.Errorf("second half-open request: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background(), store, func(context.Context) error { return nil }); err != nil {
		t.Errorf("closed: %v", err)
	}
}

func TestCircuitBreakerIgnoresCallerCancel(t *testing.T) {
	p := compile(t, `
metadata: {name: r}
spec:
  policies: {circuitBreakers: {cb: {trip: consecutiveFailures > 0}}}
  targets: {apps: {b: {circuitBreaker: cb}}}`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p.Run(ctx, appB, func(ctx context.Context) error { return ctx.Err() })
	if err := p.Run(context.Background(), appB, func(context.Context) error { return nil }); err != nil {
		t.Errorf("a caller's cancellation opened the breaker: %v", err)
	}
}

func TestLive(t *testing.T) {
	var l Live
	calls := 0
	fail := func(context.Context) error { calls++; return errors.New("boom") }
	if err := l.Run(context.Background(), appB, fail); err == nil || calls != 1 {
		t.Fatalf("zero Live: %v, %d calls", err, calls)
	}
	l.Store(compile(t, `
metadata: {name: r}
spec:
  policies: {retries: {r: {duration: 1ms, maxRetries: 2}}}
  targets: {apps: {b: {retry: r}}}`))
	calls = 0
	_ = l.Run(context.Background(), appB, fail)
	if calls != 3 {
		t.Errorf("after Store: %d calls, want 3", calls)
	}
	l.Store(nil)
	calls = 0
	_ = l.Run(context.Background(), appB, fail)
	if calls != 1 {
		t.Errorf("after Store(nil): %d calls, want 1", calls)
	}
}

func TestCircuitBreakerInterval(t *testing.T) {
	p := compile(t, `
metadata: {name: r}
spec:
  policies: {circuitBreakers: {cb: {trip: consecutiveFailures > 1, interval: 10s, timeout: 5s}}}
  targets: {apps: {b: {circuitBreaker: cb}}}`)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p.now = clock.Now
	fail := func(context.Context) error { return errors.New("boom") }
	_ = p.Run(context.Background(), appB, fail)
	clock.Add(10 * time.Second) // the interval resets the count
	_ = p.Run(context.Background(), appB, fail)
	if err := p.Run(context.Background(), appB, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("the count was not reset: %v", err)
	}
	_ = p.Run(context.Background(), appB, fail)
	_ = p.Run(context.Background(), appB, fail)
	if err := p.Run(context.Background(), appB, func(context.Context) error { return nil }); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("two failures within the interval: %v", err)
	}
}

func TestPermanentErrorsAreNotRetried(t *testing.T) {
	p := compile(t, "metadata: {name: r}\nspec:\n  policies: {retries: {r: {duration: 1ms, maxRetries: 5}}}\n  targets: {apps: {b: {retry: r}}}\n")
	boom := errors.New("boom")
	calls := 0
	err := p.Run(context.Background(), appB, func(context.Context) error {
		calls++
		if calls == 2 {
			return Permanent(boom)
		}
		return boom
	})
	if calls != 2 || err != boom {
		t.Fatalf("calls = %d, err = %v; want 2 calls and the unwrapped error", calls, err)
	}
	if err := (Direct{}).Run(context.Background(), appB, func(context.Context) error { return Permanent(boom) }); err != boom {
		t.Fatalf("Direct returned %v, want the unwrapped error", err)
	}
}
