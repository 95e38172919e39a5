// Package kubelet plays the kubelet (and the bits of kube-proxy and cluster DNS that
// Outrigger's sidecars rely on) on one Linux machine, for `outrigger dev --demo` and the
// e2e test. It watches the Pods bound to its node on a real API server and runs each
// container as a local process, with exactly the command, args and environment of the
// pod spec as the API server stored it (so after the injector's mutation).
//
// Each pod gets what the sidecar contract needs from a pod:
//
//   - its own network namespace (`ip netns`), wired by a veth pair to a bridge on the
//     host, so that every pod's daprd can listen on 3500, 50001, 50002, 3501 and 9090 and
//     apps call localhost:3500 as they do in a cluster; the pod IP goes into the Pod's
//     status, so `status.podIP` field references resolve;
//   - name resolution for the headless Services (`<app-id>-dapr.<namespace>.svc.cluster.local`
//     resolves to the IPs of the pods the Service selects), through the hosts file that
//     `ip netns exec` bind-mounts from /etc/netns/<netns>/ over /etc/hosts;
//   - the host's loopback services (Redis, PostgreSQL, the API server, ...) on the pod's own
//     127.0.0.1, through listeners the kubelet opens inside the pod's namespace and relays
//     to the host, so that `localhost:6379` in a Component means the machine's Redis;
//   - host services that stand for ClusterIP Services: Options.LoopbackNames resolve to
//     127.0.0.1 in every pod, and Options.Relays join pod ports to other host ports (the
//     dev control plane's certificate authority is dapr-sentry.<ns>.svc:443 in each pod);
//   - credentials for the pod's service account: a token from the TokenRequest API in a
//     kubeconfig that KUBECONFIG names (see saCredentials);
//   - projected service-account token volumes: each token (its audience and expiration,
//     bound to the pod) is written under RootDir and renewed at 80% of its life; as
//     processes have no mount namespace of their own, a container that mounts one at
//     SentryTokenMountPath gets DAPR_SENTRY_TOKEN_FILE naming the file instead, the
//     stand-in for the mount, as KUBECONFIG is for the default token.
//
// Images map to local commands (Options.Images). What it does not do: other volumes, resource
// limits, security contexts (processes run as the kubelet's user), liveness and startup
// probes, exec probes, ClusterIP Services, and `kubectl logs/exec` (container output goes
// to Options.Output and to files under Options.RootDir).
package kubelet
