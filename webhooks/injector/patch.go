package injector

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names in the injected pod that apps, SDKs, dashboards and `kubectl logs -c daprd`
// rely on; they are Dapr's.
const (
	SidecarContainerName = "daprd"

	PortNameHTTP     = "dapr-http"
	PortNameGRPC     = "dapr-grpc"
	PortNameInternal = "dapr-internal"
	PortNameMetrics  = "dapr-metrics"
	// PortNamePublic is Outrigger's: Dapr probes port 3501 by number without
	// declaring it, and Outrigger declares every port it listens on.
	PortNamePublic = "dapr-public"

	HealthzPath = "/v1.0/healthz"

	LabelSidecarInjected = "dapr.io/sidecar-injected"
	LabelAppID           = "dapr.io/app-id"
	LabelMetricsEnabled  = "dapr.io/metrics-enabled"

	UnixDomainSocketVolumeName = "dapr-unix-domain-socket"
	// UnixDomainSocketDaprdPath is fixed inside daprd; the annotation only chooses
	// where the same directory appears in the app containers.
	UnixDomainSocketDaprdPath = "/var/run/dapr-sockets"

	EnvDaprHTTPPort = "DAPR_HTTP_PORT"
	EnvDaprGRPCPort = "DAPR_GRPC_PORT"
	EnvAppProtocol  = "APP_PROTOCOL"
	EnvNamespace    = "NAMESPACE"
	EnvPodName      = "POD_NAME"
	EnvHostIP       = "DAPR_HOST_IP"
	EnvAPIToken     = "DAPR_API_TOKEN" //nolint:gosec // a variable's name
	EnvAppAPIToken  = "APP_API_TOKEN"  //nolint:gosec // a variable's name

	// TokenSecretKey is the key read from the api-token and app-token Secrets.
	TokenSecretKey = "token"

	// With mTLS, the sidecar proves its pod to the certificate authority with a
	// service-account token bound to the pod, projected where daprd reads it.
	EnvTrustAnchors          = "DAPR_TRUST_ANCHORS"
	EnvControlPlaneNamespace = "DAPR_CONTROLPLANE_NAMESPACE"
	SentryTokenVolumeName    = "dapr-identity-token"
	SentryTokenMountPath     = "/var/run/secrets/dapr.io/sentrytoken"
	SentryTokenAudience      = "dapr.io/sentry"
	SentryTokenExpiration    = int64(7200)
)

// PatchOptions are the operator's settings that shape the container but that no
// annotation overrides.
type PatchOptions struct {
	// ImagePullPolicy of the sidecar; empty leaves the cluster's default.
	ImagePullPolicy corev1.PullPolicy
	// RunAsUser and RunAsGroup pin the sidecar's IDs when the image's USER is not
	// numeric, which runAsNonRoot otherwise refuses; nil leaves the image's.
	RunAsUser  *int64
	RunAsGroup *int64
}

// HasSidecar reports whether the pod already has a daprd container, in which case
// it was injected already or the user manages the sidecar by hand.
func HasSidecar(pod *corev1.Pod) bool {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == SidecarContainerName {
			return true
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == SidecarContainerName {
			return true
		}
	}
	return false
}

