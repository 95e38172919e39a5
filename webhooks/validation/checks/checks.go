// Package checks holds the pure validity checks of the dapr.io resources. The validating
// webhooks run them at admission, and the sidecar runs them on manifests it reads from
// files, so both reject the same objects with the same field-named messages.
package checks

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/components"
)

// Each check is a pure function of one object that returns what is wrong, each error
// naming its field. The validators run them in order and join the results.

// ComponentErrors returns what makes a Component malformed.
func ComponentErrors(c *daprv1alpha1.Component) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if _, _, ok := components.SplitType(c.Spec.Type); !ok {
		errs = append(errs, field.Invalid(spec.Child("type"), c.Spec.Type,
			fmt.Sprintf("must be <family>.<name> with family one of %s", strings.Join(components.Families, ", "))))
	}
	errs = append(errs, durationErrors(spec.Child("initTimeout"), c.Spec.InitTimeout)...)
	errs = append(errs, nameValueErrors(spec.Child("metadata"), c.Spec.Metadata)...)
	return errs
}

// ComponentWarnings returns what is allowed but will not work as the user may expect.
func ComponentWarnings(c *daprv1alpha1.Component) []string {
	if _, _, ok := components.SplitType(c.Spec.Type); ok && !components.IsImplemented(c.Spec.Type) {
		return []string{fmt.Sprintf("spec.type: Outrigger does not implement component type %q; sidecars will report it as failed to load", c.Spec.Type)}
	}
	return nil
}

// nameValueErrors checks metadata items and headers: each has a name, and its value
// comes from one source only.
func nameValueErrors(path *field.Path, items []common.NameValuePair) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, item := range items {
		p := path.Index(i)
		if item.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), "each item needs a name"))
		} else if seen[item.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), item.Name))
		}
		seen[item.Name] = true
		var sources []string
		if !item.Value.IsZero() {
			sources = append(sources, "value")
		}
		if item.SecretKeyRef.Name != "" || item.SecretKeyRef.Key != "" {
			sources = append(sources, "secretKeyRef")
			if item.SecretKeyRef.Name == "" {
				errs = append(errs, field.Required(p.Child("secretKeyRef", "name"), "the secret's name is required"))
			}
		}
		if item.EnvRef != "" {
			sources = append(sources, "envRef")
		}
		if len(sources) > 1 {
			errs = append(errs, field.Invalid(p, item.Name,
				fmt.Sprintf("set only one of value, secretKeyRef and envRef, not %s", strings.Join(sources, " and "))))
		}
	}
	return errs
}

func durationErrors(path *field.Path, value string) field.ErrorList {
	if value == "" {
		return nil
	}
	if _, err := time.ParseDuration(value); err != nil {
		return field.ErrorList{field.Invalid(path, value, `must be a duration such as "5s", "1m30s" or "200ms"`)}
	}
	return nil
}

// SubscriptionErrors checks the storage version; requests in v1alpha1 reach the webhook
// converted, since the API server matches it with matchPolicy Equivalent.
func SubscriptionErrors(s *daprv2alpha1.Subscription) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if s.Spec.Pubsubname == "" {
		errs = append(errs, field.Required(spec.Child("pubsubname"), "name the pub/sub component to subscribe through"))
	}
	if s.Spec.Topic == "" {
		errs = append(errs, field.Required(spec.Child("topic"), "name the topic to subscribe to"))
	}
	routes := spec.Child("routes")
	if s.Spec.Routes.Default == "" && len(s.Spec.Routes.Rules) == 0 {
		errs = append(errs, field.Required(routes,
			"a subscription needs a route: set routes.default or at least one routes.rules entry (spec.route in v1alpha1)"))
	}
	for i, r := range s.Spec.Routes.Rules {
		if r.Path == "" {
			errs = append(errs, field.Required(routes.Child("rules").Index(i).Child("path"), "each rule needs the path to deliver to"))
		}
	}
	bulk := spec.Child("bulkSubscribe")
	if s.Spec.BulkSubscribe.MaxMessagesCount < 0 {
		errs = append(errs, field.Invalid(bulk.Child("maxMessagesCount"), s.Spec.BulkSubscribe.MaxMessagesCount, "must not be negative"))
	}
	if s.Spec.BulkSubscribe.MaxAwaitDurationMs < 0 {
		errs = append(errs, field.Invalid(bulk.Child("maxAwaitDurationMs"), s.Spec.BulkSubscribe.MaxAwaitDurationMs, "must not be negative"))
	}
	return errs
}

