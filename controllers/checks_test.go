package controllers

import (
	"testing"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
)

func component(name, typ string) *daprv1alpha1.Component {
	c := &daprv1alpha1.Component{}
	c.Name, c.Spec.Type, c.Spec.Version = name, typ, "v1"
	return c
}

func withSecretRef(c *daprv1alpha1.Component, item, secret, key string) *daprv1alpha1.Component {
	c.Spec.Metadata = append(c.Spec.Metadata, common.NameValuePair{Name: item, SecretKeyRef: common.SecretKeyRef{Name: secret, Key: key}})
	return c
}

func view(secrets map[string]map[string][]byte, comps ...*daprv1alpha1.Component) namespaceView {
	v := namespaceView{secrets: secrets, components: map[string]*daprv1alpha1.Component{}}
	for _, c := range comps {
		v.components[c.Name] = c
	}
	return v
}

func TestComponentReadiness(t *testing.T) {
	redisSecret := map[string]map[string][]byte{"redis": {"redis-password": []byte("x")}}
	vault := component("vault", "secretstores.hashicorp.vault")
	cases := []struct {
		name       string
		comp       *daprv1alpha1.Component
		view       namespaceView
		wantReason string
	}{
		{"no references", component("s", "state.redis"), view(nil), ReasonReady},
		{"secret present", withSecretRef(component("s", "state.redis"), "redisPassword", "redis", "redis-password"), view(redisSecret), ReasonReady},
		{"secret missing", withSecretRef(component("s", "state.redis"), "redisPassword", "redis", "redis-password"), view(nil), ReasonSecretNotFound},
		{"key missing", withSecretRef(component("s", "state.redis"), "redisPassword", "redis", "password"), view(redisSecret), ReasonSecretKeyNotFound},
		{"key defaults to the secret name", withSecretRef(component("s", "state.redis"), "redisPassword", "redis", ""), view(redisSecret), ReasonSecretKeyNotFound},
		{"unknown secret store", func() *daprv1alpha1.Component {
			c := component("s", "state.redis")
			c.Auth.SecretStore = "vault"
			return c
		}(), view(nil), ReasonSecretStoreNotFound},
		{"secret store of the wrong family", func() *daprv1alpha1.Component {
			c := component("s", "state.redis")
			c.Auth.SecretStore = "cache"
			return c
		}(), view(nil, component("cache", "state.in-memory")), ReasonSecretStoreNotFound},
		{"external store is not checked against Kubernetes Secrets", func() *daprv1alpha1.Component {
			c := withSecretRef(component("s", "state.redis"), "redisPassword", "nowhere", "k")
			c.Auth.SecretStore = "vault"
			return c
		}(), view(nil, vault), ReasonReady},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := componentReadiness(tc.comp, tc.view)
			if got.reason != tc.wantReason {
				t.Errorf("reason = %s (%s), want %s", got.reason, got.message, tc.wantReason)
			}
			if got.message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestSubscriptionReadiness(t *testing.T) {
	sub := &daprv2alpha1.Subscription{}
	sub.Spec.Pubsubname = "pubsub"
	cases := []struct {
		name string
		view namespaceView
		want string
	}{
		{"pubsub exists", view(nil, component("pubsub", "pubsub.redis")), ReasonReady},
		{"pubsub missing", view(nil), ReasonPubsubNotFound},
		{"named component is not a pubsub", view(nil, component("pubsub", "state.redis")), ReasonPubsubNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := subscriptionReadiness(sub, tc.view); got.reason != tc.want {
				t.Errorf("reason = %s (%s), want %s", got.reason, got.message, tc.want)
			}
		})
	}
}

func TestConfigurationAndResiliencyReadiness(t *testing.T) {
	cfg := &daprv1alpha1.Configuration{}
	cfg.Spec.Secrets = &daprv1alpha1.SecretsSpec{Scopes: []daprv1alpha1.SecretsScope{{StoreName: "kubernetes"}, {StoreName: "vault"}}}
	if got := configurationReadiness(cfg, view(nil)); got.reason != ReasonSecretStoreNotFound {
		t.Errorf("configuration without vault: %s", got.reason)
	}
	if got := configurationReadiness(cfg, view(nil, component("vault", "secretstores.hashicorp.vault"))); got.reason != ReasonReady {
		t.Errorf("configuration with vault: %s (%s)", got.reason, got.message)
	}

	res := &daprv1alpha1.Resiliency{}
	res.Spec.Targets.Components = map[string]daprv1alpha1.ComponentPolicyNames{"statestore": {}}
	if got := resiliencyReadiness(res, view(nil)); got.reason != ReasonComponentNotFound {
		t.Errorf("resiliency without statestore: %s", got.reason)
	}
	if got := resiliencyReadiness(res, view(nil, component("statestore", "state.redis"))); got.reason != ReasonReady {
		t.Errorf("resiliency with statestore: %s (%s)", got.reason, got.message)
	}
}

func TestHTTPEndpointReadiness(t *testing.T) {
	e := &daprv1alpha1.HTTPEndpoint{}
	e.Spec.BaseURL = "https://api.example.com"
	e.Spec.Headers = []common.NameValuePair{{Name: "Authorization", SecretKeyRef: common.SecretKeyRef{Name: "api", Key: "token"}}}
	e.Spec.ClientTLS = &daprv1alpha1.ClientTLS{RootCA: &daprv1alpha1.TLSDocument{SecretKeyRef: common.SecretKeyRef{Name: "ca", Key: "ca.crt"}}}
	secrets := map[string]map[string][]byte{"api": {"token": []byte("t")}}
	if got := httpEndpointReadiness(e, view(secrets)); got.reason != ReasonSecretNotFound || got.message == "" {
		t.Errorf("without the CA secret: %s (%s)", got.reason, got.message)
	}
	secrets["ca"] = map[string][]byte{"ca.crt": []byte("pem")}
	if got := httpEndpointReadiness(e, view(secrets)); got.reason != ReasonReady {
		t.Errorf("with both secrets: %s (%s)", got.reason, got.message)
	}
}