// BuildPatch returns the RFC 6902 operations that inject the sidecar described by
// cfg into pod. A pod that already has a daprd container gets no operations, which
// makes a reinvocation of the webhook harmless.
func BuildPatch(pod *corev1.Pod, cfg *SidecarConfig, opts PatchOptions) ([]jsonpatch.JsonPatchOperation, error) {
	if HasSidecar(pod) {
		return nil, nil
	}
	if err := checkVolumes(pod, cfg.VolumeMounts); err != nil {
		return nil, err
	}

	ops := make([]jsonpatch.JsonPatchOperation, 0, 8+2*len(pod.Spec.Containers))
	ops = appendLabelOps(ops, pod, cfg)

	socket := cfg.UnixDomainSocketPath != ""
	if socket && !hasVolume(pod, UnixDomainSocketVolumeName) {
		vol := corev1.Volume{
			Name: UnixDomainSocketVolumeName,
			VolumeSource: corev1.VolumeSource{
				EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory},
			},
		}
		ops = appendToList(ops, "/spec/volumes", len(pod.Spec.Volumes), vol)
	}

	if cfg.MTLS != nil {
		ops = appendMTLSOps(ops, pod, cfg)
	}

	sidecar := sidecarContainer(cfg, opts)
	switch {
	case !cfg.EnableNativeSidecar:
		ops = appendToList(ops, "/spec/containers", len(pod.Spec.Containers), sidecar)
	case len(pod.Spec.InitContainers) == 0:
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/initContainers", []corev1.Container{sidecar}))
	default:
		// First, so that the app's own init containers can already call the
		// sidecar: Kubernetes starts init containers in order.
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/initContainers/0", sidecar))
	}

	appEnv := []corev1.EnvVar{
		{Name: EnvDaprHTTPPort, Value: strconv.Itoa(int(cfg.HTTPPort))},
		{Name: EnvDaprGRPCPort, Value: strconv.Itoa(int(cfg.GRPCPort))},
		{Name: EnvAppProtocol, Value: string(cfg.AppProtocol)},
	}
	socketMount := corev1.VolumeMount{Name: UnixDomainSocketVolumeName, MountPath: cfg.UnixDomainSocketPath}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		base := "/spec/containers/" + strconv.Itoa(i)
		ops = appendMissingEnv(ops, base+"/env", c.Env, appEnv)
		if socket && !hasMount(c, UnixDomainSocketVolumeName) {
			ops = appendToList(ops, base+"/volumeMounts", len(c.VolumeMounts), socketMount)
		}
	}
	return ops, nil
}

// checkVolumes needs the pod, which ParseAnnotations does not see.
func checkVolumes(pod *corev1.Pod, mounts []corev1.VolumeMount) error {
	var errs []error
	for _, m := range mounts {
		if hasVolume(pod, m.Name) {
			continue
		}
		key := AnnotationVolumeMountsRW
		if m.ReadOnly {
			key = AnnotationVolumeMounts
		}
		errs = append(errs, &AnnotationError{
			Key:    key,
			Value:  m.Name + ":" + m.MountPath,
			Reason: fmt.Sprintf("names volume %q, which the pod does not define", m.Name),
		})
	}
	return errors.Join(errs...)
}

func hasVolume(pod *corev1.Pod, name string) bool {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return true
		}
	}
	return false
}

func hasMount(c *corev1.Container, volume string) bool {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volume {
			return true
		}
	}
	return false
}

// appendToList adds one element to a JSON array that may not exist yet: RFC 6902
// cannot append to a missing array, and Kubernetes omits empty ones.
func appendToList(ops []jsonpatch.JsonPatchOperation, path string, length int, v any) []jsonpatch.JsonPatchOperation {
	if length == 0 {
		return append(ops, jsonpatch.NewOperation("add", path, []any{v}))
	}
	return append(ops, jsonpatch.NewOperation("add", path+"/-", v))
}

// appendMissingEnv never overrides a variable the user set, as Dapr does not.
func appendMissingEnv(ops []jsonpatch.JsonPatchOperation, path string, have, want []corev1.EnvVar) []jsonpatch.JsonPatchOperation {
	missing := make([]corev1.EnvVar, 0, len(want))
	for _, w := range want {
		if !hasEnv(have, w.Name) {
			missing = append(missing, w)
		}
	}
	switch {
	case len(missing) == 0:
		return ops
	case len(have) == 0:
		return append(ops, jsonpatch.NewOperation("add", path, missing))
	}
	for _, e := range missing {
		ops = append(ops, jsonpatch.NewOperation("add", path+"/-", e))
	}
	return ops
}

func hasEnv(env []corev1.EnvVar, name string) bool {
	for i := range env {
		if env[i].Name == name {
			return true
		}
	}
	return false
}

