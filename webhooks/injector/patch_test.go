package injector

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// nodeappPod is the pod template of the seed's nodeapp Deployment, as a user
// writes it for Dapr's hello-kubernetes sample.
func nodeappPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "nodeapp-6d8f9c7b5-",
			Namespace:    "default",
			Labels:       map[string]string{"app": "node"},
			Annotations: map[string]string{
				"dapr.io/enabled":            "true",
				"dapr.io/app-id":             "nodeapp",
				"dapr.io/app-port":           "3000",
				"dapr.io/enable-api-logging": "true",
			},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "node",
			Image: "ghcr.io/dapr/samples/hello-k8s-node:latest",
			Ports: []corev1.ContainerPort{{ContainerPort: 3000}},
		}}},
	}
}

func pythonappPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "pythonapp-7c9d8b6f4-",
			Namespace:    "default",
			Labels:       map[string]string{"app": "python"},
			Annotations: map[string]string{
				"dapr.io/enabled": "true",
				"dapr.io/app-id":  "pythonapp",
			},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "python",
			Image: "ghcr.io/dapr/samples/hello-k8s-python:latest",
		}}},
	}
}

// inject parses the pod's annotations and applies the patch the way the API server
// would, returning the patch and the mutated pod.
func inject(t *testing.T, pod *corev1.Pod, opts PatchOptions) ([]jsonpatch.JsonPatchOperation, *corev1.Pod) {
	t.Helper()
	cfg, err := ParseAnnotations("mypod", pod.Annotations, testDefaults)
	if err != nil {
		t.Fatalf("ParseAnnotations: %v", err)
	}
	ops, err := BuildPatch(pod, cfg, opts)
	if err != nil {
		t.Fatalf("BuildPatch: %v", err)
	}
	return ops, applyPatch(t, pod, ops)
}

func applyPatch(t *testing.T, pod *corev1.Pod, ops []jsonpatch.JsonPatchOperation) *corev1.Pod {
	t.Helper()
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch5.DecodePatch(raw)
	if err != nil {
		t.Fatalf("decode patch %s: %v", raw, err)
	}
	out, err := patch.Apply(doc)
	if err != nil {
		t.Fatalf("apply patch %s: %v", raw, err)
	}
	mutated := &corev1.Pod{}
	if err := json.Unmarshal(out, mutated); err != nil {
		t.Fatal(err)
	}
	return mutated
}

func findContainer(containers []corev1.Container, name string) *corev1.Container {
	for i := range containers {
		if containers[i].Name == name {
			return &containers[i]
		}
	}
	return nil
}

func daprd(t *testing.T, pod *corev1.Pod) *corev1.Container {
	t.Helper()
	c := findContainer(pod.Spec.Containers, SidecarContainerName)
	if c == nil {
		c = findContainer(pod.Spec.InitContainers, SidecarContainerName)
	}
	if c == nil {
		t.Fatal("no daprd container")
	}
	return c
}

// flagValue returns the value after flag in args, or "" if the flag is absent.
func flagValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

