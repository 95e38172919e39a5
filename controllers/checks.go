package controllers

import (
	"fmt"
	"sort"
	"strings"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
)

// namespaceView is what the checks may look at: the Secrets an object references (keyed
// by name; absent when not found) and the Components of its namespace. Reconcilers fill
// it from the cache, so the checks themselves stay pure.
type namespaceView struct {
	secrets    map[string]map[string][]byte
	components map[string]*daprv1alpha1.Component
}

// verdict is the outcome of one check; an empty reason means it passed.
type verdict struct{ reason, message string }

func pass() verdict { return verdict{} }

// firstFailure runs checks in order and returns the first that fails.
func firstFailure(checks ...func() verdict) verdict {
	for _, c := range checks {
		if v := c(); v.reason != "" {
			return v
		}
	}
	return verdict{reason: ReasonReady, message: "all references resolve"}
}

// secretStoreOf is the store that resolves an object's secretKeyRefs: the built-in
// Kubernetes store unless auth.secretStore names another.
func secretStoreOf(auth common.Auth) string {
	if auth.SecretStore == "" {
		return BuiltinSecretStore
	}
	return auth.SecretStore
}

func checkSecretStore(field, store string, v namespaceView) verdict {
	if store == BuiltinSecretStore {
		return pass()
	}
	c, ok := v.components[store]
	if !ok {
		return verdict{ReasonSecretStoreNotFound, fmt.Sprintf("%s: secret store %q is not a Component in this namespace", field, store)}
	}
	if !strings.HasPrefix(c.Spec.Type, "secretstores.") {
		return verdict{ReasonSecretStoreNotFound, fmt.Sprintf("%s: Component %q is of type %s, not a secret store", field, store, c.Spec.Type)}
	}
	return pass()
}

// secretRef is one secretKeyRef and the field that holds it.
type secretRef struct {
	field string
	ref   common.SecretKeyRef
}

// key is the Secret key a reference reads; Dapr reads the key named like the Secret when
// none is given.
func (r secretRef) key() string {
	if r.ref.Key == "" {
		return r.ref.Name
	}
	return r.ref.Key
}

// checkSecretRefs verifies each reference against the Secrets of the namespace. Only the
// built-in store can be checked here: other stores live outside the cluster's API.
func checkSecretRefs(store string, refs []secretRef, v namespaceView) verdict {
	if store != BuiltinSecretStore {
		return pass()
	}
	for _, r := range refs {
		data, ok := v.secrets[r.ref.Name]
		if !ok {
			return verdict{ReasonSecretNotFound, fmt.Sprintf("%s: Secret %q not found", r.field, r.ref.Name)}
		}
		if _, ok := data[r.key()]; !ok {
			return verdict{ReasonSecretKeyNotFound, fmt.Sprintf("%s: Secret %q has no key %q", r.field, r.ref.Name, r.key())}
		}
	}
	return pass()
}

func nameValueSecretRefs(path string, items []common.NameValuePair) []secretRef {
	var refs []secretRef
	for i, m := range items {
		if m.SecretKeyRef.Name != "" {
			refs = append(refs, secretRef{fmt.Sprintf("%s[%d](%s).secretKeyRef", path, i, m.Name), m.SecretKeyRef})
		}
	}
	return refs
}

func componentSecretRefs(c *daprv1alpha1.Component) []secretRef {
	return nameValueSecretRefs("spec.metadata", c.Spec.Metadata)
}

func httpEndpointSecretRefs(e *daprv1alpha1.HTTPEndpoint) []secretRef {
	refs := nameValueSecretRefs("spec.headers", e.Spec.Headers)
	if tls := e.Spec.ClientTLS; tls != nil {
		for _, d := range []struct {
			field string
			doc   *daprv1alpha1.TLSDocument
		}{{"rootCA", tls.RootCA}, {"certificate", tls.Certificate}, {"privateKey", tls.PrivateKey}} {
			if d.doc != nil && d.doc.SecretKeyRef.Name != "" {
				refs = append(refs, secretRef{"spec.clientTLS." + d.field + ".secretKeyRef", d.doc.SecretKeyRef})
			}
		}
	}
	return refs
}

// ComponentReadiness: its secret store exists and every secretKeyRef resolves.
func componentReadiness(c *daprv1alpha1.Component, v namespaceView) verdict {
	store := secretStoreOf(c.Auth)
	return firstFailure(
		func() verdict { return checkSecretStore("auth.secretStore", store, v) },
		func() verdict { return checkSecretRefs(store, componentSecretRefs(c), v) },
	)
}

func httpEndpointReadiness(e *daprv1alpha1.HTTPEndpoint, v namespaceView) verdict {
	store := secretStoreOf(e.Auth)
	return firstFailure(
		func() verdict { return checkSecretStore("auth.secretStore", store, v) },
		func() verdict { return checkSecretRefs(store, httpEndpointSecretRefs(e), v) },
	)
}

func subscriptionReadiness(s *daprv2alpha1.Subscription, v namespaceView) verdict {
	return firstFailure(func() verdict {
		c, ok := v.components[s.Spec.Pubsubname]
		if !ok {
			return verdict{ReasonPubsubNotFound, fmt.Sprintf("spec.pubsubname: pub/sub Component %q not found in this namespace", s.Spec.Pubsubname)}
		}
		if !strings.HasPrefix(c.Spec.Type, "pubsub.") {
			return verdict{ReasonPubsubNotFound, fmt.Sprintf("spec.pubsubname: Component %q is of type %s, not a pub/sub", s.Spec.Pubsubname, c.Spec.Type)}
		}
		return pass()
	})
}

func configurationReadiness(c *daprv1alpha1.Configuration, v namespaceView) verdict {
	var checks []func() verdict
	if c.Spec.Secrets != nil {
		for i, scope := range c.Spec.Secrets.Scopes {
			field := fmt.Sprintf("spec.secrets.scopes[%d].storeName", i)
			checks = append(checks, func() verdict { return checkSecretStore(field, scope.StoreName, v) })
		}
	}
	return firstFailure(checks...)
}

func resiliencyReadiness(r *daprv1alpha1.Resiliency, v namespaceView) verdict {
	names := sortedKeys(r.Spec.Targets.Components)
	return firstFailure(func() verdict {
		for _, name := range names {
			if _, ok := v.components[name]; !ok {
				return verdict{ReasonComponentNotFound, fmt.Sprintf("spec.targets.components.%s: Component %q not found in this namespace", name, name)}
			}
		}
		return pass()
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