// appendMTLSOps adds the projected token the sidecar shows the certificate authority,
// and records the app id in the pod's annotations, where the authority checks it
// (the app id may otherwise be a default the injector derived from the pod's name).
func appendMTLSOps(ops []jsonpatch.JsonPatchOperation, pod *corev1.Pod, cfg *SidecarConfig) []jsonpatch.JsonPatchOperation {
	if pod.Annotations[AnnotationAppID] != cfg.AppID {
		if len(pod.Annotations) == 0 {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations", map[string]string{AnnotationAppID: cfg.AppID}))
		} else {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations/"+escapePointer(AnnotationAppID), cfg.AppID))
		}
	}
	if hasVolume(pod, SentryTokenVolumeName) {
		return ops
	}
	expiration := SentryTokenExpiration
	vol := corev1.Volume{
		Name: SentryTokenVolumeName,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience:          SentryTokenAudience,
				ExpirationSeconds: &expiration,
				Path:              "token",
			}}},
		}},
	}
	return appendToList(ops, "/spec/volumes", len(pod.Spec.Volumes), vol)
}

func appendLabelOps(ops []jsonpatch.JsonPatchOperation, pod *corev1.Pod, cfg *SidecarConfig) []jsonpatch.JsonPatchOperation {
	metrics := strconv.FormatBool(cfg.EnableMetrics)
	if len(pod.Labels) == 0 {
		return append(ops, jsonpatch.NewOperation("add", "/metadata/labels", map[string]string{
			LabelSidecarInjected: "true",
			LabelAppID:           cfg.AppID,
			LabelMetricsEnabled:  metrics,
		}))
	}
	// "add" on an existing member replaces it, so a stale label cannot survive.
	return append(ops,
		jsonpatch.NewOperation("add", "/metadata/labels/"+escapePointer(LabelSidecarInjected), "true"),
		jsonpatch.NewOperation("add", "/metadata/labels/"+escapePointer(LabelAppID), cfg.AppID),
		jsonpatch.NewOperation("add", "/metadata/labels/"+escapePointer(LabelMetricsEnabled), metrics),
	)
}