// ResiliencyErrors checks the policies' values and that every target names a policy
// that is defined.
func ResiliencyErrors(r *daprv1alpha1.Resiliency) field.ErrorList {
	policies := field.NewPath("spec", "policies")
	p := r.Spec.Policies
	var errs field.ErrorList
	for _, name := range sortedKeys(p.Timeouts) {
		errs = append(errs, durationErrors(policies.Child("timeouts").Key(name), p.Timeouts[name])...)
	}
	for _, name := range sortedKeys(p.Retries) {
		rp, path := p.Retries[name], policies.Child("retries").Key(name)
		if rp.Policy != "" && rp.Policy != "constant" && rp.Policy != "exponential" {
			errs = append(errs, field.NotSupported(path.Child("policy"), rp.Policy, []string{"constant", "exponential"}))
		}
		errs = append(errs, durationErrors(path.Child("duration"), rp.Duration)...)
		errs = append(errs, durationErrors(path.Child("maxInterval"), rp.MaxInterval)...)
		if rp.MaxRetries != nil && *rp.MaxRetries < -1 {
			errs = append(errs, field.Invalid(path.Child("maxRetries"), *rp.MaxRetries, "must be -1 (retry forever) or more"))
		}
	}
	for _, name := range sortedKeys(p.CircuitBreakers) {
		cb, path := p.CircuitBreakers[name], policies.Child("circuitBreakers").Key(name)
		errs = append(errs, durationErrors(path.Child("interval"), cb.Interval)...)
		errs = append(errs, durationErrors(path.Child("timeout"), cb.Timeout)...)
		if cb.MaxRequests < 0 {
			errs = append(errs, field.Invalid(path.Child("maxRequests"), cb.MaxRequests, "must not be negative"))
		}
	}

	targets := field.NewPath("spec", "targets")
	ref := func(path *field.Path, refs daprv1alpha1.PolicyNames) {
		errs = append(errs, policyRefErrors(path, refs, p)...)
	}
	t := r.Spec.Targets
	for _, name := range sortedKeys(t.Apps) {
		a := t.Apps[name]
		ref(targets.Child("apps").Key(name), daprv1alpha1.PolicyNames{Timeout: a.Timeout, Retry: a.Retry, CircuitBreaker: a.CircuitBreaker})
	}
	for _, name := range sortedKeys(t.Actors) {
		a := t.Actors[name]
		path := targets.Child("actors").Key(name)
		ref(path, daprv1alpha1.PolicyNames{Timeout: a.Timeout, Retry: a.Retry, CircuitBreaker: a.CircuitBreaker})
		if s := a.CircuitBreakerScope; s != "" && !slices.Contains([]string{"type", "id", "both"}, s) {
			errs = append(errs, field.NotSupported(path.Child("circuitBreakerScope"), s, []string{"type", "id", "both"}))
		}
	}
	for _, name := range sortedKeys(t.Components) {
		c := t.Components[name]
		path := targets.Child("components").Key(name)
		ref(path.Child("outbound"), c.Outbound)
		ref(path.Child("inbound"), c.Inbound)
	}
	return errs
}

func policyRefErrors(path *field.Path, refs daprv1alpha1.PolicyNames, p daprv1alpha1.Policies) field.ErrorList {
	var errs field.ErrorList
	if _, ok := p.Timeouts[refs.Timeout]; refs.Timeout != "" && !ok {
		errs = append(errs, field.NotFound(path.Child("timeout"), fmt.Sprintf("%s (not defined in spec.policies.timeouts)", refs.Timeout)))
	}
	if _, ok := p.Retries[refs.Retry]; refs.Retry != "" && !ok {
		errs = append(errs, field.NotFound(path.Child("retry"), fmt.Sprintf("%s (not defined in spec.policies.retries)", refs.Retry)))
	}
	if _, ok := p.CircuitBreakers[refs.CircuitBreaker]; refs.CircuitBreaker != "" && !ok {
		errs = append(errs, field.NotFound(path.Child("circuitBreaker"), fmt.Sprintf("%s (not defined in spec.policies.circuitBreakers)", refs.CircuitBreaker)))
	}
	return errs
}

