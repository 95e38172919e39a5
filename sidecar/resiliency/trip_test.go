package resiliency

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

func TestCompileTrip(t *testing.T) {
	tests := []struct {
		expr  string
		plain bool // compiled to the comparison, not to CEL
		after int64
		err   string
	}{
		{expr: "", plain: true, after: 5},
		{expr: "consecutiveFailures > 3", plain: true, after: 3},
		{expr: "  consecutiveFailures>=3 ", plain: true, after: 2},
		{expr: "consecutiveFailures >= 0", plain: true, after: -1},
		{expr: "consecutiveFailures > 3 || totalFailures > 10"},
		{expr: "requests >= 10 && double(totalFailures) / double(requests) > 0.5"},
		{expr: "consecutiveSuccesses == 0 && totalSuccesses < 3"},
		// Compared with a double, as the counts compare in Dapr.
		{expr: "consecutiveFailures > 2.5"},
		{expr: "(consecutiveFailures > 5)"},
		// Dapr takes these and never trips; here they say why.
		{expr: "failureRatio > 0.5", err: "undeclared reference to 'failureRatio'"},
		{expr: "consecutiveFailures", err: "is of type int, not bool"},
		{expr: "consecutiveFailures >", err: "Syntax error"},
		{expr: "requests > 'ten'", err: "no matching overload"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			tr, err := compileTrip(tt.expr)
			if wantedErr(t, err, tt.err) {
				return
			}
			if plain := tr.prg == nil; plain != tt.plain || (tt.plain && tr.after != tt.after) {
				t.Errorf("plain %v after %d, want plain %v after %d", plain, tr.after, tt.plain, tt.after)
			}
		})
	}
}

func TestTrips(t *testing.T) {
	tests := []struct {
		expr  string
		c     counts
		trips bool
	}{
		{"consecutiveFailures > 2", counts{consecutiveFailures: 2}, false},
		{"consecutiveFailures > 2", counts{consecutiveFailures: 3}, true},
		{"(consecutiveFailures > 2)", counts{consecutiveFailures: 3}, true},
		{"(consecutiveFailures > 2)", counts{consecutiveFailures: 2}, false},
		{"consecutiveFailures >= 0", counts{consecutiveFailures: 1}, true},
		{"totalFailures >= 3", counts{requests: 6, totalFailures: 3, totalSuccesses: 3, consecutiveFailures: 1}, true},
		{"requests >= 10 && double(totalFailures) / double(requests) > 0.5", counts{requests: 9, totalFailures: 9}, false},
		{"requests >= 10 && double(totalFailures) / double(requests) > 0.5", counts{requests: 10, totalFailures: 6}, true},
		{"requests >= 10 && double(totalFailures) / double(requests) > 0.5", counts{requests: 10, totalFailures: 5}, false},
		{"consecutiveSuccesses == 0 && totalSuccesses < 3", counts{totalSuccesses: 2}, true},
		{"consecutiveFailures > 2.5", counts{consecutiveFailures: 3}, true},
		// An evaluation error (a division by zero) does not trip, as in Dapr.
		{"totalFailures / totalSuccesses > 1", counts{totalFailures: 4}, false},
		{"totalFailures / totalSuccesses > 1", counts{totalFailures: 4, totalSuccesses: 1}, true},
	}
	for _, tt := range tests {
		tr, err := compileTrip(tt.expr)
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		c := tt.c
		if got := tr.trips(&c); got != tt.trips {
			t.Errorf("%s with %+v: %v, want %v", tt.expr, tt.c, got, tt.trips)
		}
	}
}