func envValue(env []corev1.EnvVar, name string) (corev1.EnvVar, bool) {
	for _, e := range env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func hasVolumeMount(mounts []corev1.VolumeMount, want corev1.VolumeMount) bool {
	return slices.ContainsFunc(mounts, func(m corev1.VolumeMount) bool { return equality.Semantic.DeepEqual(m, want) })
}

func withAnnotations(pod *corev1.Pod, kv ...string) *corev1.Pod {
	for i := 0; i+1 < len(kv); i += 2 {
		pod.Annotations[kv[i]] = kv[i+1]
	}
	return pod
}

func TestBuildPatchSeedPods(t *testing.T) {
	tests := []struct {
		name     string
		pod      *corev1.Pod
		wantArgs map[string]string // flag to value; "" for a flag that must be absent
	}{
		{"nodeapp", nodeappPod(), map[string]string{
			"--app-id": "nodeapp", "--app-port": "3000", "--enable-api-logging": "true", "--app-protocol": "http",
		}},
		{"pythonapp", pythonappPod(), map[string]string{
			"--app-id": "pythonapp", "--app-port": "", "--enable-api-logging": "", "--app-protocol": "http",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, pod := inject(t, tt.pod, PatchOptions{})
			c := daprd(t, pod)
			if c.Args[0] != "sidecar" || c.Args[1] != "--mode" || c.Args[2] != "kubernetes" {
				t.Errorf("args start %q, want sidecar --mode kubernetes", c.Args[:3])
			}
			for flag, want := range tt.wantArgs {
				got, ok := flagValue(c.Args, flag)
				if want == "" && ok {
					t.Errorf("%s is %q, want it absent", flag, got)
				}
				if want != "" && got != want {
					t.Errorf("%s is %q, want %q (args %q)", flag, got, want, c.Args)
				}
			}
			if pod.Labels[LabelAppID] != tt.name || pod.Labels[LabelSidecarInjected] != "true" || pod.Labels["app"] == "" {
				t.Errorf("labels %v", pod.Labels)
			}
		})
	}
}

func TestBuildPatchDefaultContainer(t *testing.T) {
	_, pod := inject(t, pythonappPod(), PatchOptions{})
	c := daprd(t, pod)

	if len(pod.Spec.Containers) != 2 || pod.Spec.Containers[1].Name != SidecarContainerName {
		t.Fatalf("containers %v, want the app then daprd", pod.Spec.Containers)
	}
	if c.Image != testImage || len(c.Command) != 0 || c.RestartPolicy != nil {
		t.Errorf("image %q, command %q, restartPolicy %v", c.Image, c.Command, c.RestartPolicy)
	}
	wantArgs := []string{
		"sidecar", "--mode", "kubernetes",
		"--app-id", "pythonapp",
		"--app-protocol", "http",
		"--dapr-http-port", "3500",
		"--dapr-grpc-port", "50001",
		"--dapr-internal-grpc-port", "50002",
		"--dapr-public-port", "3501",
		"--dapr-listen-addresses", "[::1],127.0.0.1",
		"--log-level", "info",
		"--max-body-size", "4Mi",
		"--read-buffer-size", "4Ki",
		"--dapr-graceful-shutdown-seconds", "5",
		"--enable-metrics",
		"--metrics-port", "9090",
	}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args\n got %q\nwant %q", c.Args, wantArgs)
	}
	wantPorts := []corev1.ContainerPort{
		{Name: "dapr-http", ContainerPort: 3500, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-grpc", ContainerPort: 50001, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-internal", ContainerPort: 50002, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-public", ContainerPort: 3501, Protocol: corev1.ProtocolTCP},
	}
	if !equality.Semantic.DeepEqual(c.Ports, wantPorts) {
		t.Errorf("ports %+v", c.Ports)
	}
	healthz := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/v1.0/healthz", Port: intstr.FromInt32(3501)}}
	wantProbe := &corev1.Probe{ProbeHandler: healthz, InitialDelaySeconds: 3, TimeoutSeconds: 3, PeriodSeconds: 6, FailureThreshold: 3}
	if !equality.Semantic.DeepEqual(c.LivenessProbe, wantProbe) {
		t.Errorf("liveness %+v", c.LivenessProbe)
	}
	if !equality.Semantic.DeepEqual(c.ReadinessProbe, wantProbe) {
		t.Errorf("readiness %+v", c.ReadinessProbe)
	}
	wantSC := &corev1.SecurityContext{
		RunAsNonRoot:             new(true),
		AllowPrivilegeEscalation: new(false),
		ReadOnlyRootFilesystem:   new(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if !equality.Semantic.DeepEqual(c.SecurityContext, wantSC) {
		t.Errorf("securityContext %+v", c.SecurityContext)
	}
	wantEnv := []corev1.EnvVar{
		{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "DAPR_HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
	}
	if !equality.Semantic.DeepEqual(c.Env, wantEnv) {
		t.Errorf("env %+v", c.Env)
	}
	if len(c.Resources.Requests) != 0 || len(c.Resources.Limits) != 0 || len(c.VolumeMounts) != 0 {
		t.Errorf("resources %+v, mounts %+v; want none", c.Resources, c.VolumeMounts)
	}
	wantAppEnv := []corev1.EnvVar{
		{Name: "DAPR_HTTP_PORT", Value: "3500"},
		{Name: "DAPR_GRPC_PORT", Value: "50001"},
		{Name: "APP_PROTOCOL", Value: "http"},
	}
	if app := pod.Spec.Containers[0]; !equality.Semantic.DeepEqual(app.Env, wantAppEnv) {
		t.Errorf("app env %+v", app.Env)
	}
	wantLabels := map[string]string{"app": "python", "dapr.io/sidecar-injected": "true", "dapr.io/app-id": "pythonapp", "dapr.io/metrics-enabled": "true"}
	if !equality.Semantic.DeepEqual(pod.Labels, wantLabels) {
		t.Errorf("labels %v", pod.Labels)
	}
}

func TestBuildPatchEveryAnnotationReachesTheContainer(t *testing.T) {
	pod := withAnnotations(nodeappPod(),
		AnnotationAppProtocol, "grpc",
		AnnotationAppChannelAddress, "10.1.2.3",
		AnnotationConfig, "tracing",
		AnnotationLogLevel, "debug",
		AnnotationLogAsJSON, "true",
		AnnotationEnableMetrics, "false",
		AnnotationMetricsPort, "9999",
		AnnotationGRPCPort, "50011",
		AnnotationInternalGRPCPort, "50012",
		AnnotationHTTPPort, "3510",
		AnnotationSidecarListenAddresses, "0.0.0.0",
		AnnotationMaxBodySize, "16Mi",
		AnnotationReadBufferSize, "32Ki",
		AnnotationGracefulShutdownSeconds, "15",
		AnnotationBlockShutdownDuration, "1m",
		AnnotationEnableAppHealthCheck, "true",
		AnnotationAppHealthCheckPath, "/ready",
		AnnotationAppHealthProbeInterval, "7",
		AnnotationAppHealthProbeTimeout, "300",
		AnnotationAppHealthThreshold, "4",
		AnnotationDisableBuiltinK8sSecretStore, "true",
		AnnotationEnableProfiling, "true",
		AnnotationAppMaxConcurrency, "8",
		AnnotationPlacementAddress, "placement:50005",
		AnnotationSidecarSeccompProfileType, "Unconfined",
		AnnotationSidecarCPURequest, "100m",
		AnnotationSidecarCPULimit, "500m",
		AnnotationSidecarMemoryRequest, "64Mi",
		AnnotationSidecarMemoryLimit, "256Mi",
		AnnotationLivenessProbeDelaySeconds, "11",
		AnnotationLivenessProbeTimeoutSeconds, "12",
		AnnotationLivenessProbePeriodSeconds, "13",
		AnnotationLivenessProbeThreshold, "14",
		AnnotationReadinessProbeDelaySeconds, "21",
		AnnotationReadinessProbeTimeoutSeconds, "22",
		AnnotationReadinessProbePeriodSeconds, "23",
		AnnotationReadinessProbeThreshold, "24",
		AnnotationAPITokenSecret, "api-token",
		AnnotationAppTokenSecret, "app-token",
		AnnotationEnv, "GOMAXPROCS=2,LIST=a,b",
		AnnotationEnvFromSecret, "REDIS_PASSWORD=redis:password,SINGLE=single",
		AnnotationSidecarImage, "example.com/outrigger:pinned",
	)
	_, mutated := inject(t, pod, PatchOptions{ImagePullPolicy: corev1.PullIfNotPresent, RunAsUser: new(int64(65532))})
	c := daprd(t, mutated)

	for flag, want := range map[string]string{
		"--app-protocol":                   "grpc",
		"--app-channel-address":            "10.1.2.3",
		"--config":                         "tracing",
		"--log-level":                      "debug",
		"--enable-metrics":                 "false",
		"--metrics-port":                   "9999",
		"--dapr-grpc-port":                 "50011",
		"--dapr-internal-grpc-port":        "50012",
		"--dapr-http-port":                 "3510",
		"--dapr-listen-addresses":          "0.0.0.0",
		"--max-body-size":                  "16Mi",
		"--read-buffer-size":               "32Ki",
		"--dapr-graceful-shutdown-seconds": "15",
		"--dapr-block-shutdown-duration":   "1m0s",
		"--app-health-check-path":          "/ready",
		"--app-health-probe-interval":      "7",
		"--app-health-probe-timeout":       "300",
		"--app-health-threshold":           "4",
		"--app-max-concurrency":            "8",
		"--placement-host-address":         "placement:50005",
	} {
		if got, _ := flagValue(c.Args, flag); got != want {
			t.Errorf("%s is %q, want %q", flag, got, want)
		}
	}
	for _, flag := range []string{"--log-as-json", "--enable-app-health-check", "--disable-builtin-k8s-secret-store", "--enable-profiling"} {
		if !slices.Contains(c.Args, flag) {
			t.Errorf("args lack %s: %q", flag, c.Args)
		}
	}
	if c.Image != "example.com/outrigger:pinned" || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %q, pull policy %q", c.Image, c.ImagePullPolicy)
	}
	if c.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined || *c.SecurityContext.RunAsUser != 65532 {
		t.Errorf("securityContext %+v", c.SecurityContext)
	}
	wantResources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	if !equality.Semantic.DeepEqual(c.Resources, wantResources) {
		t.Errorf("resources %+v", c.Resources)
	}
	if p := c.LivenessProbe; p.InitialDelaySeconds != 11 || p.TimeoutSeconds != 12 || p.PeriodSeconds != 13 || p.FailureThreshold != 14 {
		t.Errorf("liveness %+v", p)
	}
	if p := c.ReadinessProbe; p.InitialDelaySeconds != 21 || p.TimeoutSeconds != 22 || p.PeriodSeconds != 23 || p.FailureThreshold != 24 {
		t.Errorf("readiness %+v", p)
	}
	if c.ReadinessProbe.HTTPGet.Port.IntValue() != 3501 {
		t.Errorf("probes target port %v, want the public port 3501", c.ReadinessProbe.HTTPGet.Port)
	}
	secretEnv := func(name, key string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}
	}
	for _, want := range []corev1.EnvVar{
		{Name: "GOMAXPROCS", Value: "2"},
		{Name: "LIST", Value: "a,b"},
		{Name: "REDIS_PASSWORD", ValueFrom: secretEnv("redis", "password")},
		{Name: "SINGLE", ValueFrom: secretEnv("single", "single")},
		{Name: "DAPR_API_TOKEN", ValueFrom: secretEnv("api-token", "token")},
		{Name: "APP_API_TOKEN", ValueFrom: secretEnv("app-token", "token")},
	} {
		if got, ok := envValue(c.Env, want.Name); !ok || !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("daprd env %s is %+v, want %+v", want.Name, got, want)
		}
	}
	app := mutated.Spec.Containers[0]
	for name, want := range map[string]string{"DAPR_HTTP_PORT": "3510", "DAPR_GRPC_PORT": "50011", "APP_PROTOCOL": "grpc"} {
		if got, _ := envValue(app.Env, name); got.Value != want {
			t.Errorf("app env %s is %q, want %q", name, got.Value, want)
		}
	}
	if mutated.Labels[LabelMetricsEnabled] != "false" {
		t.Errorf("metrics label %q, want false", mutated.Labels[LabelMetricsEnabled])
	}
}

func TestBuildPatchNativeSidecar(t *testing.T) {
	initC := corev1.Container{Name: "migrate", Image: "migrate:1"}
	tests := []struct {
		name string
		init []corev1.Container
	}{
		{"no init containers", nil},
		{"before existing init containers", []corev1.Container{initC}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := withAnnotations(nodeappPod(), AnnotationEnableNativeSidecar, "true")
			pod.Spec.InitContainers = tt.init
			_, mutated := inject(t, pod, PatchOptions{})
			if findContainer(mutated.Spec.Containers, SidecarContainerName) != nil {
				t.Error("daprd is in containers too")
			}
			if len(mutated.Spec.InitContainers) != len(tt.init)+1 || mutated.Spec.InitContainers[0].Name != SidecarContainerName {
				t.Fatalf("initContainers %v, want daprd first", mutated.Spec.InitContainers)
			}
			if rp := mutated.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
				t.Errorf("restartPolicy %v, want Always", rp)
			}
			if len(tt.init) > 0 && mutated.Spec.InitContainers[1].Name != "migrate" {
				t.Errorf("the app's init container moved: %v", mutated.Spec.InitContainers)
			}
			if _, ok := envValue(mutated.Spec.Containers[0].Env, EnvDaprHTTPPort); !ok {
				t.Error("the app container lacks DAPR_HTTP_PORT")
			}
			for _, ic := range mutated.Spec.InitContainers[1:] {
				if len(ic.Env) != 0 {
					t.Errorf("init container %s got env %v", ic.Name, ic.Env)
				}
			}
		})
	}
}

