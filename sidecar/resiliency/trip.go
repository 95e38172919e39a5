package resiliency

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/interpreter"
)

// counts are a circuit breaker's counts, as sony/gobreaker's Counts (Dapr's breaker):
// they start from zero at each change of state, and at each interval while closed.
// A call the caller gave up on is not counted (gobreaker counts it as a failure).
type counts struct {
	requests             int64 // admitted: in flight or done
	totalSuccesses       int64
	totalFailures        int64
	consecutiveSuccesses int64
	consecutiveFailures  int64
}

// ResolveName makes counts the variables of a trip expression, without a map per
// evaluation.
func (c *counts) ResolveName(name string) (any, bool) {
	switch name {
	case "requests":
		return c.requests, true
	case "totalSuccesses":
		return c.totalSuccesses, true
	case "totalFailures":
		return c.totalFailures, true
	case "consecutiveSuccesses":
		return c.consecutiveSuccesses, true
	case "consecutiveFailures":
		return c.consecutiveFailures, true
	}
	return nil, false
}

func (c *counts) Parent() interpreter.Activation { return nil }

// trip decides, at each failure while the breaker is closed, whether it opens.
type trip struct {
	// prg is the compiled expression; nil for the plain consecutiveFailures > after,
	// which needs no evaluation.
	prg   cel.Program
	after int64
}

var plainTrip = regexp.MustCompile(`^\s*consecutiveFailures\s*(>|>=)\s*(\d+)\s*$`)

// tripEnv declares the counts, as Dapr passes them to the expression: int64 values.
// Comparing them with a double (consecutiveFailures > 2.5) compiles, as it evaluates
// in Dapr.
var tripEnv = sync.OnceValues(func() (*cel.Env, error) {
	opts := []cel.EnvOption{cel.CrossTypeNumericComparisons(true)}
	for _, name := range []string{"requests", "totalSuccesses", "totalFailures", "consecutiveSuccesses", "consecutiveFailures"} {
		opts = append(opts, cel.Variable(name, cel.IntType))
	}
	return cel.NewEnv(opts...)
})

// compileTrip compiles a circuit breaker's trip expression (Dapr's default when empty).
//
// Dapr declares any name it does not know as a variable and treats an evaluation error
// or a result that is not a bool as "do not trip", so a misspelt count or a non-bool
// expression gives a breaker that never opens, without a word. Here both are compile
// errors: the breaker is left out, which never opens either, and the error says why.
func compileTrip(expr string) (trip, error) {
	if strings.TrimSpace(expr) == "" {
		expr = DefaultTrip
	}
	if m := plainTrip.FindStringSubmatch(expr); m != nil {
		if n, err := strconv.ParseInt(m[2], 10, 64); err == nil {
			if m[1] == ">=" {
				n--
			}
			return trip{after: n}, nil
		}
	}
	env, err := tripEnv()
	if err != nil {
		return trip{}, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return trip{}, iss.Err()
	}
	if ast.OutputType() != cel.BoolType {
		return trip{}, fmt.Errorf("the expression is of type %s, not bool", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return trip{}, err
	}
	return trip{prg: prg}, nil
}

// trips reports whether c opens the breaker. An expression that fails to evaluate
// (a division by zero) does not trip it, as in Dapr.
func (t trip) trips(c *counts) bool {
	if t.prg == nil {
		return c.consecutiveFailures > t.after
	}
	out, _, err := t.prg.Eval(c)
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}
