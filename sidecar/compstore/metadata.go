package compstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

// secretStoreFor is the secret store that resolves c's secretKeyRefs.
func (s *Store) secretStoreFor(c *daprv1alpha1.Component) string {
	if c.Auth.SecretStore != "" {
		return c.Auth.SecretStore
	}
	return s.DefaultSecretStore
}

// secretDependency is the secret store c needs loaded first: the one its secretKeyRefs
// go through, if it has any.
func (s *Store) secretDependency(c *daprv1alpha1.Component) string {
	for _, item := range c.Spec.Metadata {
		if item.Value.IsZero() && item.SecretKeyRef.Name != "" {
			return s.secretStoreFor(c)
		}
	}
	return ""
}

// resolveMetadata turns the metadata items into the properties Init receives: each
// value as text, with secretKeyRef read through the component's secret store and envRef
// from the environment, then Dapr's placeholders filled in.
func (s *Store) resolveMetadata(ctx context.Context, c *daprv1alpha1.Component) (map[string]string, error) {
	props := make(map[string]string, len(c.Spec.Metadata))
	secrets := map[string]map[string]string{} // each secret is read once, as Dapr caches it
	for _, item := range c.Spec.Metadata {
		var val string
		switch {
		case !item.Value.IsZero():
			val = item.Value.String()
		case item.SecretKeyRef.Name != "":
			v, err := s.secretValue(ctx, c, item, secrets)
			if err != nil {
				return nil, fmt.Errorf("metadata %q: %w", item.Name, err)
			}
			val = v
		case item.EnvRef != "":
			v, err := s.envValue(c, item)
			if err != nil {
				return nil, fmt.Errorf("metadata %q: %w", item.Name, err)
			}
			val = v
		}
		if val == "" && (item.SecretKeyRef.Name != "" || item.EnvRef != "") {
			// Dapr leaves an item whose reference resolves to nothing out of the
			// properties, so the component applies its default.
			continue
		}
		val, err := s.expand(val)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", item.Name, err)
		}
		props[item.Name] = val
	}
	return props, nil
}

func (s *Store) secretValue(ctx context.Context, c *daprv1alpha1.Component, item common.NameValuePair, cache map[string]map[string]string) (string, error) {
	ref := item.SecretKeyRef
	storeName := s.secretStoreFor(c)
	if storeName == "" {
		return "", fmt.Errorf("secretKeyRef %q needs auth.secretStore, the name of a secret store component "+
			"(in self-hosted mode there is no default secret store)", ref.Name)
	}
	data, ok := cache[ref.Name]
	if !ok {
		store, release, ok := s.SecretStores().Acquire(storeName)
		if !ok {
			s.mu.RLock()
			f := s.failed[storeName]
			s.mu.RUnlock()
			if f != nil {
				return "", fmt.Errorf("secretKeyRef %q: secret store %q failed to initialise: %s", ref.Name, storeName, f.Error)
			}
			return "", fmt.Errorf("secretKeyRef %q: secret store %q is not loaded (auth.secretStore must name a secretstores component for this app)", ref.Name, storeName)
		}
		ns := c.Namespace
		if ns == "" {
			ns = s.Namespace
		}
		var err error
		data, err = store.GetSecret(ctx, ref.Name, map[string]string{"namespace": ns})
		release()
		if err != nil {
			// Dapr logs this and initialises the component without the value; a clear
			// failure, retried when the secret changes, is easier to act on.
			return "", fmt.Errorf("secretKeyRef %q: read from secret store %q: %w", ref.Name, storeName, err)
		}
		cache[ref.Name] = data
	}
	// As in Dapr, a reference without a key reads the key named like the secret, which
	// is how single-valued stores (local.env, local.file) return it.
	key := ref.Key
	if key == "" {
		key = ref.Name
	}
	v, ok := data[key]
	if !ok {
		return "", fmt.Errorf("secretKeyRef %q: secret store %q has no key %q in that secret", ref.Name, storeName, key)
	}
	return v, nil
}

// envValue reads an envRef. As in Dapr, the sidecar's own variables (DAPR_*,
// APP_API_TOKEN) are off limits, and so is anything outside DAPR_ENV_KEYS when the
// injector has set that list; Dapr logs and ignores such a reference, which here is an
// error, as it is always a mistake. A variable that is not set gives no value, as in
// Dapr.
func (s *Store) envValue(c *daprv1alpha1.Component, item common.NameValuePair) (string, error) {
	name := item.EnvRef
	upper := strings.ToUpper(name)
	switch {
	case strings.ContainsAny(name, " =\x00"):
		return "", fmt.Errorf("envRef %q is not an environment variable name", name)
	case upper == "APP_API_TOKEN" || strings.HasPrefix(upper, "DAPR_"):
		return "", fmt.Errorf("envRef %q: the sidecar's DAPR_* and APP_API_TOKEN variables cannot be read by components", name)
	}
	if allow, ok := s.LookupEnv("DAPR_ENV_KEYS"); ok && allow != "" {
		allowed := false
		for _, k := range strings.Fields(allow) {
			if strings.EqualFold(k, name) {
				allowed = true
				break
			}
		}
		if !allowed {
			return "", fmt.Errorf("envRef %q is not among the variables listed in DAPR_ENV_KEYS", name)
		}
	}
	v, ok := s.LookupEnv(name)
	if !ok {
		s.Log.Info("Environment variable of an envRef is not set", "Component", c.Name, "metadata", item.Name, "envRef", name)
	}
	return v, nil
}

// expand fills in Dapr's placeholders: {uuid} (a new random UUID for each occurrence),
// {podName}, {appID}, and {namespace}, which Dapr expands to "<namespace>.<appID>".
func (s *Store) expand(v string) (string, error) {
	if !strings.Contains(v, "{") {
		return v, nil
	}
	for strings.Contains(v, "{uuid}") {
		v = strings.Replace(v, "{uuid}", newUUID(), 1)
	}
	if strings.Contains(v, "{podName}") {
		if s.PodName == "" {
			return "", errors.New("the value uses {podName}, but the pod name is only known in Kubernetes mode (POD_NAME)")
		}
		v = strings.ReplaceAll(v, "{podName}", s.PodName)
	}
	v = strings.ReplaceAll(v, "{namespace}", s.Namespace+"."+s.AppID)
	v = strings.ReplaceAll(v, "{appID}", s.AppID)
	return v, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