func TestBuildPatchAppEnv(t *testing.T) {
	pod := nodeappPod()
	pod.Spec.Containers = []corev1.Container{
		{Name: "no-env", Image: "a"},
		{Name: "user-port", Image: "b", Env: []corev1.EnvVar{{Name: "DAPR_HTTP_PORT", Value: "4000"}, {Name: "OTHER", Value: "x"}}},
		{Name: "all-set", Image: "c", Env: []corev1.EnvVar{
			{Name: "DAPR_HTTP_PORT", Value: "1"}, {Name: "DAPR_GRPC_PORT", Value: "2"}, {Name: "APP_PROTOCOL", Value: "h2c"},
		}},
	}
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "d"}}
	ops, mutated := inject(t, pod, PatchOptions{})

	var envPaths []string
	for _, op := range ops {
		if strings.Contains(op.Path, "/env") {
			envPaths = append(envPaths, op.Path)
		}
	}
	wantPaths := []string{"/spec/containers/0/env", "/spec/containers/1/env/-", "/spec/containers/1/env/-"}
	if !slices.Equal(envPaths, wantPaths) {
		t.Errorf("env ops at %q, want %q", envPaths, wantPaths)
	}

	want := map[string][]corev1.EnvVar{
		"no-env": {{Name: "DAPR_HTTP_PORT", Value: "3500"}, {Name: "DAPR_GRPC_PORT", Value: "50001"}, {Name: "APP_PROTOCOL", Value: "http"}},
		"user-port": {
			{Name: "DAPR_HTTP_PORT", Value: "4000"}, {Name: "OTHER", Value: "x"},
			{Name: "DAPR_GRPC_PORT", Value: "50001"}, {Name: "APP_PROTOCOL", Value: "http"},
		},
		"all-set": {{Name: "DAPR_HTTP_PORT", Value: "1"}, {Name: "DAPR_GRPC_PORT", Value: "2"}, {Name: "APP_PROTOCOL", Value: "h2c"}},
	}
	for name, env := range want {
		c := findContainer(mutated.Spec.Containers, name)
		if !equality.Semantic.DeepEqual(c.Env, env) {
			t.Errorf("%s env\n got %+v\nwant %+v", name, c.Env, env)
		}
	}
	if len(mutated.Spec.InitContainers[0].Env) != 0 {
		t.Errorf("init container got env %v", mutated.Spec.InitContainers[0].Env)
	}
}