// A trip over the total counts opens the breaker on failures that are not
// consecutive; the counts start again when the state changes and at each interval.
func TestCircuitBreakerTripExpression(t *testing.T) {
	p := compile(t, `
metadata: {name: r}
spec:
  policies: {circuitBreakers: {cb: {trip: "totalFailures >= 3", timeout: 30s, interval: 1m}}}
  targets: {apps: {b: {circuitBreaker: cb}}}`)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p.now = clock.Now
	boom := errors.New("boom")
	run := func(err error) error {
		return p.Run(context.Background(), appB, func(context.Context) error { return err })
	}
	// consecutiveFailures > 2 would never trip on these.
	for i, err := range []error{boom, nil, HTTPStatus(503, nil), nil} {
		if got := run(err); !errors.Is(got, err) {
			t.Fatalf("call %d: %v", i, got)
		}
	}
	if err := run(boom); !errors.Is(err, boom) {
		t.Fatalf("third failure: %v", err)
	}
	if err := run(nil); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after three failures: %v", err)
	}
	// Half-open, one success closes it, with the counts from zero.
	clock.Add(30 * time.Second)
	for i, err := range []error{nil, boom, boom, nil} {
		if got := run(err); !errors.Is(got, err) {
			t.Fatalf("closed again, call %d: %v", i, got)
		}
	}
	// The interval starts the counts again: two failures before it, two after.
	clock.Add(time.Minute)
	for i, err := range []error{boom, boom, nil} {
		if got := run(err); !errors.Is(got, err) {
			t.Fatalf("new interval, call %d: %v", i, got)
		}
	}
	if err := run(boom); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := run(nil); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("three failures in the interval: %v", err)
	}
}

// requests counts the calls admitted, and a call the caller gave up on is not one.
func TestCircuitBreakerRequestsCount(t *testing.T) {
	p := compile(t, `
metadata: {name: r}
spec:
  policies: {circuitBreakers: {cb: {trip: "requests >= 3"}}}
  targets: {apps: {b: {circuitBreaker: cb}}}`)
	boom := errors.New("boom")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p.Run(ctx, appB, func(ctx context.Context) error { return ctx.Err() })
	_ = p.Run(context.Background(), appB, func(context.Context) error { return nil })
	_ = p.Run(context.Background(), appB, func(context.Context) error { return boom })
	if err := p.Run(context.Background(), appB, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("after two counted requests: %v", err)
	}
	_ = p.Run(context.Background(), appB, func(context.Context) error { return boom })
	if err := p.Run(context.Background(), appB, func(context.Context) error { return nil }); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("a failure with four requests: %v", err)
	}
}

// A trip expression that does not compile is an error that names the Resiliency and
// the breaker; that breaker is left out and every other policy applies.
func TestBadTripLeavesTheOtherPolicies(t *testing.T) {
	var logged []string
	log := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
	p, err := Compile(parse(t, `
metadata: {name: res}
spec:
  policies:
    timeouts: {t: 2s}
    retries: {r: {duration: 1ms, maxRetries: 2}}
    circuitBreakers:
      bad: {trip: "failureRatio > 0.5"}
      good: {trip: "totalFailures > 0"}
  targets:
    apps:
      b: {timeout: t, retry: r, circuitBreaker: bad}
      c: {circuitBreaker: good}`), log)
	if err != nil {
		t.Fatal(err)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], `Resiliency \"res\": policies.circuitBreakers.bad: trip \"failureRatio > 0.5\": `) ||
		!strings.Contains(logged[0], "undeclared reference to 'failureRatio'") {
		t.Errorf("logged %q", logged)
	}
	r, _ := p.lookup(appB)
	if r.timeout != 2*time.Second || r.retry == nil || r.breaker != nil {
		t.Errorf("b: %+v", r)
	}
	calls := 0
	_ = p.Run(context.Background(), appB, func(context.Context) error { calls++; return errors.New("boom") })
	if calls != 3 {
		t.Errorf("%d calls, want 3", calls)
	}
	c := Target{Kind: "app", Name: "c", Direction: Outbound}
	_ = p.Run(context.Background(), c, func(context.Context) error { return errors.New("boom") })
	if err := p.Run(context.Background(), c, func(context.Context) error { return nil }); !errors.Is(err, ErrCircuitOpen) {
		t.Errorf("the good breaker: %v", err)
	}
}

// The plain consecutiveFailures > N needs no evaluation; this is what it saves.
func BenchmarkTrip(b *testing.B) {
	for _, expr := range []string{"consecutiveFailures > 5", "(consecutiveFailures > 5)"} {
		tr, err := compileTrip(expr)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(expr, func(b *testing.B) {
			c := counts{requests: 10, totalFailures: 4, consecutiveFailures: 4}
			b.ReportAllocs()
			for b.Loop() {
				if tr.trips(&c) {
					b.Fatal("tripped")
				}
			}
		})
	}
}
