package config_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/internal/localcp"
	"github.com/outrigger-dev/outrigger/internal/manifests"
	"github.com/outrigger-dev/outrigger/internal/scheme"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/webhooks/certs"
)

// The names config/default must produce: the operator's flags default to them.
const (
	namespace          = "outrigger-system"
	deploymentName     = "outrigger-controller-manager"
	serviceAccountName = "outrigger-controller-manager"
	webhookService     = "outrigger-webhook-service"
	metricsService     = "outrigger-controller-manager-metrics-service"
	validatingConfig   = "outrigger-validating-webhook-configuration"
	mutatingConfig     = "outrigger-mutating-webhook-configuration"
	webhookSecret      = "outrigger-webhook-server-cert"
	// Dapr's name, which sidecars dial: kept free of the prefix (sentry.ServiceName).
	sentryService      = "dapr-sentry"
	subscriptionsCRD   = "subscriptions.dapr.io"
	certDir            = "/tmp/k8s-webhook-server/serving-certs"
	imagePlaceholder   = "controller:latest" // `make deploy` replaces it with IMG
	installerImage     = "registry.example/outrigger:v9.9.9"
	injectCAAnnotation = "cert-manager.io/inject-ca-from"
	injectCAFrom       = "outrigger-system/outrigger-serving-cert"
	certManagerSecret  = "webhook-server-cert"

	defaultDir     = "default"
	certManagerDir = "certmanager"
	haDir          = "overlays/ha"
	manifestsDir   = "manifests"
	crdDir         = "crd"
	samplesDir     = "samples"

	commandTimeout = 2 * time.Minute
)

// Every kustomization under config/ that a user or a make target builds.
var allDirs = []string{defaultDir, certManagerDir, haDir, manifestsDir, crdDir, samplesDir, gitopsDir, argoCMDir}

func TestKustomizeDefault(t *testing.T) {
	objs := render(t, defaultDir)
	checkLabels(t, objs)
	checkNamespaced(t, objs)
	if ns := find[corev1.Namespace](t, objs, "Namespace", "", namespace); ns.Labels["control-plane"] != "controller-manager" {
		t.Errorf("Namespace %s labels = %v, want control-plane: controller-manager", namespace, ns.Labels)
	}

	dep := find[appsv1.Deployment](t, objs, "Deployment", namespace, deploymentName)
	c := managerContainer(t, dep)
	checkDeployment(t, dep, c)
	if v := certVolume(t, dep); v.EmptyDir == nil {
		t.Errorf("cert volume = %+v, want an emptyDir for the self-managed CA", v.VolumeSource)
	}
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--cert-provider") }) {
		t.Errorf("args %v set --cert-provider: the default must use the operator's default (self)", c.Args)
	}
	// make deploy replaces the placeholder: the operator's image, and the sidecar's.
	if n := strings.Count(renderRaw(t, defaultDir), imagePlaceholder); n != 2 {
		t.Errorf("%q occurs %d times, want twice (image and --sidecar-image)", imagePlaceholder, n)
	}
	if !slices.Contains(c.Args, "--sidecar-image="+imagePlaceholder) {
		t.Errorf("args %v do not give the sidecar the operator's image", c.Args)
	}

	checkServices(t, objs, dep)
	checkRBAC(t, objs, dep)
	sentrySvc := find[corev1.Service](t, objs, "Service", namespace, sentryService)
	if p := sentrySvc.Spec.Ports; len(p) != 1 || p[0].Port != 443 || p[0].TargetPort.IntValue() != 50001 {
		t.Errorf("Service %s ports = %+v, want 443 -> 50001", sentryService, p)
	}

	vwc := find[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration", "", validatingConfig)
	if len(vwc.Webhooks) == 0 {
		t.Errorf("%s has no webhooks", validatingConfig)
	}
	for _, w := range vwc.Webhooks {
		checkServiceRef(t, "webhook "+w.Name, w.ClientConfig.Service)
	}
	checkNoInjectCA(t, vwc.Annotations, validatingConfig)

	crd := find[apiextensionsv1.CustomResourceDefinition](t, objs, "CustomResourceDefinition", "", subscriptionsCRD)
	checkConversion(t, crd, webhookService, namespace)
	checkNoInjectCA(t, crd.Annotations, subscriptionsCRD)
	if n := len(kinds(objs, "CustomResourceDefinition")); n != 5 {
		t.Errorf("%d CRDs, want 5", n)
	}
}