// escapePointer escapes a JSON Pointer token (RFC 6901): "~" first, then "/".
func escapePointer(token string) string {
	if !strings.ContainsAny(token, "~/") {
		return token
	}
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

func sidecarContainer(cfg *SidecarConfig, opts PatchOptions) corev1.Container {
	healthz := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: HealthzPath,
		Port: intstr.FromInt32(cfg.PublicPort),
	}}
	c := corev1.Container{
		Name:            SidecarContainerName,
		Image:           cfg.Image,
		ImagePullPolicy: opts.ImagePullPolicy,
		// Command stays unset: the image's entrypoint is the outrigger binary.
		Args: sidecarArgs(cfg),
		Ports: []corev1.ContainerPort{
			{Name: PortNameHTTP, ContainerPort: cfg.HTTPPort, Protocol: corev1.ProtocolTCP},
			{Name: PortNameGRPC, ContainerPort: cfg.GRPCPort, Protocol: corev1.ProtocolTCP},
			{Name: PortNameInternal, ContainerPort: cfg.InternalGRPCPort, Protocol: corev1.ProtocolTCP},
			{Name: PortNameMetrics, ContainerPort: cfg.MetricsPort, Protocol: corev1.ProtocolTCP},
			{Name: PortNamePublic, ContainerPort: cfg.PublicPort, Protocol: corev1.ProtocolTCP},
		},
		Env:          sidecarEnv(cfg),
		Resources:    sidecarResources(cfg),
		VolumeMounts: sidecarMounts(cfg),
		LivenessProbe: &corev1.Probe{
			ProbeHandler:        healthz,
			InitialDelaySeconds: cfg.LivenessProbe.InitialDelaySeconds,
			TimeoutSeconds:      cfg.LivenessProbe.TimeoutSeconds,
			PeriodSeconds:       cfg.LivenessProbe.PeriodSeconds,
			FailureThreshold:    cfg.LivenessProbe.FailureThreshold,
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:        healthz,
			InitialDelaySeconds: cfg.ReadinessProbe.InitialDelaySeconds,
			TimeoutSeconds:      cfg.ReadinessProbe.TimeoutSeconds,
			PeriodSeconds:       cfg.ReadinessProbe.PeriodSeconds,
			FailureThreshold:    cfg.ReadinessProbe.FailureThreshold,
		},
		// Restricted, so that injection never makes a pod fail its namespace's
		// Pod Security admission.
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             new(true),
			RunAsUser:                opts.RunAsUser,
			RunAsGroup:               opts.RunAsGroup,
			AllowPrivilegeEscalation: new(false),
			ReadOnlyRootFilesystem:   new(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: cfg.SeccompProfileType},
		},
	}
	if cfg.EnableNativeSidecar {
		c.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

// sidecarArgs mirrors daprd's flags so that `outrigger sidecar` reads what Dapr's
// injector would have given daprd.
func sidecarArgs(cfg *SidecarConfig) []string {
	itoa := func(n int32) string { return strconv.Itoa(int(n)) }
	args := make([]string, 0, 48)
	args = append(args,
		"sidecar",
		"--mode", "kubernetes",
		"--app-id", cfg.AppID,
		"--app-protocol", string(cfg.AppProtocol),
		"--dapr-http-port", itoa(cfg.HTTPPort),
		"--dapr-grpc-port", itoa(cfg.GRPCPort),
		"--dapr-internal-grpc-port", itoa(cfg.InternalGRPCPort),
		"--dapr-public-port", itoa(cfg.PublicPort),
		"--dapr-listen-addresses", cfg.ListenAddresses,
		"--log-level", string(cfg.LogLevel),
		"--max-body-size", cfg.MaxBodySize.String(),
		"--read-buffer-size", cfg.ReadBufferSize.String(),
		"--dapr-graceful-shutdown-seconds", itoa(cfg.GracefulShutdownSeconds),
	)
	// daprd's --enable-metrics defaults to true, so Dapr's injector, which only
	// ever adds the bare flag, cannot turn metrics off; the explicit false can.
	if cfg.EnableMetrics {
		args = append(args, "--enable-metrics")
	} else {
		args = append(args, "--enable-metrics=false")
	}
	args = append(args, "--metrics-port", itoa(cfg.MetricsPort))
	if cfg.AppPort != 0 {
		args = append(args, "--app-port", itoa(cfg.AppPort))
	}
	if cfg.AppChannelAddress != "" {
		args = append(args, "--app-channel-address", cfg.AppChannelAddress)
	}
	if cfg.Config != "" {
		args = append(args, "--config", cfg.Config)
	}
	if cfg.LogAsJSON {
		args = append(args, "--log-as-json")
	}
	// Passed even when false, because without it the Configuration's setting
	// applies.
	if cfg.EnableAPILogging != nil {
		args = append(args, "--enable-api-logging="+strconv.FormatBool(*cfg.EnableAPILogging))
	}
	if cfg.BlockShutdownDuration != nil {
		args = append(args, "--dapr-block-shutdown-duration", cfg.BlockShutdownDuration.String())
	}
	if cfg.AppHealth.Enabled {
		args = append(args,
			"--enable-app-health-check",
			"--app-health-check-path", cfg.AppHealth.Path,
			"--app-health-probe-interval", strconv.FormatInt(int64(cfg.AppHealth.Interval.Seconds()), 10),
			"--app-health-probe-timeout", strconv.FormatInt(cfg.AppHealth.Timeout.Milliseconds(), 10),
			"--app-health-threshold", itoa(cfg.AppHealth.Threshold),
		)
	}
	if cfg.UnixDomainSocketPath != "" {
		args = append(args, "--unix-domain-socket", UnixDomainSocketDaprdPath)
	}
	if cfg.DisableBuiltinK8sSecretStore {
		args = append(args, "--disable-builtin-k8s-secret-store")
	}
	if cfg.EnableProfiling {
		args = append(args, "--enable-profiling")
	}
	if cfg.AppMaxConcurrency != nil {
		args = append(args, "--app-max-concurrency", itoa(*cfg.AppMaxConcurrency))
	}
	if cfg.PlacementAddress != "" {
		args = append(args, "--placement-host-address", cfg.PlacementAddress)
	}
	if cfg.MTLS != nil {
		args = append(args, "--enable-mtls", "--sentry-address", cfg.MTLS.SentryAddress)
	}
	return args
}

func sidecarEnv(cfg *SidecarConfig) []corev1.EnvVar {
	env := make([]corev1.EnvVar, 0, 5+len(cfg.Env)+len(cfg.EnvFromSecret))
	env = append(env,
		corev1.EnvVar{Name: EnvNamespace, ValueFrom: fieldRef("metadata.namespace")},
		corev1.EnvVar{Name: EnvPodName, ValueFrom: fieldRef("metadata.name")},
		corev1.EnvVar{Name: EnvHostIP, ValueFrom: fieldRef("status.podIP")},
	)
	env = append(env, cfg.Env...)
	for _, s := range cfg.EnvFromSecret {
		env = append(env, corev1.EnvVar{Name: s.Name, ValueFrom: secretRef(s.SecretName, s.SecretKey)})
	}
	if cfg.APITokenSecret != "" {
		env = append(env, corev1.EnvVar{Name: EnvAPIToken, ValueFrom: secretRef(cfg.APITokenSecret, TokenSecretKey)})
	}
	if cfg.AppTokenSecret != "" {
		env = append(env, corev1.EnvVar{Name: EnvAppAPIToken, ValueFrom: secretRef(cfg.AppTokenSecret, TokenSecretKey)})
	}
	if cfg.MTLS != nil {
		env = append(env, corev1.EnvVar{Name: EnvTrustAnchors, Value: cfg.MTLS.TrustAnchors})
		if cfg.MTLS.ControlPlaneNamespace != "" {
			env = append(env, corev1.EnvVar{Name: EnvControlPlaneNamespace, Value: cfg.MTLS.ControlPlaneNamespace})
		}
	}
	return env
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func secretRef(name, key string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: name},
		Key:                  key,
	}}
}

