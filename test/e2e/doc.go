// Package e2e runs the seed's hello-kubernetes walkthrough end to end, as `make demo`
// does but without the console: `outrigger dev --demo` starts the local control plane
// and the operator, applies the seed's resources, and plays the kubelet, running the
// injected pods' containers as processes in network namespaces. The test then drives it
// as a user would, with kubectl and HTTP: the orders flow, then, with no process
// restarted, a state store swapped from Redis to PostgreSQL, a Subscription that starts
// delivering, and a Component deleted.
//
// The test is behind the e2e build tag: `make test-e2e`.
package e2e