func TestKustomizeCertManagerOverlay(t *testing.T) {
	objs := render(t, certManagerDir)
	checkLabels(t, objs)
	checkNamespaced(t, objs)

	dep := find[appsv1.Deployment](t, objs, "Deployment", namespace, deploymentName)
	c := managerContainer(t, dep)
	checkDeployment(t, dep, c)
	if !slices.Contains(c.Args, "--cert-provider=cert-manager") {
		t.Errorf("args %v lack --cert-provider=cert-manager", c.Args)
	}
	v := certVolume(t, dep)
	if v.EmptyDir != nil || v.Secret == nil || v.Secret.SecretName != certManagerSecret {
		t.Errorf("cert volume = %+v, want only Secret %s", v.VolumeSource, certManagerSecret)
	}
	checkServices(t, objs, dep)
	checkRBAC(t, objs, dep)
	for _, name := range []string{"outrigger-webhook-ca-role", "outrigger-webhook-cert-secret-role"} {
		if slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetName() == name }) {
			t.Errorf("%s is rendered: with cert-manager the operator writes no certificate", name)
		}
	}

	checkCertificate(t, objs)
	vwc := find[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration", "", validatingConfig)
	checkInjectCA(t, vwc.Annotations, validatingConfig)
	for _, w := range vwc.Webhooks {
		checkServiceRef(t, "webhook "+w.Name, w.ClientConfig.Service)
	}
	crd := find[apiextensionsv1.CustomResourceDefinition](t, objs, "CustomResourceDefinition", "", subscriptionsCRD)
	checkInjectCA(t, crd.Annotations, subscriptionsCRD)
	checkConversion(t, crd, webhookService, namespace)
	for _, o := range kinds(objs, "CustomResourceDefinition") {
		if o.GetName() != subscriptionsCRD {
			checkNoInjectCA(t, o.GetAnnotations(), o.GetName())
		}
	}
}

func TestKustomizeCRD(t *testing.T) {
	objs := render(t, crdDir)
	if len(objs) != 5 || len(kinds(objs, "CustomResourceDefinition")) != 5 {
		t.Fatalf("rendered %d objects, want the 5 CRDs", len(objs))
	}
	for _, name := range []string{"components", "configurations", "httpendpoints", "resiliencies", "subscriptions"} {
		crd := find[apiextensionsv1.CustomResourceDefinition](t, objs, "CustomResourceDefinition", "", name+".dapr.io")
		checkNoInjectCA(t, crd.Annotations, crd.Name)
	}
	// Unprefixed: config/default supplies the prefix and namespace.
	crd := find[apiextensionsv1.CustomResourceDefinition](t, objs, "CustomResourceDefinition", "", subscriptionsCRD)
	checkConversion(t, crd, "webhook-service", "system")
}

func TestKustomizeSamples(t *testing.T) {
	objs := render(t, samplesDir)
	if len(objs) == 0 {
		t.Fatal("no samples rendered")
	}
	scheme := scheme.New()
	for _, o := range objs {
		if o.GroupVersionKind().Group != "dapr.io" || !scheme.Recognizes(o.GroupVersionKind()) {
			t.Errorf("sample %s %s is not a dapr.io kind Outrigger serves", o.GroupVersionKind(), o.GetName())
		}
	}
}

