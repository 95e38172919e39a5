package bundle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/config"
	"github.com/outrigger-dev/outrigger/internal/bundle"
	"github.com/outrigger-dev/outrigger/internal/manifests"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

const root = "../.."

// loaded is the committed bundle, decoded strictly.
type loaded struct {
	csv    *bundle.ClusterServiceVersion
	crds   []*apiextensionsv1.CustomResourceDefinition
	others []*unstructured.Unstructured
}

func load(t *testing.T) loaded {
	t.Helper()
	dir := filepath.Join(root, bundle.ManifestsDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read the committed bundle (run make bundle): %v", err)
	}
	var l loaded
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := manifests.Decode(data)
		if err != nil || len(objs) != 1 {
			t.Fatalf("%s: want one object, got %d (%v)", e.Name(), len(objs), err)
		}
		switch objs[0].GetKind() {
		case "ClusterServiceVersion":
			l.csv = &bundle.ClusterServiceVersion{}
			if err := yaml.UnmarshalStrict(data, l.csv); err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
		case "CustomResourceDefinition":
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.UnmarshalStrict(data, crd); err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			l.crds = append(l.crds, crd)
		default:
			l.others = append(l.others, objs[0])
		}
	}
	if l.csv == nil {
		t.Fatal("bundle/manifests holds no ClusterServiceVersion")
	}
	return l
}

// The committed bundle is exactly what `make bundle` generates from config/ (CI runs
// make verify-generated too, which regenerates it).
func TestBundleIsFresh(t *testing.T) {
	version, err := bundle.CommittedVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	files, err := bundle.Generate(bundle.Options{Root: root, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	if diff := bundle.Diff(root, files); len(diff) > 0 {
		t.Errorf("bundle/ is stale; run make bundle:\n  %s", strings.Join(diff, "\n  "))
	}
}

func TestBundleMetadata(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, bundle.AnnotationsPath))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct{ Annotations map[string]string }
	if err := yaml.UnmarshalStrict(data, &meta); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1":       "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1":       "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":        "metadata/",
		"operators.operatorframework.io.bundle.package.v1":         "outrigger",
		"operators.operatorframework.io.bundle.channels.v1":        "alpha",
		"operators.operatorframework.io.bundle.channel.default.v1": "alpha",
	}
	if !equality.Semantic.DeepEqual(meta.Annotations, want) {
		t.Errorf("annotations = %v, want %v", meta.Annotations, want)
	}
	docker, err := os.ReadFile(filepath.Join(root, bundle.DockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if !strings.Contains(string(docker), "LABEL "+k+"="+v+"\n") {
			t.Errorf("bundle.Dockerfile lacks the label %s=%s", k, v)
		}
	}
}

func TestCSVValid(t *testing.T) {
	l := load(t)
	for _, err := range bundle.Validate(l.csv, l.crds) {
		t.Error(err)
	}
	csv := l.csv
	if csv.Name != "outrigger.v"+csv.Spec.Version {
		t.Errorf("name = %q", csv.Name)
	}
	image := csv.Annotations["containerImage"]
	dep := csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs[0]
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != image || !slices.Contains(c.Args, "--sidecar-image="+image) {
		t.Errorf("image %s, args %v: want the operator and the sidecar at %s", c.Image, c.Args, image)
	}
	// OLM issues the webhook certificate and mounts it where the webhook server reads.
	if !slices.Contains(c.Args, "--cert-provider=cert-manager") {
		t.Errorf("args %v: the operator must not run its own CA under OLM", c.Args)
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/tmp/k8s-webhook-server/serving-certs" {
			t.Errorf("the deployment mounts %s, where OLM mounts the certificate", m.MountPath)
		}
	}
	if strings.Contains(fmt.Sprint(c.Args, c.Image), manifests.ImagePlaceholder) {
		t.Errorf("the placeholder image %s is left", manifests.ImagePlaceholder)
	}
}