func TestBuildPatchLabels(t *testing.T) {
	tests := []struct {
		name      string
		labels    map[string]string
		wantPaths []string
	}{
		{"pod without labels gets the whole object", nil, []string{"/metadata/labels"}},
		{"pod with labels gets escaped keys", map[string]string{"app": "node"}, []string{
			"/metadata/labels/dapr.io~1sidecar-injected",
			"/metadata/labels/dapr.io~1app-id",
			"/metadata/labels/dapr.io~1metrics-enabled",
		}},
		{"stale labels are replaced", map[string]string{"dapr.io/app-id": "old"}, []string{
			"/metadata/labels/dapr.io~1sidecar-injected",
			"/metadata/labels/dapr.io~1app-id",
			"/metadata/labels/dapr.io~1metrics-enabled",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := nodeappPod()
			pod.Labels = tt.labels
			ops, mutated := inject(t, pod, PatchOptions{})
			var paths []string
			for _, op := range ops {
				if strings.HasPrefix(op.Path, "/metadata/labels") {
					paths = append(paths, op.Path)
				}
			}
			if !slices.Equal(paths, tt.wantPaths) {
				t.Errorf("label ops at %q, want %q", paths, tt.wantPaths)
			}
			for k, v := range map[string]string{"dapr.io/sidecar-injected": "true", "dapr.io/app-id": "nodeapp", "dapr.io/metrics-enabled": "true"} {
				if mutated.Labels[k] != v {
					t.Errorf("label %s is %q, want %q", k, mutated.Labels[k], v)
				}
			}
		})
	}
}

