package kubelet

import (
	"bytes"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// hostEntry is one line of a hosts file.
type hostEntry struct {
	ip    string
	names []string
}

// serviceEntries stands in for cluster DNS: each headless Service with a selector
// resolves to the IPs of the pods it selects that have one, as its DNS A records would
// (here without waiting for readiness, so that sidecars find each other while starting).
// ClusterIP Services get nothing, as there is no kube-proxy to route their virtual IPs.
func serviceEntries(services []*corev1.Service, pods []*corev1.Pod, domain string) []hostEntry {
	byIP := map[string][]string{}
	for _, svc := range services {
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || len(svc.Spec.Selector) == 0 {
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		for _, pod := range pods {
			if pod.Namespace != svc.Namespace || pod.Status.PodIP == "" || pod.DeletionTimestamp != nil ||
				!sel.Matches(labels.Set(pod.Labels)) {
				continue
			}
			byIP[pod.Status.PodIP] = append(byIP[pod.Status.PodIP],
				fmt.Sprintf("%s.%s.svc.%s", svc.Name, svc.Namespace, domain),
				fmt.Sprintf("%s.%s.svc", svc.Name, svc.Namespace))
		}
	}
	out := make([]hostEntry, 0, len(byIP))
	for ip, names := range byIP {
		slices.Sort(names)
		out = append(out, hostEntry{ip: ip, names: slices.Compact(names)})
	}
	slices.SortFunc(out, func(a, b hostEntry) int {
		if a.ip < b.ip {
			return -1
		}
		if a.ip > b.ip {
			return 1
		}
		return 0
	})
	return out
}

// renderHosts writes a pod's /etc/hosts: loopback, the pod's own name, as the kubelet
// writes it, then the names relayed to the host (Options.LoopbackNames), then the
// Services.
func renderHosts(podName, podIP string, loopbackNames []string, entries []hostEntry) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by outrigger's local kubelet: the pod, then the headless Services.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	if podIP != "" {
		fmt.Fprintf(&b, "%s\t%s\n", podIP, podName)
	}
	if len(loopbackNames) > 0 {
		entries = append([]hostEntry{{ip: "127.0.0.1", names: loopbackNames}}, entries...)
	}
	for _, e := range entries {
		b.WriteString(e.ip)
		for _, n := range e.names {
			b.WriteString("\t")
			b.WriteString(n)
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// renderResolvConf sends the DNS queries that the hosts file does not answer to the
// pod's own loopback, where nothing listens, so that they fail at once instead of
// timing out against the host's resolver, which a pod cannot reach.
func renderResolvConf(namespace, domain string) []byte {
	return fmt.Appendf(nil, "# Written by outrigger's local kubelet: names resolve through /etc/hosts only.\nnameserver 127.0.0.1\nsearch %s.svc.%s svc.%s %s\noptions ndots:1 attempts:1 timeout:1\n",
		namespace, domain, domain, domain)
}