// HTTPEndpointErrors checks the base URL and the headers.
func HTTPEndpointErrors(e *daprv1alpha1.HTTPEndpoint) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	u, err := url.Parse(e.Spec.BaseURL)
	switch {
	case e.Spec.BaseURL == "":
		errs = append(errs, field.Required(spec.Child("baseUrl"), "the endpoint's base URL is required"))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, field.Invalid(spec.Child("baseUrl"), e.Spec.BaseURL, "must be an absolute http:// or https:// URL"))
	}
	errs = append(errs, nameValueErrors(spec.Child("headers"), e.Spec.Headers)...)
	if tls := e.Spec.ClientTLS; tls != nil {
		p := spec.Child("clientTLS")
		docs := []struct {
			name string
			doc  *daprv1alpha1.TLSDocument
		}{{"rootCA", tls.RootCA}, {"certificate", tls.Certificate}, {"privateKey", tls.PrivateKey}}
		for _, d := range docs {
			if d.doc != nil && !d.doc.Value.IsZero() && d.doc.SecretKeyRef.Name != "" {
				errs = append(errs, field.Invalid(p.Child(d.name), "", "set only one of value and secretKeyRef"))
			}
		}
		if (tls.Certificate == nil) != (tls.PrivateKey == nil) {
			errs = append(errs, field.Required(p, "certificate and privateKey go together"))
		}
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ConfigurationErrors checks the values Outrigger interprets: access-control actions and
// verbs, secret scopes, durations and the tracing sampling rate.
func ConfigurationErrors(c *daprv1alpha1.Configuration) field.ErrorList {
	spec := field.NewPath("spec")
	s := c.Spec
	var errs field.ErrorList
	actions := []string{"allow", "deny"}
	action := func(path *field.Path, v string, required bool) {
		switch {
		case v == "" && required:
			errs = append(errs, field.Required(path, "must be allow or deny"))
		case v != "" && !slices.Contains(actions, v):
			errs = append(errs, field.NotSupported(path, v, actions))
		}
	}
	if ac := s.AccessControl; ac != nil {
		p := spec.Child("accessControl")
		action(p.Child("defaultAction"), ac.DefaultAction, false)
		for i, pol := range ac.Policies {
			pp := p.Child("policies").Index(i)
			if pol.AppID == "" {
				errs = append(errs, field.Required(pp.Child("appId"), "each policy names the calling app"))
			}
			action(pp.Child("defaultAction"), pol.DefaultAction, false)
			for j, op := range pol.Operations {
				op, opp := op, pp.Child("operations").Index(j)
				if op.Name == "" {
					errs = append(errs, field.Required(opp.Child("name"), "the operation's path, such as /orders/*"))
				}
				action(opp.Child("action"), op.Action, true)
				for k, verb := range op.HTTPVerb {
					if !validVerb(verb) {
						errs = append(errs, field.NotSupported(opp.Child("httpVerb").Index(k), verb, httpVerbs))
					}
				}
			}
		}
	}
	if sec := s.Secrets; sec != nil {
		for i, scope := range sec.Scopes {
			p := spec.Child("secrets", "scopes").Index(i)
			if scope.StoreName == "" {
				errs = append(errs, field.Required(p.Child("storeName"), "name the secret store this scope applies to"))
			}
			action(p.Child("defaultAccess"), scope.DefaultAccess, false)
		}
	}
	if m := s.MTLS; m != nil {
		errs = append(errs, durationErrors(spec.Child("mtls", "workloadCertTTL"), m.WorkloadCertTTL)...)
		errs = append(errs, durationErrors(spec.Child("mtls", "allowedClockSkew"), m.AllowedClockSkew)...)
	}
	if t := s.Tracing; t != nil && t.SamplingRate != "" {
		if r, err := strconv.ParseFloat(t.SamplingRate, 64); err != nil || r < 0 || r > 1 {
			errs = append(errs, field.Invalid(spec.Child("tracing", "samplingRate"), t.SamplingRate, "must be a number from 0 to 1"))
		}
	}
	if w := s.Workflow; w != nil && w.StateRetentionPolicy != nil {
		p, r := spec.Child("workflow", "stateRetentionPolicy"), w.StateRetentionPolicy
		errs = append(errs, durationErrors(p.Child("anyTerminal"), r.AnyTerminal)...)
		errs = append(errs, durationErrors(p.Child("completed"), r.Completed)...)
		errs = append(errs, durationErrors(p.Child("failed"), r.Failed)...)
	}
	return errs
}

var httpVerbs = []string{"*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

func validVerb(v string) bool { return slices.Contains(httpVerbs, strings.ToUpper(v)) }
