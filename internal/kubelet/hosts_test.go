package kubelet

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestHostsFile(t *testing.T) {
	svc := func(name, ns, clusterIP string, sel map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Selector: sel}}
	}
	pod := func(name, ns, ip string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}, Status: corev1.PodStatus{PodIP: ip}}
	}
	deleting := pod("gone", "default", "10.244.0.9", map[string]string{"app": "node"})
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	services := []*corev1.Service{
		svc("nodeapp-dapr", "default", corev1.ClusterIPNone, map[string]string{"app": "node"}),
		svc("nodeapp", "default", "10.0.0.21", map[string]string{"app": "node"}), // ClusterIP: no kube-proxy
		svc("python-dapr", "other", corev1.ClusterIPNone, map[string]string{"app": "python"}),
		svc("external", "default", corev1.ClusterIPNone, nil), // no selector
	}
	pods := []*corev1.Pod{
		pod("node-1", "default", "10.244.0.3", map[string]string{"app": "node"}),
		pod("node-2", "default", "10.244.0.2", map[string]string{"app": "node"}),
		pod("node-0", "default", "", map[string]string{"app": "node"}),               // no IP yet
		pod("python-1", "default", "10.244.0.4", map[string]string{"app": "python"}), // other namespace's Service
		deleting,
	}
	got := string(renderHosts("node-1", "10.244.0.3", []string{"dapr-sentry.cp.svc", "dapr-sentry.cp.svc.cluster.local"}, serviceEntries(services, pods, "cluster.local")))
	want := `# Written by outrigger's local kubelet: the pod, then the headless Services.
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
10.244.0.3	node-1
127.0.0.1	dapr-sentry.cp.svc	dapr-sentry.cp.svc.cluster.local
10.244.0.2	nodeapp-dapr.default.svc	nodeapp-dapr.default.svc.cluster.local
10.244.0.3	nodeapp-dapr.default.svc	nodeapp-dapr.default.svc.cluster.local
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if rc := string(renderResolvConf("shop", "cluster.local")); !strings.Contains(rc, "nameserver 127.0.0.1\n") || !strings.Contains(rc, "search shop.svc.cluster.local svc.cluster.local cluster.local\n") {
		t.Errorf("resolv.conf:\n%s", rc)
	}
}

func TestPodRelays(t *testing.T) {
	got := podRelays(6443, []int{6379, 6443, 0, 5432}, []Relay{{PodPort: 443, HostPort: 41234}, {PodPort: 6379, HostPort: 1}, {PodPort: 80}})
	want := []Relay{{6443, 6443}, {6379, 6379}, {5432, 5432}, {443, 41234}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for in, want := range map[string]string{
		"plain":       "plain",
		"$(A)":        "1",
		"x$(A)y$(B)z": "x1ytwoz",
		"$$(A)":       "$(A)",
		"$(C)":        "$(C)",
		"$(A":         "$(A",
		"$A $":        "$A $",
		"$$$(A)":      "$1",
		"cost: $$5":   "cost: $5",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}
