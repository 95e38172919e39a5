// Package sentry is the operator's certificate authority for mTLS between sidecars, the
// counterpart of Dapr's Sentry and wire-compatible with it (service
// dapr.proto.sentry.v1.CA). It keeps the trust bundle (Secret dapr-trust-bundle: the
// root ca.crt, issuer.crt and issuer.key; ConfigMap dapr-trust-bundle: ca.crt for the
// injector), proves a caller's pod identity with its projected service-account token
// (TokenReview, then the Pod and its Configuration), and signs the sidecar's CSR with
// its SPIFFE ID (internal/spiffe) as the only URI SAN.
//
//	ca.go         the trust bundle and leaf signing: pure, no I/O
//	bundle.go     the Secret and ConfigMap: create if missing, never overwrite
//	validator.go  the Kubernetes validator (TokenReview, Pod, Configuration)
//	server.go     the gRPC server over TLS, a manager Runnable on every replica
package sentry