// Invalid CSVs are caught: the validator is what keeps the generator honest.
func TestValidateRejects(t *testing.T) {
	l := load(t)
	for _, tc := range []struct {
		name   string
		mutate func(*bundle.ClusterServiceVersion)
		want   string
	}{
		{"bad version", func(c *bundle.ClusterServiceVersion) { c.Spec.Version = "1.x" }, "spec.version"},
		{"no display name", func(c *bundle.ClusterServiceVersion) { c.Spec.DisplayName = "" }, "spec.displayName"},
		{"install mode missing", func(c *bundle.ClusterServiceVersion) { c.Spec.InstallModes = c.Spec.InstallModes[:3] }, "AllNamespaces is not listed"},
		{"owned CRD missing", func(c *bundle.ClusterServiceVersion) {
			c.Spec.CustomResourceDefinitions.Owned = c.Spec.CustomResourceDefinitions.Owned[1:]
		}, "not owned"},
		{"webhook without deployment", func(c *bundle.ClusterServiceVersion) { c.Spec.WebhookDefinitions[0].DeploymentName = "x" }, "install strategy lacks"},
		{"conversion not listed", func(c *bundle.ClusterServiceVersion) {
			c.Spec.WebhookDefinitions = slices.DeleteFunc(c.Spec.WebhookDefinitions, func(w bundle.WebhookDescription) bool {
				return w.Type == bundle.ConversionWebhook
			})
		}, "no conversion webhook lists it"},
		{"example of unknown kind", func(c *bundle.ClusterServiceVersion) {
			c.Annotations["alm-examples"] = `[{"apiVersion":"dapr.io/v1","kind":"Widget","metadata":{"name":"w"}}]`
		}, "does not own"},
		{"permissions of a stranger", func(c *bundle.ClusterServiceVersion) {
			c.Spec.InstallStrategy.StrategySpec.Permissions[0].ServiceAccountName = "nobody"
		}, "no deployment runs as"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, _ := json.Marshal(l.csv)
			csv := &bundle.ClusterServiceVersion{}
			if err := json.Unmarshal(data, csv); err != nil {
				t.Fatal(err)
			}
			tc.mutate(csv)
			errs := bundle.Validate(csv, l.crds)
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
				t.Errorf("errors %v lack %q", errs, tc.want)
			}
		})
	}
}

// The owned CRDs are exactly those of config/crd/bases, every served version of each,
// and the bundle ships them unchanged.
func TestCSVOwnedCRDsMatchBases(t *testing.T) {
	l := load(t)
	bases, err := config.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	type entry struct{ name, version, kind string }
	var want, got []entry
	for _, crd := range bases {
		for _, v := range crd.Spec.Versions {
			if v.Served {
				want = append(want, entry{crd.Name, v.Name, crd.Spec.Names.Kind})
			}
		}
		i := slices.IndexFunc(l.crds, func(c *apiextensionsv1.CustomResourceDefinition) bool { return c.Name == crd.Name })
		if i < 0 {
			t.Errorf("bundle/manifests lacks the CRD %s", crd.Name)
			continue
		}
		b := l.crds[i].Spec.DeepCopy()
		b.Conversion = crd.Spec.Conversion // config/crd adds the conversion webhook
		if !equality.Semantic.DeepEqual(*b, crd.Spec) {
			t.Errorf("the bundle's CRD %s differs from config/crd/bases", crd.Name)
		}
	}
	for _, d := range l.csv.Spec.CustomResourceDefinitions.Owned {
		got = append(got, entry{d.Name, d.Version, d.Kind})
		if d.DisplayName == "" || d.Description == "" {
			t.Errorf("owned %s %s lacks a displayName or description", d.Name, d.Version)
		}
	}
	less := func(a, b entry) int { return strings.Compare(a.name+a.version, b.name+b.version) }
	slices.SortFunc(want, less)
	slices.SortFunc(got, less)
	if !slices.Equal(got, want) {
		t.Errorf("owned CRDs = %v, want %v", got, want)
	}
	if len(l.crds) != len(bases) {
		t.Errorf("bundle ships %d CRDs, config/crd/bases has %d", len(l.crds), len(bases))
	}
}