func TestEscapePointer(t *testing.T) {
	for in, want := range map[string]string{
		"app":            "app",
		"dapr.io/app-id": "dapr.io~1app-id",
		"a~b/c":          "a~0b~1c",
		"~1":             "~01",
	} {
		if got := escapePointer(in); got != want {
			t.Errorf("escapePointer(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuildPatchUnixDomainSocket(t *testing.T) {
	tests := []struct {
		name    string
		volumes []corev1.Volume
		mounts  []corev1.VolumeMount
	}{
		{"pod without volumes", nil, nil},
		{"pod with volumes and mounts", []corev1.Volume{{Name: "data"}}, []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := withAnnotations(nodeappPod(), AnnotationUnixDomainSocketPath, "/tmp/dapr-sockets")
			pod.Spec.Volumes = tt.volumes
			pod.Spec.Containers[0].VolumeMounts = tt.mounts
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "second", Image: "x"})
			_, mutated := inject(t, pod, PatchOptions{})

			var vol *corev1.Volume
			for i := range mutated.Spec.Volumes {
				if mutated.Spec.Volumes[i].Name == UnixDomainSocketVolumeName {
					vol = &mutated.Spec.Volumes[i]
				}
			}
			if vol == nil || vol.EmptyDir == nil || vol.EmptyDir.Medium != corev1.StorageMediumMemory {
				t.Fatalf("volumes %+v, want an in-memory emptyDir %s", mutated.Spec.Volumes, UnixDomainSocketVolumeName)
			}
			if len(mutated.Spec.Volumes) != len(tt.volumes)+1 {
				t.Errorf("volumes %+v", mutated.Spec.Volumes)
			}
			c := daprd(t, mutated)
			wantMount := corev1.VolumeMount{Name: UnixDomainSocketVolumeName, MountPath: "/var/run/dapr-sockets"}
			if !hasVolumeMount(c.VolumeMounts, wantMount) {
				t.Errorf("daprd mounts %+v", c.VolumeMounts)
			}
			if got, _ := flagValue(c.Args, "--unix-domain-socket"); got != "/var/run/dapr-sockets" {
				t.Errorf("--unix-domain-socket is %q", got)
			}
			appMount := corev1.VolumeMount{Name: UnixDomainSocketVolumeName, MountPath: "/tmp/dapr-sockets"}
			for _, app := range mutated.Spec.Containers {
				if app.Name == SidecarContainerName {
					continue
				}
				if !hasVolumeMount(app.VolumeMounts, appMount) {
					t.Errorf("container %s mounts %+v, want %+v", app.Name, app.VolumeMounts, appMount)
				}
				if len(app.VolumeMounts) != len(tt.mounts)+1 && app.Name == "node" {
					t.Errorf("container %s lost mounts: %+v", app.Name, app.VolumeMounts)
				}
			}
		})
	}
}

