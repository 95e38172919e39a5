package invoke

import (
	"fmt"
	"path"
	"strings"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

// Access control actions.
const (
	ActionAllow = "allow"
	ActionDeny  = "deny"
)

// DefaultTrustDomain is Dapr's trust domain when a Configuration names none.
const DefaultTrustDomain = "public"

// ACL is a Configuration's accessControl section, ready to check calls against, with
// Dapr's semantics (pkg/acl): the global defaultAction applies to callers without a
// policy; a caller's policy matches on app id, namespace and trust domain; its
// defaultAction, if set, replaces the global one; the first operation whose name
// matches decides, for HTTP apps by the call's verb.
type ACL struct {
	defaultAction string
	policies      map[string]aclPolicy // by appID||namespace
}

type aclPolicy struct {
	appID, namespace, trustDomain string
	defaultAction                 string
	operations                    []aclOperation
}

type aclOperation struct {
	segments []string // of the lower-cased name for HTTP apps; of the name otherwise
	raw      string
	verbs    map[string]string // verb (or *) -> action
	action   string
}

// ParseACL turns an accessControl section into an ACL. It returns nil (every call
// allowed) for a missing or empty section, as Dapr does.
//
// As in Dapr, a section with policies but no defaultAction denies by default; and
// each policy must name its trustDomain and namespace. Unlike Dapr, which treats any
// unknown action as deny, an action other than allow or deny is an error.
func ParseACL(spec *daprv1alpha1.AccessControlSpec, isHTTP bool) (*ACL, error) {
	if spec == nil || (spec.TrustDomain == "" && spec.DefaultAction == "" && len(spec.Policies) == 0) {
		return nil, nil
	}
	a := &ACL{policies: map[string]aclPolicy{}}
	var errs []string
	action := func(field, v string, allowEmpty bool) string {
		l := strings.ToLower(strings.TrimSpace(v))
		if l == ActionAllow || l == ActionDeny || (allowEmpty && l == "") {
			return l
		}
		errs = append(errs, fmt.Sprintf("%s %q: use allow or deny", field, v))
		return ActionDeny
	}
	a.defaultAction = action("accessControl.defaultAction", spec.DefaultAction, true)
	if a.defaultAction == "" {
		// Dapr: with app policies (or a nil list) and no global action, deny; an
		// explicitly empty list allows.
		if spec.Policies == nil || len(spec.Policies) > 0 {
			a.defaultAction = ActionDeny
		} else {
			a.defaultAction = ActionAllow
		}
	}
	for i, p := range spec.Policies {
		field := fmt.Sprintf("accessControl.policies[%d]", i)
		if p.AppID == "" {
			errs = append(errs, field+".appId: required")
		}
		if p.TrustDomain == "" {
			errs = append(errs, field+".trustDomain: required (Dapr's default trust domain is public)")
		}
		if p.Namespace == "" {
			errs = append(errs, field+".namespace: required")
		}
		pol := aclPolicy{
			appID: p.AppID, namespace: p.Namespace, trustDomain: p.TrustDomain,
			defaultAction: action(field+".defaultAction", p.DefaultAction, true),
		}
		for j, op := range p.Operations {
			ofield := fmt.Sprintf("%s.operations[%d]", field, j)
			if op.Name == "" {
				errs = append(errs, ofield+".name: required")
			}
			name := op.Name
			if isHTTP {
				name = strings.ToLower(name)
			}
			o := aclOperation{raw: op.Name, segments: splitOperation(name), verbs: map[string]string{},
				action: action(ofield+".action", op.Action, false)}
			for _, v := range op.HTTPVerb {
				o.verbs[strings.ToUpper(v)] = o.action
			}
			pol.operations = append(pol.operations, o)
		}
		a.policies[p.AppID+"||"+p.Namespace] = pol
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid access control: %s", strings.Join(errs, "; "))
	}
	return a, nil
}

// Check decides a call of operation (the method path, or the gRPC full method name)
// with verb (empty for gRPC) from caller. The message says why a call was denied, in
// Dapr's words.
func (a *ACL) Check(caller Caller, operation, verb string, isHTTP bool) (bool, string) {
	if a == nil {
		return true, ""
	}
	op := normalizeOperation(operation)
	if isHTTP {
		op = strings.ToLower(op)
	}
	allowed := a.decide(caller, op, strings.ToUpper(verb), isHTTP) == ActionAllow
	if allowed {
		return true, ""
	}
	return false, fmt.Sprintf("access control policy has denied access to id: spiffe://%s/ns/%s/%s operation: %s verb: %s",
		caller.trustDomain(), caller.Namespace, caller.AppID, op, verbName(verb))
}

func (a *ACL) decide(caller Caller, op, verb string, isHTTP bool) string {
	action := a.defaultAction
	pol, ok := a.policies[caller.AppID+"||"+caller.Namespace]
	if !ok || pol.trustDomain != caller.trustDomain() {
		return action
	}
	if pol.defaultAction != "" {
		action = pol.defaultAction
	}
	o := pol.match(splitOperation(op))
	if o == nil {
		return action
	}
	if !isHTTP {
		return o.action
	}
	if verb == "" {
		// Dapr: an HTTP app called without a verb gets the policy's own default, even
		// an empty one (which denies).
		return pol.defaultAction
	}
	if act, ok := o.verbs[verb]; ok {
		return act
	}
	if act, ok := o.verbs["*"]; ok {
		return act
	}
	return action
}

// match finds the operation that decides op: the one that matches at the fewest
// segments, the first declared among equals. Dapr walks a trie built from the
// operation names and stops at the first node with an action, which gives the same
// result: a name is a prefix (/orders allows /orders/1), "*" matches one whole segment
// at the end, "**" matches everything below, and "*" inside a segment ("ord*")
// matches any characters within it.
func (p aclPolicy) match(op []string) *aclOperation {
	var best *aclOperation
	bestDepth := 0
	for i := range p.operations {
		o := &p.operations[i]
		if d, ok := o.matchDepth(op); ok && (best == nil || d < bestDepth) {
			best, bestDepth = o, d
		}
	}
	return best
}

func (o *aclOperation) matchDepth(op []string) (int, bool) {
	for i, seg := range o.segments {
		last := i == len(o.segments)-1
		if i >= len(op) {
			// The call is shorter than the rule: "/a/*" and "/a/**" still match "/a".
			return i, last && (seg == "*" || seg == "**") && i == len(op)
		}
		switch {
		case seg == "**":
			return i + 1, true
		case seg == "*":
			if i != len(op)-1 {
				// A single-segment wildcard in Dapr only matches the last segment.
				return 0, false
			}
			return i + 1, true
		case !globMatch(seg, op[i]):
			return 0, false
		}
		if last {
			return i + 1, true
		}
	}
	return 0, false
}

// globMatch matches s against a pattern where * stands for any run of characters.
func globMatch(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// normalizeOperation cleans a method path as Dapr's purell normalisation does for the
// cases that matter: one leading slash, no duplicate slashes, no dot segments, no
// trailing slash.
func normalizeOperation(op string) string {
	if i := strings.IndexAny(op, "?#"); i >= 0 {
		op = op[:i]
	}
	return path.Clean("/" + op)
}

func splitOperation(op string) []string {
	op = strings.Trim(op, "/")
	if op == "" {
		return nil
	}
	return strings.Split(op, "/")
}

func verbName(v string) string {
	if v == "" {
		return "NONE"
	}
	return strings.ToUpper(v)
}

func (c Caller) trustDomain() string {
	if c.TrustDomain == "" {
		return DefaultTrustDomain
	}
	return c.TrustDomain
}