func sidecarResources(cfg *SidecarConfig) corev1.ResourceRequirements {
	var r corev1.ResourceRequirements
	put := func(list *corev1.ResourceList, name corev1.ResourceName, q *resource.Quantity) {
		if q == nil {
			return
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q.DeepCopy()
	}
	put(&r.Requests, corev1.ResourceCPU, cfg.CPURequest)
	put(&r.Requests, corev1.ResourceMemory, cfg.MemoryRequest)
	put(&r.Limits, corev1.ResourceCPU, cfg.CPULimit)
	put(&r.Limits, corev1.ResourceMemory, cfg.MemoryLimit)
	return r
}

func sidecarMounts(cfg *SidecarConfig) []corev1.VolumeMount {
	if len(cfg.VolumeMounts) == 0 && cfg.UnixDomainSocketPath == "" && cfg.MTLS == nil {
		return nil
	}
	mounts := make([]corev1.VolumeMount, 0, len(cfg.VolumeMounts)+2)
	mounts = append(mounts, cfg.VolumeMounts...)
	if cfg.UnixDomainSocketPath != "" {
		mounts = append(mounts, corev1.VolumeMount{Name: UnixDomainSocketVolumeName, MountPath: UnixDomainSocketDaprdPath})
	}
	if cfg.MTLS != nil {
		mounts = append(mounts, corev1.VolumeMount{Name: SentryTokenVolumeName, MountPath: SentryTokenMountPath, ReadOnly: true})
	}
	return mounts
}