func TestBuildPatchVolumeMounts(t *testing.T) {
	pod := withAnnotations(nodeappPod(),
		AnnotationVolumeMounts, "certs:/etc/certs",
		AnnotationVolumeMountsRW, "scratch:/scratch",
	)
	pod.Spec.Volumes = []corev1.Volume{{Name: "certs"}, {Name: "scratch"}}
	_, mutated := inject(t, pod, PatchOptions{})
	want := []corev1.VolumeMount{
		{Name: "certs", MountPath: "/etc/certs", ReadOnly: true},
		{Name: "scratch", MountPath: "/scratch"},
	}
	if c := daprd(t, mutated); !equality.Semantic.DeepEqual(c.VolumeMounts, want) {
		t.Errorf("daprd mounts %+v, want %+v", c.VolumeMounts, want)
	}
}

func TestBuildPatchMissingVolumes(t *testing.T) {
	pod := withAnnotations(nodeappPod(),
		AnnotationVolumeMounts, "certs:/etc/certs,present:/p",
		AnnotationVolumeMountsRW, "scratch:/scratch",
	)
	pod.Spec.Volumes = []corev1.Volume{{Name: "present"}}
	cfg, err := ParseAnnotations("mypod", pod.Annotations, testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	_, err = BuildPatch(pod, cfg, PatchOptions{})
	if err == nil {
		t.Fatal("BuildPatch accepted volumes the pod does not define")
	}
	for _, want := range []string{
		`annotation dapr.io/volume-mounts: "certs:/etc/certs" names volume "certs", which the pod does not define`,
		`annotation dapr.io/volume-mounts-rw: "scratch:/scratch" names volume "scratch", which the pod does not define`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestBuildPatchIdempotent(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
	}{
		{"nodeapp", nodeappPod()},
		{"pythonapp", pythonappPod()},
		{"native sidecar", withAnnotations(nodeappPod(), AnnotationEnableNativeSidecar, "true")},
		{"unix socket and mounts", func() *corev1.Pod {
			p := withAnnotations(nodeappPod(), AnnotationUnixDomainSocketPath, "/sock", AnnotationVolumeMounts, "v:/v")
			p.Spec.Volumes = []corev1.Volume{{Name: "v"}}
			return p
		}()},
		{"no labels", func() *corev1.Pod { p := nodeappPod(); p.Labels = nil; return p }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, mutated := inject(t, tt.pod, PatchOptions{})
			if len(ops) == 0 {
				t.Fatal("first injection produced no operations")
			}
			again, twice := inject(t, mutated, PatchOptions{})
			if len(again) != 0 {
				t.Errorf("reinvocation produced %d operations: %+v", len(again), again)
			}
			if !equality.Semantic.DeepEqual(mutated, twice) {
				t.Error("reinvocation changed the pod")
			}
		})
	}
}

func TestBuildPatchLeavesHandInjectedPods(t *testing.T) {
	for _, where := range []string{"containers", "initContainers"} {
		t.Run(where, func(t *testing.T) {
			pod := nodeappPod()
			own := corev1.Container{Name: "daprd", Image: "daprio/daprd:1.14.0"}
			if where == "containers" {
				pod.Spec.Containers = append(pod.Spec.Containers, own)
			} else {
				pod.Spec.InitContainers = append(pod.Spec.InitContainers, own)
			}
			cfg, err := ParseAnnotations("mypod", pod.Annotations, testDefaults)
			if err != nil {
				t.Fatal(err)
			}
			ops, err := BuildPatch(pod, cfg, PatchOptions{})
			if err != nil || len(ops) != 0 {
				t.Errorf("got %d operations and error %v, want none", len(ops), err)
			}
		})
	}
}

// TestBuildPatchSerialises pins the wire form: paths and ops are what the
// admission response carries.
func TestBuildPatchSerialises(t *testing.T) {
	pod := pythonappPod()
	cfg, err := ParseAnnotations("mypod", pod.Annotations, testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := BuildPatch(pod, cfg, PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, op := range ops {
		got = append(got, op.Operation+" "+op.Path)
	}
	want := []string{
		"add /metadata/labels/dapr.io~1sidecar-injected",
		"add /metadata/labels/dapr.io~1app-id",
		"add /metadata/labels/dapr.io~1metrics-enabled",
		"add /spec/containers/-",
		"add /spec/containers/0/env",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ops\n got %q\nwant %q", got, want)
	}
	if _, err := json.Marshal(ops); err != nil {
		t.Errorf("marshal: %v", err)
	}
}

// With the operator's certificate authority on, the sidecar gets the flags, the trust
// anchors and a pod-bound token for the authority, and the pod records its app id.
func TestBuildPatchMTLS(t *testing.T) {
	mtls := &MTLS{SentryAddress: "dapr-sentry.outrigger-system.svc:443", TrustAnchors: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
		ControlPlaneNamespace: "outrigger-system"}
	for _, tt := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"app id annotated", nodeappPod()},
		{"app id defaulted from the pod", func() *corev1.Pod {
			p := nodeappPod()
			delete(p.Annotations, AnnotationAppID)
			p.Spec.Volumes = []corev1.Volume{{Name: "data"}}
			return p
		}()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseAnnotations("mypod", tt.pod.Annotations, testDefaults)
			if err != nil {
				t.Fatal(err)
			}
			cfg.MTLS = mtls
			ops, err := BuildPatch(tt.pod, cfg, PatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			mutated := applyPatch(t, tt.pod, ops)
			c := daprd(t, mutated)
			if !slices.Contains(c.Args, "--enable-mtls") {
				t.Errorf("args %v lack --enable-mtls", c.Args)
			}
			if got, _ := flagValue(c.Args, "--sentry-address"); got != mtls.SentryAddress {
				t.Errorf("--sentry-address %q", got)
			}
			if e, ok := envValue(c.Env, EnvTrustAnchors); !ok || e.Value != mtls.TrustAnchors {
				t.Errorf("%s is %+v", EnvTrustAnchors, e)
			}
			if e, ok := envValue(c.Env, EnvControlPlaneNamespace); !ok || e.Value != "outrigger-system" {
				t.Errorf("%s is %+v", EnvControlPlaneNamespace, e)
			}
			if !hasVolumeMount(c.VolumeMounts, corev1.VolumeMount{Name: SentryTokenVolumeName, MountPath: SentryTokenMountPath, ReadOnly: true}) {
				t.Errorf("daprd mounts %+v", c.VolumeMounts)
			}
			var token *corev1.ServiceAccountTokenProjection
			for _, v := range mutated.Spec.Volumes {
				if v.Name == SentryTokenVolumeName && v.Projected != nil && len(v.Projected.Sources) == 1 {
					token = v.Projected.Sources[0].ServiceAccountToken
				}
			}
			if token == nil || token.Audience != SentryTokenAudience || token.Path != "token" || token.ExpirationSeconds == nil {
				t.Fatalf("volumes %+v: no projected token for %s", mutated.Spec.Volumes, SentryTokenAudience)
			}
			if len(mutated.Spec.Volumes) != len(tt.pod.Spec.Volumes)+1 {
				t.Errorf("volumes %+v", mutated.Spec.Volumes)
			}
			if got := mutated.Annotations[AnnotationAppID]; got != cfg.AppID {
				t.Errorf("annotation %s = %q, want %q", AnnotationAppID, got, cfg.AppID)
			}
			// Applying the same patch twice is harmless; a second injection is a no-op.
			if again, err := BuildPatch(mutated, cfg, PatchOptions{}); err != nil || len(again) != 0 {
				t.Errorf("second injection: %v %v", again, err)
			}
		})
	}
	// Off: nothing of it.
	_, mutated := inject(t, nodeappPod(), PatchOptions{})
	c := daprd(t, mutated)
	if slices.Contains(c.Args, "--enable-mtls") || len(mutated.Spec.Volumes) != 0 {
		t.Errorf("without mTLS: args %v, volumes %+v", c.Args, mutated.Spec.Volumes)
	}
	if _, ok := envValue(c.Env, EnvTrustAnchors); ok {
		t.Errorf("without mTLS the sidecar got %s", EnvTrustAnchors)
	}
}