// The CSV grants the operator's service account everything config/rbac grants it.
func TestCSVPermissionsCoverRole(t *testing.T) {
	l := load(t)
	spec := l.csv.Spec.InstallStrategy.StrategySpec
	sa := spec.DeploymentSpecs[0].Spec.Template.Spec.ServiceAccountName
	var cluster, namespaced []rbacv1.PolicyRule
	for _, p := range spec.ClusterPermissions {
		if p.ServiceAccountName == sa {
			cluster = append(cluster, p.Rules...)
		}
	}
	for _, p := range spec.Permissions {
		if p.ServiceAccountName == sa {
			namespaced = append(namespaced, p.Rules...)
		}
	}
	for _, tc := range []struct {
		file  string
		rules []rbacv1.PolicyRule
	}{
		{"role.yaml", cluster},                    // generated from the +kubebuilder:rbac markers
		{"metrics_auth_role.yaml", cluster},       // metrics authentication and authorisation
		{"leader_election_role.yaml", namespaced}, // the Lease, in the install namespace
	} {
		data, err := os.ReadFile(filepath.Join(root, "config/rbac", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		role := &rbacv1.ClusterRole{}
		if err := yaml.UnmarshalStrict(data, role); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if len(role.Rules) == 0 {
			t.Fatalf("%s has no rules", tc.file)
		}
		for _, missing := range uncovered(role.Rules, tc.rules) {
			t.Errorf("%s grants %s, the CSV does not", tc.file, missing)
		}
	}
}

// uncovered lists each (group, resource, verb, name) of want that no rule of have grants.
func uncovered(want, have []rbacv1.PolicyRule) []string {
	match := func(list []string, v string) bool {
		return slices.Contains(list, v) || slices.Contains(list, "*")
	}
	var out []string
	for _, w := range want {
		names := w.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range w.APIGroups {
			for _, r := range w.Resources {
				for _, v := range w.Verbs {
					for _, n := range names {
						if !slices.ContainsFunc(have, func(h rbacv1.PolicyRule) bool {
							return match(h.APIGroups, g) && match(h.Resources, r) && match(h.Verbs, v) &&
								(len(h.ResourceNames) == 0 || slices.Contains(h.ResourceNames, n))
						}) {
							out = append(out, fmt.Sprintf("%s %s/%s %s", v, g, r, n))
						}
					}
				}
			}
		}
		for _, u := range w.NonResourceURLs {
			for _, v := range w.Verbs {
				if !slices.ContainsFunc(have, func(h rbacv1.PolicyRule) bool { return match(h.NonResourceURLs, u) && match(h.Verbs, v) }) {
					out = append(out, fmt.Sprintf("%s %s", v, u))
				}
			}
		}
	}
	return out
}

// Every webhook of config/webhook, and the conversion webhook of config/crd, is a
// webhook definition with the same behaviour.
func TestCSVWebhooksMatchConfig(t *testing.T) {
	l := load(t)
	defs := map[string]bundle.WebhookDescription{}
	for _, d := range l.csv.Spec.WebhookDefinitions {
		defs[d.GenerateName] = d
	}
	mut, val, err := config.Webhooks()
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, typ bundle.WebhookAdmissionType, path *string, rules []admissionregistrationv1.RuleWithOperations,
		failure *admissionregistrationv1.FailurePolicyType, match *admissionregistrationv1.MatchPolicyType,
		side *admissionregistrationv1.SideEffectClass, timeout *int32, versions []string,
		reinvocation *admissionregistrationv1.ReinvocationPolicyType, objSel *metav1.LabelSelector) {
		t.Helper()
		d, ok := defs[name]
		if !ok {
			t.Errorf("webhook %s has no definition in the CSV", name)
			return
		}
		delete(defs, name)
		got := []any{d.Type, d.WebhookPath, d.Rules, d.FailurePolicy, d.MatchPolicy, d.SideEffects, d.TimeoutSeconds, d.AdmissionReviewVersions, d.ReinvocationPolicy, d.ObjectSelector}
		want := []any{typ, path, rules, failure, match, side, timeout, versions, reinvocation, objSel}
		for i := range got {
			if !equality.Semantic.DeepEqual(got[i], want[i]) {
				t.Errorf("webhook %s field %d = %s, config/webhook says %s", name, i, js(got[i]), js(want[i]))
			}
		}
		if d.ContainerPort != 443 || d.TargetPort == nil || *d.TargetPort != intstr.FromInt32(9443) {
			t.Errorf("webhook %s ports %d -> %v, want 443 -> 9443", name, d.ContainerPort, d.TargetPort)
		}
	}
	for _, m := range mut {
		for _, w := range m.Webhooks {
			check(w.Name, bundle.MutatingAdmissionWebhook, w.ClientConfig.Service.Path, w.Rules, w.FailurePolicy, w.MatchPolicy,
				w.SideEffects, w.TimeoutSeconds, w.AdmissionReviewVersions, w.ReinvocationPolicy, w.ObjectSelector)
		}
	}
	for _, v := range val {
		for _, w := range v.Webhooks {
			check(w.Name, bundle.ValidatingAdmissionWebhook, w.ClientConfig.Service.Path, w.Rules, w.FailurePolicy, w.MatchPolicy,
				w.SideEffects, w.TimeoutSeconds, w.AdmissionReviewVersions, nil, w.ObjectSelector)
		}
	}
	crds, err := manifests.RenderObjects(filepath.Join(root, "config/crd"))
	if err != nil {
		t.Fatal(err)
	}
	conversions := 0
	for _, o := range crds {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := runtimeConvert(o, crd); err != nil {
			t.Fatal(err)
		}
		c := crd.Spec.Conversion
		if c == nil || c.Strategy != apiextensionsv1.WebhookConverter {
			continue
		}
		conversions++
		var found bool
		for name, d := range defs {
			if d.Type == bundle.ConversionWebhook && slices.Equal(d.ConversionCRDs, []string{crd.Name}) {
				found = true
				if d.WebhookPath == nil || *d.WebhookPath != *c.Webhook.ClientConfig.Service.Path ||
					!slices.Equal(d.AdmissionReviewVersions, c.Webhook.ConversionReviewVersions) {
					t.Errorf("conversion webhook %s = %s, config/crd says %s", name, js(d), js(c.Webhook))
				}
				delete(defs, name)
			}
		}
		if !found {
			t.Errorf("CRD %s converts by webhook, the CSV has no ConversionWebhook for it", crd.Name)
		}
	}
	if conversions == 0 {
		t.Error("config/crd has no conversion webhook: Subscription needs one")
	}
	for name := range defs {
		t.Errorf("the CSV defines webhook %s, which config/ does not", name)
	}
}

// TestBundleInstallsAsOLMWould does on envtest what OLM does with the bundle in
// AllNamespaces mode: it creates the service account, the RBAC of the install strategy,
// the Deployment with OLM's certificate volume, the webhook Service and configurations
// from the webhook definitions and the other manifests, each with server-side dry-run;
// and then the alm-examples, which the real validating webhooks check.
func TestBundleInstallsAsOLMWould(t *testing.T) {
	l := load(t)
	env := testenv.Start(t, validation.SetupWithManager)
	ctx := context.Background()
	c := env.Client
	ns := env.Namespace(t, "operators")
	dryRun := client.DryRunAll
	create := func(obj client.Object, opts ...client.CreateOption) {
		t.Helper()
		if err := c.Create(ctx, obj, opts...); err != nil {
			t.Errorf("create %T %s: %v", obj, obj.GetName(), err)
		}
	}
	spec := l.csv.Spec.InstallStrategy.StrategySpec
	for _, d := range spec.DeploymentSpecs {
		sa := d.Spec.Template.Spec.ServiceAccountName
		create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}})

		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: ns, Labels: d.Label}, Spec: *d.Spec.DeepCopy()}
		// OLM's certificate, where controller-runtime's webhook server reads it.
		pod := &dep.Spec.Template.Spec
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "webhook-cert", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: d.Name + "-service-cert"}}})
		pod.Containers[0].VolumeMounts = append(pod.Containers[0].VolumeMounts, corev1.VolumeMount{
			Name: "webhook-cert", MountPath: "/tmp/k8s-webhook-server/serving-certs"})
		create(dep, dryRun)
	}
	for i, p := range spec.Permissions {
		name := fmt.Sprintf("olm-test-%d", i)
		create(&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: p.Rules})
		create(&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: p.ServiceAccountName, Namespace: ns}}}, dryRun)
	}
	for i, p := range spec.ClusterPermissions {
		name := fmt.Sprintf("%s-olm-test-%d", ns, i)
		create(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: p.Rules}, dryRun)
	}

	svcs := map[string]*corev1.Service{}
	for _, w := range l.csv.Spec.WebhookDefinitions {
		name := w.DeploymentName + "-service"
		svc, ok := svcs[name]
		if !ok {
			svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
			svc.Spec.Selector = spec.DeploymentSpecs[0].Spec.Selector.MatchLabels
			svcs[name] = svc
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == w.ContainerPort }) {
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: fmt.Sprint(w.ContainerPort), Port: w.ContainerPort, TargetPort: *w.TargetPort})
		}
		ref := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
			Namespace: ns, Name: name, Path: w.WebhookPath, Port: &w.ContainerPort}}
		meta := metav1.ObjectMeta{GenerateName: w.GenerateName + "-"}
		switch w.Type {
		case bundle.MutatingAdmissionWebhook:
			create(&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name: w.GenerateName, ClientConfig: ref, Rules: w.Rules, FailurePolicy: w.FailurePolicy, MatchPolicy: w.MatchPolicy,
				ObjectSelector: w.ObjectSelector, SideEffects: w.SideEffects, TimeoutSeconds: w.TimeoutSeconds,
				AdmissionReviewVersions: w.AdmissionReviewVersions, ReinvocationPolicy: w.ReinvocationPolicy}}}, dryRun)
		case bundle.ValidatingAdmissionWebhook:
			create(&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionregistrationv1.ValidatingWebhook{{
				Name: w.GenerateName, ClientConfig: ref, Rules: w.Rules, FailurePolicy: w.FailurePolicy, MatchPolicy: w.MatchPolicy,
				ObjectSelector: w.ObjectSelector, SideEffects: w.SideEffects, TimeoutSeconds: w.TimeoutSeconds,
				AdmissionReviewVersions: w.AdmissionReviewVersions}}}, dryRun)
		case bundle.ConversionWebhook:
			for _, name := range w.ConversionCRDs {
				i := slices.IndexFunc(l.crds, func(c *apiextensionsv1.CustomResourceDefinition) bool { return c.Name == name })
				if i < 0 {
					t.Fatalf("conversion CRD %s is not in the bundle", name)
				}
				crd := l.crds[i].DeepCopy()
				crd.Spec.Conversion.Webhook.ClientConfig.Service = &apiextensionsv1.ServiceReference{
					Namespace: ns, Name: svc.Name, Path: w.WebhookPath, Port: &w.ContainerPort}
				// envtest installed the CRDs already: the update checks the result.
				current := &apiextensionsv1.CustomResourceDefinition{}
				if err := c.Get(ctx, client.ObjectKey{Name: name}, current); err != nil {
					t.Fatal(err)
				}
				crd.ResourceVersion = current.ResourceVersion
				if err := c.Update(ctx, crd, client.DryRunAll); err != nil {
					t.Errorf("update CRD %s as OLM would: %v", name, err)
				}
			}
		}
	}
	for _, svc := range svcs {
		create(svc, dryRun)
	}
	for _, o := range l.others {
		o = o.DeepCopy()
		if o.GetKind() != "ClusterRole" {
			o.SetNamespace(ns)
		}
		create(o, dryRun)
	}

	var examples []map[string]any
	if err := json.Unmarshal([]byte(l.csv.Annotations["alm-examples"]), &examples); err != nil {
		t.Fatal(err)
	}
	for _, e := range examples {
		u := &unstructured.Unstructured{Object: e}
		u.SetNamespace(ns)
		if err := c.Create(ctx, u, dryRun); err != nil {
			t.Errorf("alm-example %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

func runtimeConvert(u *unstructured.Unstructured, into any) error {
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return yaml.UnmarshalStrict(data, into)
}

func js(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}
