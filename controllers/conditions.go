// Package controllers holds the operator's reconcilers. Each dapr.io kind gets one that
// computes its Ready condition from pure checks and records observedGeneration.
package controllers

// Reasons of the Ready condition.
const (
	// ReasonReady: every reference the object makes resolves.
	ReasonReady = "Ready"
	// ReasonSecretNotFound: a secretKeyRef names a Secret that does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyNotFound: the Secret exists but lacks the referenced key.
	ReasonSecretKeyNotFound = "SecretKeyNotFound"
	// ReasonSecretStoreNotFound: auth.secretStore or a secret scope names no secret store.
	ReasonSecretStoreNotFound = "SecretStoreNotFound"
	// ReasonPubsubNotFound: a Subscription's pubsubname names no pub/sub Component.
	ReasonPubsubNotFound = "PubsubNotFound"
	// ReasonComponentNotFound: a Resiliency targets a Component that does not exist.
	ReasonComponentNotFound = "ComponentNotFound"
)

// BuiltinSecretStore is the secret store every sidecar in Kubernetes has unless it is
// disabled: it reads the Secrets of the pod's namespace.
const BuiltinSecretStore = "kubernetes"