// The injector's MutatingWebhookConfiguration: both trees name it, point it at the
// Service, keep it off the operator's namespace, and annotate it for cert-manager.
func TestKustomizeMutatingWebhook(t *testing.T) {
	for _, tc := range []struct {
		dir         string
		annotations func(*testing.T, map[string]string, string)
	}{
		{defaultDir, checkNoInjectCA},
		{certManagerDir, checkInjectCA},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			objs := render(t, tc.dir)
			mwc := find[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration", "", mutatingConfig)
			if len(mwc.Webhooks) != 1 {
				t.Fatalf("want one pod webhook, got %d", len(mwc.Webhooks))
			}
			w := mwc.Webhooks[0]
			checkServiceRef(t, "webhook "+w.Name, w.ClientConfig.Service)
			if w.ClientConfig.Service.Path == nil || *w.ClientConfig.Service.Path != "/mutate-pod" {
				t.Errorf("path = %v, want /mutate-pod", w.ClientConfig.Service.Path)
			}
			if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Ignore ||
				w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy ||
				w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
				t.Errorf("policies = failure %v, reinvocation %v, side effects %v", w.FailurePolicy, w.ReinvocationPolicy, w.SideEffects)
			}
			sel := w.NamespaceSelector
			if sel == nil || len(sel.MatchExpressions) != 1 || sel.MatchExpressions[0].Key != "kubernetes.io/metadata.name" ||
				sel.MatchExpressions[0].Operator != metav1.LabelSelectorOpNotIn || !slices.Equal(sel.MatchExpressions[0].Values, []string{namespace}) {
				t.Errorf("namespaceSelector = %+v, want the operator's namespace excluded", sel)
			}
			tc.annotations(t, mwc.Annotations, mutatingConfig)
		})
	}
}

// The tests, `make deploy`, `make build-installer` and `make bundle` render with the
// kustomize Go API; a user may run `kubectl kustomize` or `kubectl apply -k` instead,
// with the pinned kubectl or an older one on PATH. Every tree must render the same.
func TestKustomizeKubectlAgrees(t *testing.T) {
	kubectls := []string{kubectl(t)}
	if onPath, err := exec.LookPath("kubectl"); err == nil {
		version, _, _ := run(onPath, nil, "version", "--client")
		t.Logf("kubectl on PATH: %s", bytes.ReplaceAll(bytes.TrimSpace(version), []byte("\n"), []byte(", ")))
		kubectls = append(kubectls, onPath)
	}
	for _, kc := range kubectls {
		for _, dir := range allDirs {
			stdout, stderr, err := run(kc, nil, "kustomize", dir)
			if err != nil {
				t.Errorf("%s kustomize %s: %v\n%s", kc, dir, err, firstLines(stderr, 5))
				continue
			}
			if want := renderRaw(t, dir); string(stdout) != want {
				t.Errorf("%s kustomize %s renders differently from the kustomize Go API", kc, dir)
			}
		}
	}
}

func firstLines(b []byte, n int) []byte {
	lines := bytes.SplitN(b, []byte("\n"), n+1)
	return bytes.Join(lines[:min(n, len(lines))], []byte("\n"))
}

