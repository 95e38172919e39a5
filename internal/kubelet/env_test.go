package kubelet

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type fakeSource struct {
	secrets    map[string]map[string][]byte
	configMaps map[string]map[string]string
}

func (f fakeSource) Secret(_ context.Context, _, name string) (map[string][]byte, error) {
	if s, ok := f.secrets[name]; ok {
		return s, nil
	}
	return nil, errors.New("not found")
}

func (f fakeSource) ConfigMap(_ context.Context, _, name string) (map[string]string, error) {
	if c, ok := f.configMaps[name]; ok {
		return c, nil
	}
	return nil, errors.New("not found")
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func TestContainerEnv(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nodeapp-abc", Namespace: "shop", UID: "u-1",
			Labels: map[string]string{"app": "node"}, Annotations: map[string]string{"dapr.io/app-id": "nodeapp"}},
		Spec:   corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"},
		Status: corev1.PodStatus{PodIP: "10.244.0.2", HostIP: "10.244.0.1"},
	}
	src := fakeSource{
		secrets:    map[string]map[string][]byte{"tok": {"token": []byte("s3cret")}},
		configMaps: map[string]map[string]string{"cfg": {"B": "2", "A": "1"}},
	}
	yes := true
	tests := []struct {
		name    string
		c       corev1.Container
		want    []envVar
		wantErr string
	}{{
		name: "the injected daprd's field references",
		c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "NAMESPACE", ValueFrom: fieldRef("metadata.namespace")},
			{Name: "POD_NAME", ValueFrom: fieldRef("metadata.name")},
			{Name: "DAPR_HOST_IP", ValueFrom: fieldRef("status.podIP")},
		}},
		want: []envVar{{"NAMESPACE", "shop"}, {"POD_NAME", "nodeapp-abc"}, {"DAPR_HOST_IP", "10.244.0.2"}},
	}, {
		name: "other downward fields",
		c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "L", ValueFrom: fieldRef("metadata.labels['app']")},
			{Name: "A", ValueFrom: fieldRef("metadata.annotations['dapr.io/app-id']")},
			{Name: "N", ValueFrom: fieldRef("spec.nodeName")},
			{Name: "S", ValueFrom: fieldRef("spec.serviceAccountName")},
			{Name: "U", ValueFrom: fieldRef("metadata.uid")},
			{Name: "H", ValueFrom: fieldRef("status.hostIP")},
		}},
		want: []envVar{{"L", "node"}, {"A", "nodeapp"}, {"N", "n1"}, {"S", "sa"}, {"U", "u-1"}, {"H", "10.244.0.1"}},
	}, {
		name: "envFrom in key order, then env, later wins, $(VAR) sees earlier ones",
		c: corev1.Container{
			EnvFrom: []corev1.EnvFromSource{{Prefix: "CM_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
			Env: []corev1.EnvVar{
				{Name: "PORT", Value: "3000"},
				{Name: "URL", Value: "http://localhost:$(PORT)/$(LATER)/$$(PORT)"},
				{Name: "CM_A", Value: "override"},
				{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "tok"}, Key: "token"}}},
				{Name: "LATER", Value: "x"},
			},
		},
		want: []envVar{{"CM_A", "override"}, {"CM_B", "2"}, {"PORT", "3000"}, {"URL", "http://localhost:3000/$(LATER)/$(PORT)"}, {"TOKEN", "s3cret"}, {"LATER", "x"}},
	}, {
		name: "a missing optional key is left out",
		c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "tok"}, Key: "nope", Optional: &yes}}},
			{Name: "Y", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Key: "k", Optional: &yes}}},
		}},
		want: nil,
	}, {
		name: "a missing required key fails, naming the variable",
		c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "tok"}, Key: "nope"}}},
		}},
		wantErr: `env X: secret "tok" has no key "nope"`,
	}, {
		name:    "an unsupported field",
		c:       corev1.Container{Env: []corev1.EnvVar{{Name: "X", ValueFrom: fieldRef("spec.bogus")}}},
		wantErr: `fieldRef "spec.bogus" is not supported`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := containerEnv(context.Background(), pod, &tt.c, src)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	img := Image{Entrypoint: []string{"/bin/outrigger"}, Cmd: []string{"version"}}
	env := []envVar{{"APP", "nodeapp"}}
	tests := []struct {
		name string
		c    corev1.Container
		want []string
	}{
		{"the image's entrypoint and cmd", corev1.Container{}, []string{"/bin/outrigger", "version"}},
		{"args replace cmd", corev1.Container{Args: []string{"sidecar", "--app-id", "$(APP)"}}, []string{"/bin/outrigger", "sidecar", "--app-id", "nodeapp"}},
		{"command replaces both", corev1.Container{Command: []string{"sh", "-c"}, Args: []string{"echo $(APP) $(NOPE)"}}, []string{"sh", "-c", "echo nodeapp $(NOPE)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := commandLine(img, &tt.c, env); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	img := Image{Env: []string{"PATH=/usr/bin", "LANG=C"}}
	got := processEnv(img, []envVar{{"LANG", "C.UTF-8"}, {"A", "1"}}, "KUBECONFIG=/k")
	want := []string{"PATH=/usr/bin", "LANG=C.UTF-8", "A=1", "KUBECONFIG=/k"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestGetsToken(t *testing.T) {
	mount := corev1.Container{Name: "a", VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access", MountPath: ServiceAccountMountPath}}}
	bare := corev1.Container{Name: "b"}
	no := false
	tests := []struct {
		name string
		pod  corev1.PodSpec
		c    corev1.Container
		want bool
	}{
		{"the admission plugin mounted it here", corev1.PodSpec{Containers: []corev1.Container{mount, bare}}, mount, true},
		{"the admission plugin mounted it elsewhere", corev1.PodSpec{Containers: []corev1.Container{mount, bare}}, bare, false},
		{"no plugin: every container", corev1.PodSpec{Containers: []corev1.Container{bare}}, bare, true},
		{"no plugin, opted out", corev1.PodSpec{AutomountServiceAccountToken: &no, Containers: []corev1.Container{bare}}, bare, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := getsToken(&corev1.Pod{Spec: tt.pod}, &tt.c); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
