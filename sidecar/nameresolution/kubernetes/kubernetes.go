// Package kubernetes resolves app ids to the headless Service `<app-id>-dapr` that the
// operator keeps for each annotated workload, as Dapr's kubernetes name resolver does.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
)

// DefaultPort is the sidecars' internal gRPC port.
const DefaultPort = 50002

// DefaultClusterDomain is the cluster's DNS domain unless configured otherwise.
const DefaultClusterDomain = "cluster.local"

// Resolver builds the Service's DNS name; DNS itself picks a pod. It does not query
// DNS: an unknown app fails when the caller dials, as with Dapr.
type Resolver struct {
	// ClusterDomain defaults to cluster.local.
	ClusterDomain string
	// Port defaults to 50002.
	Port int
}

func (r Resolver) Resolve(_ context.Context, appID, namespace string) (string, error) {
	if appID == "" {
		return "", errors.New("resolve: empty app id")
	}
	if namespace == "" {
		namespace = "default"
	}
	domain := r.ClusterDomain
	if domain == "" {
		domain = DefaultClusterDomain
	}
	port := r.Port
	if port == 0 {
		port = DefaultPort
	}
	host := fmt.Sprintf("%s-dapr.%s.svc.%s", appID, namespace, domain)
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}
