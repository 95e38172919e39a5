package kubelet

import (
	"io"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
)

// DefaultNodeName is the node whose pods the kubelet runs unless told otherwise.
const DefaultNodeName = "outrigger-dev"

// Image stands for a container image: the local command it runs, as Docker's
// ENTRYPOINT, CMD, WORKDIR and ENV.
type Image struct {
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	// Env is the image's environment (PATH, ...), which the container's env overrides.
	Env []string
}

// Relay joins PodPort on a pod's loopback to HostPort on the host's.
type Relay struct {
	PodPort, HostPort int
}

// podRelays lists the loopback relays of every pod: the API server's port, HostPorts
// (each to itself), then Relays; the first relay of a pod port wins.
func podRelays(apiPort int, hostPorts []int, extra []Relay) []Relay {
	out := []Relay{{apiPort, apiPort}}
	seen := map[int]bool{apiPort: true}
	add := func(r Relay) {
		if r.PodPort > 0 && r.HostPort > 0 && !seen[r.PodPort] {
			seen[r.PodPort] = true
			out = append(out, r)
		}
	}
	for _, p := range hostPorts {
		add(Relay{p, p})
	}
	for _, r := range extra {
		add(r)
	}
	return out
}

// Options configure a Kubelet.
type Options struct {
	// Config reaches the API server with the kubelet's own (admin) credentials.
	Config *rest.Config
	// NodeName selects the pods to run: those whose spec.nodeName is this.
	NodeName string
	// Images maps image references to local commands. A container whose image is not
	// here waits with the reason ErrImagePull.
	Images map[string]Image
	// RootDir holds the pods' files: service-account kubeconfigs and container logs.
	RootDir string
	// HostPorts are loopback ports of the host that every pod reaches on its own
	// 127.0.0.1 and ::1. The API server's port is always added.
	HostPorts []int
	// Relays join ports of every pod's 127.0.0.1 and ::1 to other loopback ports of
	// the host, as a Service's port maps to its target port: a ClusterIP Service that
	// stands for a host process.
	Relays []Relay
	// LoopbackNames resolve to 127.0.0.1 in every pod's hosts file: the names of such
	// Services (there is no kube-proxy for their virtual IPs).
	LoopbackNames []string
	// Output receives every line the containers write, prefixed with pod and container;
	// nil discards it (the log files under RootDir keep it).
	Output io.Writer
	// Color prefixes Output's lines with a colour per pod.
	Color bool
	// MaxGracePeriod caps how long a container is given to stop after SIGTERM, when
	// the kubelet stops; 0 means 10s.
	MaxGracePeriod time.Duration
	// ClusterDomain defaults to cluster.local.
	ClusterDomain string
	Log           logr.Logger
}

func (o *Options) defaults() {
	if o.NodeName == "" {
		o.NodeName = DefaultNodeName
	}
	if o.MaxGracePeriod == 0 {
		o.MaxGracePeriod = 10 * time.Second
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
}