// The rendered trees must be accepted by a real API server, and the RBAC they grant
// must let the operator's self-managed CA do its work.
func TestKustomizeAppliesToAPIServer(t *testing.T) {
	kc := kubectl(t)
	def := renderRaw(t, defaultDir)
	overlay := render(t, certManagerDir)
	env := testenv.Start(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.Env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	apply := func(t *testing.T, data []byte, extra ...string) {
		t.Helper()
		args := append([]string{"--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts",
			"--field-manager", "outrigger-config-test"}, extra...)
		stdout, stderr, err := run(kc, data, append(args, "-f", "-")...)
		if err != nil {
			t.Fatalf("kubectl apply %v: %v\n%s%s", extra, err, stdout, stderr)
		}
		// PodSecurity (the Namespace enforces restricted) and deprecations warn here.
		if bytes.Contains(stderr, []byte("Warning")) {
			t.Errorf("kubectl apply %v warned:\n%s", extra, stderr)
		}
	}
	// A dry run creates nothing, so the namespaced objects need their Namespace first.
	apply(t, marshal(t, kinds(decode(t, []byte(def)), "Namespace")))
	// envtest installed the CRDs with the conversion webhook at its own URL, owned by
	// another field manager: applying a Service reference would leave both set. A real
	// cluster has no URL there.
	crd := &apiextensionsv1.CustomResourceDefinition{}
	crd.Name = subscriptionsCRD
	noConversion := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"conversion":{"strategy":"None","webhook":null}}}`))
	if err := env.Client.Patch(context.Background(), crd, noConversion); err != nil {
		t.Fatalf("reset the conversion of %s: %v", subscriptionsCRD, err)
	}

	t.Run("default dry run", func(t *testing.T) {
		apply(t, []byte(def), "--dry-run=server")
	})
	t.Run("cert-manager overlay dry run", func(t *testing.T) {
		// cert-manager's CRDs are not installed here.
		var known []*unstructured.Unstructured
		for _, o := range overlay {
			if o.GroupVersionKind().Group != "cert-manager.io" {
				known = append(known, o)
			}
		}
		apply(t, marshal(t, known), "--dry-run=server")
	})
	t.Run("ha overlay dry run", func(t *testing.T) {
		apply(t, []byte(renderRaw(t, haDir)), "--dry-run=server")
	})
	t.Run("gitops dry run", func(t *testing.T) {
		apply(t, []byte(renderRaw(t, gitopsDir)), "--dry-run=server")
	})
	t.Run("OLM manifests dry run", func(t *testing.T) {
		apply(t, []byte(renderRaw(t, manifestsDir)), "--dry-run=server")
	})
	// What `make build-installer` writes, applied for real as a new user would: every
	// object is created, and the operator's ServiceAccount can do its work.
	t.Run("installer creates every object", func(t *testing.T) {
		installer := manifests.SetImage([]byte(def), installerImage)
		apply(t, installer)
		for _, o := range decode(t, installer) {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(o.GroupVersionKind())
			if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(o), got); err != nil {
				t.Errorf("%s %s was not created: %v", o.GetKind(), o.GetName(), err)
			}
		}
		dep := &appsv1.Deployment{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: deploymentName}, dep); err != nil {
			t.Fatal(err)
		}
		c := managerContainer(t, dep)
		if c.Image != installerImage || !slices.Contains(c.Args, "--sidecar-image="+installerImage) {
			t.Errorf("image %s, args %v: want the operator and the sidecar at %s", c.Image, c.Args, installerImage)
		}
		checkPermissions(t, env)
	})
}

// A new user on a new cluster: what `make build-installer` writes, applied with
// `kubectl apply --server-side -f` and nothing else, creates every object with no error
// and no warning. (On `outrigger dev`'s control plane the CRDs exist already, installed
// for the in-process operator with a conversion webhook URL of their own, so applying
// there takes --force-conflicts and repoints the conversion; see
// TestKustomizeAppliesToAPIServer.)
func TestInstallerOnNewControlPlane(t *testing.T) {
	kc := kubectl(t)
	assets, err := localcp.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	installer := manifests.SetImage([]byte(renderRaw(t, defaultDir)), installerImage)
	stdout, stderr, err := run(kc, installer, "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-")
	if err != nil || len(bytes.TrimSpace(stderr)) > 0 {
		t.Fatalf("kubectl apply --server-side -f install.yaml: %v\n%s%s", err, stdout, stderr)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	objs := decode(t, installer)
	if n := bytes.Count(stdout, []byte("serverside-applied")); n != len(objs) {
		t.Errorf("%d objects applied, install.yaml has %d:\n%s", n, len(objs), stdout)
	}
	for _, o := range objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(o), got); err != nil {
			t.Errorf("%s %s was not created: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// The HA overlay changes only the Deployment: two replicas, spread over nodes, with
// leader election.
func TestKustomizeHAOverlay(t *testing.T) {
	objs := render(t, haDir)
	checkLabels(t, objs)
	checkNamespaced(t, objs)
	dep := find[appsv1.Deployment](t, objs, "Deployment", namespace, deploymentName)
	c := managerContainer(t, dep)
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", dep.Spec.Replicas)
	}
	if !slices.Contains(c.Args, "--leader-elect") {
		t.Errorf("args %v: several replicas need --leader-elect", c.Args)
	}
	a := dep.Spec.Template.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatalf("affinity = %+v, want a preferred pod anti-affinity", a)
	}
	sel := a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector
	if sel == nil || !reflect.DeepEqual(sel.MatchLabels, dep.Spec.Selector.MatchLabels) {
		t.Errorf("anti-affinity selects %+v, want the manager's pods %v", sel, dep.Spec.Selector.MatchLabels)
	}
	checkOnlyDeploymentDiffers(t, render(t, defaultDir), objs, nil)
}

// config/manifests, which the OLM bundle is generated from: OLM mounts the webhook
// certificate, so the operator runs without its own CA, its permissions or its volume.
func TestKustomizeManifestsForOLM(t *testing.T) {
	objs := render(t, manifestsDir)
	dep := find[appsv1.Deployment](t, objs, "Deployment", namespace, deploymentName)
	c := managerContainer(t, dep)
	checkDeployment(t, dep, c)
	if !slices.Contains(c.Args, "--cert-provider=cert-manager") {
		t.Errorf("args %v lack --cert-provider=cert-manager", c.Args)
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == certDir {
			t.Errorf("%s is mounted: OLM mounts its certificate there", certDir)
		}
	}
	if len(dep.Spec.Template.Spec.Volumes) != 0 {
		t.Errorf("volumes = %+v, want none", dep.Spec.Template.Spec.Volumes)
	}
	removed := []string{"outrigger-webhook-ca-role", "outrigger-webhook-ca-rolebinding",
		"outrigger-webhook-cert-secret-role", "outrigger-webhook-cert-secret-rolebinding"}
	checkOnlyDeploymentDiffers(t, render(t, defaultDir), objs, removed)
}

// checkOnlyDeploymentDiffers compares an overlay with config/default: the same objects
// apart from the manager's Deployment and those removed.
func checkOnlyDeploymentDiffers(t *testing.T, base, overlay []*unstructured.Unstructured, removed []string) {
	t.Helper()
	index := func(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			if o.GetKind() != "Deployment" && !slices.Contains(removed, o.GetName()) {
				m[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = o
			}
		}
		return m
	}
	b, o := index(base), index(overlay)
	if len(b) != len(o) {
		t.Errorf("%d objects besides the Deployment, config/default has %d", len(o), len(b))
	}
	for k, want := range b {
		if got, ok := o[k]; !ok || !reflect.DeepEqual(got.Object, want.Object) {
			t.Errorf("%s differs from config/default", k)
		}
	}
}

// checkPermissions runs the self-managed CA as the operator's ServiceAccount and asks
// the API server about the rest of what the operator does outside the generated role.
func checkPermissions(t *testing.T, env *testenv.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	user := "system:serviceaccount:" + namespace + ":" + serviceAccountName
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}}
	asOperator, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	cm := &certs.Manager{
		Client: asOperator, Namespace: namespace, SecretName: webhookSecret, ServiceName: webhookService,
		CertDir: t.TempDir(),
		Targets: certs.Targets{
			MutatingWebhookConfigurations:   []string{mutatingConfig},
			ValidatingWebhookConfigurations: []string{validatingConfig},
			ConversionCRDs:                  []string{subscriptionsCRD},
		},
	}
	if err := cm.Ensure(ctx); err != nil {
		t.Fatalf("self-managed CA as %s: %v", user, err)
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: validatingConfig}, vwc); err != nil {
		t.Fatal(err)
	}
	if len(vwc.Webhooks) == 0 || len(vwc.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Errorf("%s has no caBundle after the CA ran", validatingConfig)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: subscriptionsCRD}, crd); err != nil {
		t.Fatal(err)
	}
	if crd.Spec.Conversion == nil || crd.Spec.Conversion.Webhook == nil || crd.Spec.Conversion.Webhook.ClientConfig == nil ||
		len(crd.Spec.Conversion.Webhook.ClientConfig.CABundle) == 0 {
		t.Errorf("%s has no conversion caBundle after the CA ran", subscriptionsCRD)
	}

	for _, tc := range []struct {
		attr    authorizationv1.ResourceAttributes
		allowed bool
	}{
		{authorizationv1.ResourceAttributes{Group: "coordination.k8s.io", Resource: "leases", Verb: "create", Namespace: namespace}, true},
		{authorizationv1.ResourceAttributes{Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Namespace: namespace}, true},
		{authorizationv1.ResourceAttributes{Group: "", Resource: "events", Verb: "create", Namespace: namespace}, true},
		{authorizationv1.ResourceAttributes{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"}, true},
		{authorizationv1.ResourceAttributes{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"}, true},
		{authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Verb: "patch", Name: mutatingConfig}, true},
		// Least privilege: nobody else's webhooks, CRDs or Secrets.
		{authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Verb: "patch", Name: "someone-else"}, false},
		{authorizationv1.ResourceAttributes{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Verb: "patch", Name: "components.dapr.io"}, false},
		{authorizationv1.ResourceAttributes{Group: "", Resource: "secrets", Verb: "update", Namespace: "default"}, false},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: cfg.Impersonate.Groups, ResourceAttributes: &tc.attr}}
		if err := env.Client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != tc.allowed {
			t.Errorf("%s %s %s/%s %q: allowed = %v, want %v", tc.attr.Verb, tc.attr.Group, tc.attr.Resource,
				tc.attr.Name, tc.attr.Namespace, sar.Status.Allowed, tc.allowed)
		}
	}
}

func checkDeployment(t *testing.T, dep *appsv1.Deployment, c *corev1.Container) {
	t.Helper()
	spec := dep.Spec.Template.Spec
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
		t.Errorf("replicas = %v, want 1", dep.Spec.Replicas)
	}
	if c.Image != imagePlaceholder {
		t.Errorf("image = %q, want %q", c.Image, imagePlaceholder)
	}
	if !slices.Equal(c.Command, []string{"/outrigger"}) || len(c.Args) == 0 || c.Args[0] != "operator" {
		t.Errorf("command %v args %v, want /outrigger operator ...", c.Command, c.Args)
	}
	for _, a := range []string{"--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8443"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v lack %s", c.Args, a)
		}
	}
	if spec.ServiceAccountName != serviceAccountName {
		t.Errorf("serviceAccountName = %q, want %q", spec.ServiceAccountName, serviceAccountName)
	}

	psc, sc := spec.SecurityContext, c.SecurityContext
	if sc == nil {
		t.Fatal("manager container has no securityContext")
	}
	nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	if !nonRoot {
		t.Error("the manager may run as root: set runAsNonRoot")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the manager's root filesystem is writable")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the manager allows privilege escalation")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities = %+v, want drop ALL and add none", sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && psc != nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile = %+v, want RuntimeDefault", seccomp)
	}

	var podNamespace bool
	for _, e := range c.Env {
		podNamespace = podNamespace || (e.Name == "POD_NAMESPACE" && e.ValueFrom != nil &&
			e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace")
	}
	if !podNamespace {
		t.Error("POD_NAMESPACE is not set from metadata.namespace: the self-managed CA needs it")
	}
	ports := map[int32]bool{}
	for _, p := range c.Ports {
		ports[p.ContainerPort] = true
	}
	for _, p := range []int32{9443, 8443, 8081} {
		if !ports[p] {
			t.Errorf("container port %d is not declared", p)
		}
	}
	for probe, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != probe || p.HTTPGet.Port.IntValue() != 8081 {
			t.Errorf("probe %s on 8081 missing: %+v", probe, p)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v, want requests and limits", c.Resources)
	}
}

func checkServices(t *testing.T, objs []*unstructured.Unstructured, dep *appsv1.Deployment) {
	t.Helper()
	for _, tc := range []struct {
		name       string
		port       int32
		targetPort int
	}{{webhookService, 443, 9443}, {metricsService, 8443, 8443}} {
		svc := find[corev1.Service](t, objs, "Service", namespace, tc.name)
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != tc.port || svc.Spec.Ports[0].TargetPort.IntValue() != tc.targetPort {
			t.Errorf("Service %s ports = %+v, want %d -> %d", tc.name, svc.Spec.Ports, tc.port, tc.targetPort)
		}
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s has no selector", tc.name)
		}
		for k, v := range svc.Spec.Selector {
			if dep.Spec.Template.Labels[k] != v {
				t.Errorf("Service %s selects %s=%s, which the manager's pods lack", tc.name, k, v)
			}
		}
	}
	pdb := kinds(objs, "PodDisruptionBudget")
	if len(pdb) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(pdb))
	}
	if v, _, _ := unstructured.NestedFieldNoCopy(pdb[0].Object, "spec", "minAvailable"); v != nil {
		t.Error("the PodDisruptionBudget sets minAvailable: with one replica it blocks every drain")
	}
}

func checkRBAC(t *testing.T, objs []*unstructured.Unstructured, dep *appsv1.Deployment) {
	t.Helper()
	find[corev1.ServiceAccount](t, objs, "ServiceAccount", namespace, serviceAccountName)
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		for _, o := range kinds(objs, kind) {
			b := &rbacv1.RoleBinding{}
			decodeInto(t, o, b)
			for _, s := range b.Subjects {
				if s.Kind != "ServiceAccount" || s.Name != serviceAccountName || s.Namespace != namespace {
					t.Errorf("%s %s binds %+v, want ServiceAccount %s/%s", kind, b.Name, s, namespace, serviceAccountName)
				}
			}
			roleNS := ""
			if b.RoleRef.Kind == "Role" {
				roleNS = b.Namespace
			}
			if !slices.ContainsFunc(objs, func(r *unstructured.Unstructured) bool {
				return r.GetKind() == b.RoleRef.Kind && r.GetName() == b.RoleRef.Name && r.GetNamespace() == roleNS
			}) {
				t.Errorf("%s %s refers to %s %s, which is not rendered", kind, b.Name, b.RoleRef.Kind, b.RoleRef.Name)
			}
		}
	}
	find[rbacv1.ClusterRole](t, objs, "ClusterRole", "", "outrigger-manager-role")
	find[rbacv1.Role](t, objs, "Role", namespace, "outrigger-leader-election-role")
	find[rbacv1.ClusterRole](t, objs, "ClusterRole", "", "outrigger-metrics-auth-role")
	find[rbacv1.ClusterRole](t, objs, "ClusterRole", "", "outrigger-metrics-reader")
	for _, k := range []string{"component", "configuration", "httpendpoint", "resiliency", "subscription"} {
		find[rbacv1.ClusterRole](t, objs, "ClusterRole", "", "outrigger-"+k+"-editor-role")
		find[rbacv1.ClusterRole](t, objs, "ClusterRole", "", "outrigger-"+k+"-viewer-role")
	}
	if dep.Spec.Template.Spec.ServiceAccountName != serviceAccountName {
		t.Errorf("the Deployment runs as %q, not the bound ServiceAccount", dep.Spec.Template.Spec.ServiceAccountName)
	}
}

func checkCertificate(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	cert := findObj(t, objs, "Certificate", namespace, "outrigger-serving-cert")
	want := []any{webhookService + "." + namespace + ".svc", webhookService + "." + namespace + ".svc.cluster.local"}
	if got, _, _ := unstructured.NestedSlice(cert.Object, "spec", "dnsNames"); !slices.Equal(got, want) {
		t.Errorf("Certificate dnsNames = %v, want %v", got, want)
	}
	if got, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); got != certManagerSecret {
		t.Errorf("Certificate secretName = %q, want %q", got, certManagerSecret)
	}
	issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
	findObj(t, objs, "Issuer", namespace, issuer)
}

func checkConversion(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition, service, ns string) {
	t.Helper()
	c := crd.Spec.Conversion
	if c == nil || c.Strategy != apiextensionsv1.WebhookConverter || c.Webhook == nil || c.Webhook.ClientConfig == nil ||
		c.Webhook.ClientConfig.Service == nil {
		t.Fatalf("%s conversion = %+v, want a webhook", crd.Name, c)
	}
	s := c.Webhook.ClientConfig.Service
	if s.Name != service || s.Namespace != ns || s.Path == nil || *s.Path != "/convert" {
		t.Errorf("%s conversion webhook = %s/%s %v, want %s/%s /convert", crd.Name, s.Namespace, s.Name, s.Path, ns, service)
	}
	if !slices.Equal(c.Webhook.ConversionReviewVersions, []string{"v1"}) {
		t.Errorf("conversionReviewVersions = %v, want [v1]", c.Webhook.ConversionReviewVersions)
	}
	if len(c.Webhook.ClientConfig.CABundle) != 0 {
		t.Errorf("%s has a caBundle in its manifest: it is injected at run time", crd.Name)
	}
}

func checkServiceRef(t *testing.T, what string, s *admissionregistrationv1.ServiceReference) {
	t.Helper()
	if s == nil || s.Name != webhookService || s.Namespace != namespace {
		t.Errorf("%s calls %+v, want Service %s/%s", what, s, namespace, webhookService)
	}
}

func checkInjectCA(t *testing.T, annotations map[string]string, name string) {
	t.Helper()
	if got := annotations[injectCAAnnotation]; got != injectCAFrom {
		t.Errorf("%s: %s = %q, want %q", name, injectCAAnnotation, got, injectCAFrom)
	}
}

func checkNoInjectCA(t *testing.T, annotations map[string]string, name string) {
	t.Helper()
	if v, ok := annotations[injectCAAnnotation]; ok {
		t.Errorf("%s has %s=%s without cert-manager", name, injectCAAnnotation, v)
	}
}

func checkLabels(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		l := o.GetLabels()
		if l["app.kubernetes.io/name"] != "outrigger" || l["app.kubernetes.io/managed-by"] != "kustomize" {
			t.Errorf("%s %s labels = %v", o.GetKind(), o.GetName(), l)
		}
	}
}

var clusterScoped = []string{"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
	"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}

func checkNamespaced(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		want := namespace
		if slices.Contains(clusterScoped, o.GetKind()) {
			want = ""
		}
		if o.GetNamespace() != want {
			t.Errorf("%s %s is in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), want)
		}
		if !strings.HasPrefix(o.GetName(), "outrigger-") && !strings.HasSuffix(o.GetName(), ".dapr.io") &&
			(o.GetKind() != "Service" || o.GetName() != sentryService) {
			t.Errorf("%s %s lacks the outrigger- prefix", o.GetKind(), o.GetName())
		}
	}
}

func managerContainer(t *testing.T, dep *appsv1.Deployment) *corev1.Container {
	t.Helper()
	for i, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "manager" {
			return &dep.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatal("Deployment has no manager container")
	return nil
}

// certVolume returns the volume mounted where the webhook server reads its certificate.
func certVolume(t *testing.T, dep *appsv1.Deployment) *corev1.Volume {
	t.Helper()
	c := managerContainer(t, dep)
	for _, m := range c.VolumeMounts {
		if m.MountPath != certDir {
			continue
		}
		for i, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name == m.Name {
				return &dep.Spec.Template.Spec.Volumes[i]
			}
		}
	}
	t.Fatalf("nothing is mounted at %s", certDir)
	return nil
}

// kubectl finds the kubectl built by hack/setup-envtest.sh; its kustomize is the one
// `make deploy` uses.
func kubectl(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatal(err)
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "outrigger", "envtest", "1.37.2")
	}
	path := filepath.Join(dir, "kubectl")
	if _, err := exec.LookPath(path); err != nil {
		msg := fmt.Sprintf("kubectl not found in %s (run hack/setup-envtest.sh): %v", dir, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

func run(kubectl string, stdin []byte, args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, args...)
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %s", ctx.Err(), commandTimeout)
	}
	return out.Bytes(), errOut.Bytes(), err
}

// renderRaw builds dir with the kustomize Go API, as `make build-installer` does.
func renderRaw(t *testing.T, dir string) string {
	t.Helper()
	out, err := manifests.Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// render builds dir and checks that every object parses: strictly into its Go type when
// the scheme knows the kind.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs := decode(t, []byte(renderRaw(t, dir)))
	if len(objs) == 0 {
		t.Fatalf("%s rendered nothing", dir)
	}
	scheme := scheme.New()
	for _, o := range objs {
		if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
			t.Errorf("%s: object without apiVersion, kind or name: %v", dir, o.Object)
			continue
		}
		if typed, err := scheme.New(o.GroupVersionKind()); err == nil {
			decodeInto(t, o, typed)
		}
	}
	return objs
}

func decode(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := r.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("parse rendered manifests: %v", err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func decodeInto(t *testing.T, u *unstructured.Unstructured, into runtime.Object) {
	t.Helper()
	data, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Errorf("%s %s does not parse: %v", u.GetKind(), u.GetName(), err)
	}
}

func marshal(t *testing.T, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return b.Bytes()
}

func kinds(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func findObj(t *testing.T, objs []*unstructured.Unstructured, kind, ns, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == ns && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("%s %s/%s is not rendered", kind, ns, name)
	return nil
}

// find returns the object decoded into its Go type.
func find[T any, PT interface {
	*T
	runtime.Object
}](t *testing.T, objs []*unstructured.Unstructured, kind, ns, name string) PT {
	t.Helper()
	out := PT(new(T))
	decodeInto(t, findObj(t, objs, kind, ns, name), out)
	return out
}

// copyTree copies the kustomize tree (not the Go files) into a temporary directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if strings.HasSuffix(path, ".go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
