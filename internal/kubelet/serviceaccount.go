package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ServiceAccountMountPath is where the ServiceAccount admission plugin mounts a pod's
// token; the local kubelet gives a container that has this mount KUBECONFIG instead.
const ServiceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// tokenExpiration is what the kubelet asks for a projected token; the API server may
// extend it, and the token is renewed at 80% of what it grants.
const tokenExpiration = 3607 * time.Second

// saCredentials stand in for the projected service-account volume: a bound token from
// the TokenRequest API, in a file that a kubeconfig names through tokenFile (which
// client-go re-reads, so renewals apply without a restart). A container cannot see the
// token at the usual path without a mount namespace of its own, so it gets KUBECONFIG
// pointing at this kubeconfig, whose server is the API server's loopback address,
// reachable from the pod through the kubelet's relay.
type saCredentials struct {
	dir        string
	kubeconfig string
	expires    time.Time
	issued     time.Time
}

func (c *saCredentials) renewAt() time.Time {
	return c.issued.Add(c.expires.Sub(c.issued) * 4 / 5)
}

// issueToken requests a token bound to the pod and writes it with a kubeconfig.
func issueToken(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, server string, caData []byte, dir string) (*saCredentials, error) {
	exp := int64(tokenExpiration.Seconds())
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		// Without the ServiceAccount admission plugin nothing defaulted the name, and
		// the API server binds a token only to a pod that names its account.
		sa = "default"
	} else {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("request a token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(dir, "token")
	if err := writeFileAtomic(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, "namespace"), []byte(pod.Namespace), 0o644); err != nil {
		return nil, err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{TokenFile: tokenFile}
	cfg.Contexts["pod"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: sa, Namespace: pod.Namespace}
	cfg.CurrentContext = "pod"
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		return nil, fmt.Errorf("write the pod's kubeconfig: %w", err)
	}
	return &saCredentials{dir: dir, kubeconfig: kubeconfig, issued: time.Now(), expires: tr.Status.ExpirationTimestamp.Time}, nil
}

// writeFileAtomic replaces a file by renaming, so that a reader never sees half of it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// mountsServiceAccount reports whether the container has the token mount that the
// ServiceAccount admission plugin adds.
func mountsServiceAccount(c *corev1.Container) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == ServiceAccountMountPath {
			return true
		}
	}
	return false
}

// getsToken reports whether a container gets the service-account credentials: where
// the ServiceAccount admission plugin mounted the token or, when that plugin is off
// (envtest's API server runs without it), wherever it would have: in every container,
// unless the pod opts out.
func getsToken(pod *corev1.Pod, c *corev1.Container) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if mountsServiceAccount(&cs[i]) {
				return mountsServiceAccount(c)
			}
		}
	}
	return pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken
}

// needsToken reports whether any container of the pod gets a token.
func needsToken(pod *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if getsToken(pod, &cs[i]) {
				return true
			}
		}
	}
	return false
}

// SentryTokenMountPath is where Dapr's injector mounts the projected token that a
// sidecar shows the certificate authority (Sentry); the sidecar reads the file token
// there, or the file that DAPR_SENTRY_TOKEN_FILE names.
const SentryTokenMountPath = "/var/run/secrets/dapr.io/sentrytoken"

// defaultProjectedExpiration is the API's default expirationSeconds of a projected
// service-account token.
const defaultProjectedExpiration = int64(3600)

// projectedToken is a serviceAccountToken source of a projected volume.
type projectedToken struct {
	volume     string
	audience   string
	expiration int64
	path       string
}

// projectedTokens lists the serviceAccountToken sources of the projected volumes that
// the pod's containers mount.
func projectedTokens(pod *corev1.Pod) []projectedToken {
	mounted := map[string]bool{}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, m := range c.VolumeMounts {
				mounted[m.Name] = true
			}
		}
	}
	var out []projectedToken
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil || !mounted[v.Name] {
			continue
		}
		for _, src := range v.Projected.Sources {
			sat := src.ServiceAccountToken
			if sat == nil {
				continue
			}
			t := projectedToken{volume: v.Name, audience: sat.Audience, expiration: defaultProjectedExpiration, path: sat.Path}
			if sat.ExpirationSeconds != nil {
				t.expiration = *sat.ExpirationSeconds
			}
			out = append(out, t)
		}
	}
	return out
}

// volumeTokenEnv stands in for the projected token mounts of a container: processes
// have no mount namespace of their own, so the sidecar that mounts the Sentry token
// gets DAPR_SENTRY_TOKEN_FILE naming the kubelet's copy of that volume (volumeDir
// holds each volume's files), as KUBECONFIG stands in for the default token.
func volumeTokenEnv(c *corev1.Container, tokens []projectedToken, volumeDir func(volume string) string) []string {
	for _, m := range c.VolumeMounts {
		if m.MountPath != SentryTokenMountPath {
			continue
		}
		for _, t := range tokens {
			if t.volume == m.Name {
				return []string{"DAPR_SENTRY_TOKEN_FILE=" + filepath.Join(volumeDir(m.Name), "token")}
			}
		}
	}
	return nil
}

// issueProjectedToken requests a token for t bound to the pod and writes it into the
// volume's directory; it returns when to renew it, at 80% of its life, as the kubelet
// renews projected tokens.
func issueProjectedToken(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, t projectedToken, dir string) (time.Time, error) {
	exp := t.expiration
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}
	if t.audience != "" {
		req.Spec.Audiences = []string{t.audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default" // unbound, as in issueToken
	} else {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	issued := time.Now()
	tr, err := cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("request a token for volume %s (audience %q) of service account %s/%s: %w", t.volume, t.audience, pod.Namespace, sa, err)
	}
	file := filepath.Join(dir, filepath.Clean("/"+t.path))
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return time.Time{}, err
	}
	if err := writeFileAtomic(file, []byte(tr.Status.Token), 0o600); err != nil {
		return time.Time{}, err
	}
	return issued.Add(tr.Status.ExpirationTimestamp.Sub(issued) * 4 / 5), nil
}
