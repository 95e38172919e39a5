// Package routing picks the app path of a delivered pub/sub message from a subscription's
// routing rules, as Dapr 1.14 does (pkg/runtime/pubsub/subscriptions.go CreateRoutingRule,
// pkg/expr, and matchRoutingRule in pkg/runtime/subscription/subscription.go).
//
// A rule's match is a CEL expression over the variable `event`, the delivered CloudEvent
// as a map. Rules are tried in order; the first that evaluates to true wins; a rule with
// an empty match always wins; the default path, when set, is a last rule that always
// wins.
//
// The package is pure: a compiled *Routes holds only CEL programs, which are safe for
// concurrent use, so one *Routes serves every delivery of a subscription.
package routing

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
)

// Rule is one routing rule as a subscription declares it: the Subscription CRD's
// spec.routes.rules, the routes.rules of GET /dapr/subscribe, or TopicRoutes.rules of
// ListTopicSubscriptions.
type Rule struct {
	// Match is a CEL expression that must evaluate to a bool; surrounding whitespace is
	// ignored, and an empty Match always matches.
	Match string
	// Path is the app route (HTTP) or the TopicEventRequest path (gRPC) of a matching
	// event.
	Path string
}

// ErrMatch marks a rule whose expression could not be evaluated against an event or
// did not give a bool.
//
// Dapr does not treat this as "no match": the message goes to the dead-letter topic
// when the subscription has one, and otherwise the error goes back to the component,
// which redelivers the message.
var ErrMatch = errors.New("routing rule failed")

// Routes is a compiled, ordered set of rules. The zero value and nil have no rules.
type Routes struct {
	rules []compiled
}

type compiled struct {
	expr string      // trimmed source, for error messages
	prg  cel.Program // nil: the rule always matches
	path string
}

// Compile compiles rules in order and appends defaultPath, when not empty, as a rule
// that always matches.
//
// An empty defaultPath means no default. Callers that need an empty path as the
// fallback (Dapr gives a gRPC subscription without routes the path "") pass
// Rule{Path: ""} instead. For a v1alpha1 subscription, pass its single route as
// defaultPath when routes.default is empty, as Dapr does.
//
// A compile error names the rule's index and expression.
func Compile(rules []Rule, defaultPath string) (*Routes, error) {
	r := &Routes{rules: make([]compiled, 0, len(rules)+1)}
	for i, rule := range rules {
		expr := strings.TrimSpace(rule.Match)
		c := compiled{expr: expr, path: rule.Path}
		if expr != "" {
			prg, err := compileExpr(expr)
			if err != nil {
				return nil, fmt.Errorf("routing rule %d: match %q: %w", i, expr, err)
			}
			c.prg = prg
		}
		r.rules = append(r.rules, c)
	}
	if defaultPath != "" {
		r.rules = append(r.rules, compiled{path: defaultPath})
	}
	return r, nil
}

// Len is the number of rules, the default included. Dapr drops an HTTP app's
// subscription that has none (filterSubscriptions).
func (r *Routes) Len() int {
	if r == nil {
		return 0
	}
	return len(r.rules)
}

// Path returns the path of the first rule that matches event.
//
// ok is false, with a nil error, when no rule matches: Dapr then drops the message as
// handled (acknowledged, counted as dropped) and also publishes it to the dead-letter
// topic when the subscription has one.
//
// An error (wrapping ErrMatch) means a rule's expression failed on this event, for
// example a missing key such as event.data.x when data has no x, or did not give a
// bool. Dapr stops at that rule rather than trying the next one; see ErrMatch.
func (r *Routes) Path(event map[string]any) (path string, ok bool, err error) {
	if r == nil {
		return "", false, nil
	}
	vars := map[string]any{"event": event}
	for i, c := range r.rules {
		if c.prg == nil {
			return c.path, true, nil
		}
		out, _, err := c.prg.Eval(vars)
		if err != nil {
			return "", false, fmt.Errorf("%w: rule %d: match %q: %w", ErrMatch, i, c.expr, err)
		}
		b, isBool := out.Value().(bool)
		if !isBool {
			return "", false, fmt.Errorf("%w: rule %d: the result of match expression %s was not a boolean", ErrMatch, i, c.expr)
		}
		if b {
			return c.path, true, nil
		}
	}
	return "", false, nil
}

// undeclared is how the CEL checker reports a name it does not know; the name follows
// in single quotes.
const undeclared = "undeclared reference to '"

// compileExpr compiles expr the way Dapr's pkg/expr does: every name the checker does
// not know is declared as a dyn variable and the expression is checked again. So
// `event.type == "x"` compiles, and so does `type == "x"`; the latter then fails at
// every evaluation, because only `event` is ever bound. Rejecting it here would refuse
// subscriptions that Dapr accepts.
func compileExpr(expr string) (cel.Program, error) {
	var opts []cel.EnvOption
	declared := map[string]bool{}
	for {
		env, err := cel.NewEnv(opts...)
		if err != nil {
			return nil, err
		}
		ast, iss := env.Compile(expr)
		if iss.Err() == nil {
			return env.Program(ast)
		}
		added := false
		for _, e := range iss.Errors() {
			name, ok := undeclaredName(e.Message)
			if !ok {
				return nil, iss.Err()
			}
			if !declared[name] {
				declared[name] = true
				opts = append(opts, cel.Variable(name, cel.DynType))
				added = true
			}
		}
		// An unknown function is reported the same way and stays unknown once declared
		// as a variable; Dapr loops forever on it, so stop here with the checker's
		// error instead.
		if !added {
			return nil, iss.Err()
		}
	}
}

func undeclaredName(msg string) (string, bool) {
	rest, ok := strings.CutPrefix(msg, undeclared)
	if !ok {
		return "", false
	}
	name, _, ok := strings.Cut(rest, "'")
	return name, ok
}
