// Package bundle generates the OLM bundle (bundle/manifests, bundle/metadata and
// bundle.Dockerfile) from the kustomize tree config/manifests, the CSV base beside it
// and config/samples, and checks a ClusterServiceVersion the way OLM's validators do.
// `make bundle` runs it through hack/manifests; the tests keep the committed bundle
// equal to what it generates.
package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/blang/semver/v4"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/internal/manifests"
)

// Defaults of the bundle's identity.
const (
	DefaultPackage = "outrigger"
	DefaultChannel = "alpha"
	// DefaultVersion is the version of a first bundle, before one is committed.
	DefaultVersion = "0.1.0"
	// ImageRepository is where released images are pushed; the bundle's image is
	// ImageRepository:v<version> unless told otherwise.
	ImageRepository = "ghcr.io/outrigger-dev/outrigger"
)

// Paths, relative to the repository root.
const (
	ManifestsConfigDir = "config/manifests"
	SamplesDir         = "config/samples"
	BaseCSVPath        = "config/manifests/bases/outrigger.clusterserviceversion.yaml"
	BundleDir          = "bundle"
	ManifestsDir       = "bundle/manifests"
	MetadataDir        = "bundle/metadata"
	AnnotationsPath    = "bundle/metadata/annotations.yaml"
	DockerfilePath     = "bundle.Dockerfile"
)

// Options say which bundle to generate.
type Options struct {
	// Root is the repository root.
	Root string
	// Version is the operator's semantic version, without a leading v.
	Version string
	// Image is the operator's (and the sidecar's) image; ImageRepository:v<Version>
	// when empty.
	Image string
	// Package, Channels and DefaultChannel default to outrigger, [alpha] and alpha.
	Package        string
	Channels       []string
	DefaultChannel string
}

func (o *Options) defaults() error {
	if o.Package == "" {
		o.Package = DefaultPackage
	}
	if len(o.Channels) == 0 {
		o.Channels = []string{DefaultChannel}
	}
	if o.DefaultChannel == "" {
		o.DefaultChannel = o.Channels[0]
	}
	if !slices.Contains(o.Channels, o.DefaultChannel) {
		return fmt.Errorf("default channel %q is not among the channels %v", o.DefaultChannel, o.Channels)
	}
	o.Version = strings.TrimPrefix(o.Version, "v")
	if _, err := semver.Parse(o.Version); err != nil {
		return fmt.Errorf("version %q is not a semantic version such as 1.2.3: %w", o.Version, err)
	}
	if o.Image == "" {
		o.Image = ImageRepository + ":v" + o.Version
	}
	return nil
}

// CSVFileName is the CSV's file in bundle/manifests.
func CSVFileName(pkg string) string { return pkg + ".clusterserviceversion.yaml" }

// CommittedVersion reads the version of the CSV in bundle/manifests, so that
// regenerating without a version keeps it; DefaultVersion when there is none.
func CommittedVersion(root string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, ManifestsDir, CSVFileName(DefaultPackage)))
	if errors.Is(err, os.ErrNotExist) {
		return DefaultVersion, nil
	}
	if err != nil {
		return "", err
	}
	csv := &ClusterServiceVersion{}
	if err := yaml.Unmarshal(data, csv); err != nil {
		return "", fmt.Errorf("read the committed CSV: %w", err)
	}
	if csv.Spec.Version == "" {
		return DefaultVersion, nil
	}
	return csv.Spec.Version, nil
}

// Generate returns the bundle's files by path relative to the repository root.
func Generate(o Options) (map[string][]byte, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	rendered, err := manifests.Render(filepath.Join(o.Root, ManifestsConfigDir))
	if err != nil {
		return nil, err
	}
	objs, err := manifests.Decode(manifests.SetImage(rendered, o.Image))
	if err != nil {
		return nil, err
	}
	csv, err := readBase(filepath.Join(o.Root, BaseCSVPath))
	if err != nil {
		return nil, err
	}
	samples, err := manifests.RenderObjects(filepath.Join(o.Root, SamplesDir))
	if err != nil {
		return nil, err
	}

	g := &generator{opts: o, csv: csv, files: map[string][]byte{}}
	if err := g.classify(objs); err != nil {
		return nil, err
	}
	if err := g.install(); err != nil {
		return nil, err
	}
	if err := g.webhooks(); err != nil {
		return nil, err
	}
	if err := g.ownedCRDs(); err != nil {
		return nil, err
	}
	if err := g.examples(samples); err != nil {
		return nil, err
	}
	csv.Name = o.Package + ".v" + o.Version
	csv.Spec.Version = o.Version
	csv.Annotations["containerImage"] = o.Image
	csv.Spec.RelatedImages = []RelatedImage{{Name: "outrigger", Image: o.Image}}

	if errs := Validate(csv, g.crds); len(errs) > 0 {
		return nil, fmt.Errorf("the generated CSV is invalid:\n  %w", errors.Join(errs...))
	}
	data, err := marshalYAML(csv)
	if err != nil {
		return nil, err
	}
	g.files[filepath.Join(ManifestsDir, CSVFileName(o.Package))] = data
	g.files[AnnotationsPath] = annotations(o)
	g.files[DockerfilePath] = dockerfile(o)
	return g.files, nil
}

// Write replaces the bundle on disk with files: a file that is no longer generated is
// removed.
func Write(root string, files map[string][]byte) error {
	for _, dir := range []string{ManifestsDir, MetadataDir} {
		if err := os.RemoveAll(filepath.Join(root, dir)); err != nil {
			return err
		}
	}
	for name, data := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Diff compares files with the bundle on disk and describes every difference.
func Diff(root string, files map[string][]byte) []string {
	var out []string
	onDisk := map[string]bool{}
	for _, dir := range []string{ManifestsDir, MetadataDir} {
		entries, _ := os.ReadDir(filepath.Join(root, dir))
		for _, e := range entries {
			onDisk[filepath.Join(dir, e.Name())] = true
		}
	}
	onDisk[DockerfilePath] = true
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got, err := os.ReadFile(filepath.Join(root, name))
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s: %v", name, err))
		case !bytes.Equal(got, files[name]):
			out = append(out, name+" differs")
		}
		delete(onDisk, name)
	}
	for name := range onDisk {
		out = append(out, name+" is not generated any more")
	}
	sort.Strings(out)
	return out
}

func readBase(path string) (*ClusterServiceVersion, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	csv := &ClusterServiceVersion{}
	if err := yaml.UnmarshalStrict(data, csv); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if csv.Annotations == nil {
		csv.Annotations = map[string]string{}
	}
	return csv, nil
}

type generator struct {
	opts  Options
	csv   *ClusterServiceVersion
	files map[string][]byte

	crds        []*apiextensionsv1.CustomResourceDefinition
	deployments []*appsv1.Deployment
	saNames     []string
	roles       map[string]*unstructured.Unstructured // kind/namespace/name
	bindings    []*rbacv1.RoleBinding                 // ClusterRoleBindings too, with Kind set
	services    []*corev1.Service
	mutating    []*admissionregistrationv1.MutatingWebhookConfiguration
	validating  []*admissionregistrationv1.ValidatingWebhookConfiguration
	others      []*unstructured.Unstructured
}

func key(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

// classify sorts the rendered objects into what becomes part of the CSV and what is
// shipped as its own manifest.
func (g *generator) classify(objs []*unstructured.Unstructured) error {
	g.roles = map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		var err error
		switch o.GetKind() {
		case "Namespace":
			// OLM installs into the namespace of the OperatorGroup.
		case "CustomResourceDefinition":
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err = convert(o, crd); err == nil {
				g.crds = append(g.crds, crd)
				g.files[filepath.Join(ManifestsDir, crd.Spec.Group+"_"+crd.Spec.Names.Plural+".yaml")], err = marshalYAML(o.Object)
			}
		case "Deployment":
			d := &appsv1.Deployment{}
			if err = convert(o, d); err == nil {
				g.deployments = append(g.deployments, d)
			}
		case "ServiceAccount":
			g.saNames = append(g.saNames, o.GetName())
		case "Role", "ClusterRole":
			g.roles[key(o.GetKind(), o.GetNamespace(), o.GetName())] = o
		case "RoleBinding", "ClusterRoleBinding":
			b := &rbacv1.RoleBinding{}
			if err = convert(o, b); err == nil {
				b.Kind = o.GetKind()
				g.bindings = append(g.bindings, b)
			}
		case "Service":
			s := &corev1.Service{}
			if err = convert(o, s); err == nil {
				g.services = append(g.services, s)
			}
		case "MutatingWebhookConfiguration":
			m := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err = convert(o, m); err == nil {
				g.mutating = append(g.mutating, m)
			}
		case "ValidatingWebhookConfiguration":
			v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err = convert(o, v); err == nil {
				g.validating = append(g.validating, v)
			}
		default:
			g.others = append(g.others, o)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	if len(g.deployments) == 0 {
		return errors.New("config/manifests renders no Deployment")
	}
	if len(g.crds) == 0 {
		return errors.New("config/manifests renders no CustomResourceDefinition")
	}
	return nil
}

// install fills the install strategy: the Deployments, and the rules bound to their
// service accounts. Roles bound to nobody else, and those bindings, become part of the
// CSV; everything else is shipped as its own manifest.
func (g *generator) install() error {
	strategy := StrategyDetailsDeployment{}
	accounts := map[string]bool{}
	for _, d := range g.deployments {
		sa := d.Spec.Template.Spec.ServiceAccountName
		if sa == "" || !slices.Contains(g.saNames, sa) {
			return fmt.Errorf("Deployment %s runs as ServiceAccount %q, which config/manifests does not render", d.Name, sa)
		}
		accounts[sa] = true
		strategy.DeploymentSpecs = append(strategy.DeploymentSpecs, StrategyDeploymentSpec{
			Name: d.Name, Spec: d.Spec, Label: d.Labels,
		})
	}
	folded := map[string]bool{}
	perms := map[string][]rbacv1.PolicyRule{}
	clusterPerms := map[string][]rbacv1.PolicyRule{}
	for _, b := range g.bindings {
		var sa string
		for _, s := range b.Subjects {
			if s.Kind == rbacv1.ServiceAccountKind && accounts[s.Name] {
				sa = s.Name
			}
		}
		if sa == "" || len(b.Subjects) != 1 {
			g.others = append(g.others, mustUnstructured(b))
			continue
		}
		roleNS := ""
		if b.RoleRef.Kind == "Role" {
			roleNS = b.Namespace
		}
		k := key(b.RoleRef.Kind, roleNS, b.RoleRef.Name)
		role, ok := g.roles[k]
		if !ok {
			return fmt.Errorf("%s %s refers to %s %s, which config/manifests does not render", b.Kind, b.Name, b.RoleRef.Kind, b.RoleRef.Name)
		}
		r := &rbacv1.ClusterRole{}
		if err := convert(role, r); err != nil {
			return err
		}
		// A RoleBinding to a ClusterRole grants it in the binding's namespace only.
		if b.Kind == "RoleBinding" {
			perms[sa] = append(perms[sa], r.Rules...)
		} else {
			clusterPerms[sa] = append(clusterPerms[sa], r.Rules...)
		}
		folded[k] = true
	}
	for _, sa := range sortedKeys(accounts) {
		if rules := perms[sa]; len(rules) > 0 {
			strategy.Permissions = append(strategy.Permissions, StrategyDeploymentPermissions{ServiceAccountName: sa, Rules: rules})
		}
		if rules := clusterPerms[sa]; len(rules) > 0 {
			strategy.ClusterPermissions = append(strategy.ClusterPermissions, StrategyDeploymentPermissions{ServiceAccountName: sa, Rules: rules})
		}
	}
	for _, k := range sortedKeys(g.roles) {
		if !folded[k] {
			g.others = append(g.others, g.roles[k])
		}
	}
	g.csv.Spec.InstallStrategy = NamedInstallStrategy{StrategyName: InstallStrategyNameDeployment, StrategySpec: strategy}
	return nil
}

// webhooks turns the webhook configurations and the CRDs' conversion webhooks into
// webhookdefinitions. OLM creates the configurations, a Service in front of the
// Deployment and the certificate; the webhook Service of config/ is dropped.
func (g *generator) webhooks() error {
	webhookServices := map[string]bool{}
	var defs []WebhookDescription
	ref := func(what string, s *admissionregistrationv1.ServiceReference) (string, int32, *intstr.IntOrString, error) {
		if s == nil {
			return "", 0, nil, fmt.Errorf("%s calls a URL: OLM only serves webhooks from the operator's Deployment", what)
		}
		webhookServices[key("Service", s.Namespace, s.Name)] = true
		return g.backend(what, s.Namespace, s.Name, s.Port)
	}
	for _, m := range g.mutating {
		for _, w := range m.Webhooks {
			dep, port, target, err := ref("webhook "+w.Name, w.ClientConfig.Service)
			if err != nil {
				return err
			}
			defs = append(defs, WebhookDescription{
				GenerateName: w.Name, Type: MutatingAdmissionWebhook, DeploymentName: dep, ContainerPort: port, TargetPort: target,
				Rules: w.Rules, FailurePolicy: w.FailurePolicy, MatchPolicy: w.MatchPolicy, ObjectSelector: w.ObjectSelector,
				SideEffects: w.SideEffects, TimeoutSeconds: w.TimeoutSeconds, AdmissionReviewVersions: w.AdmissionReviewVersions,
				ReinvocationPolicy: w.ReinvocationPolicy, WebhookPath: w.ClientConfig.Service.Path,
			})
		}
	}
	for _, v := range g.validating {
		for _, w := range v.Webhooks {
			dep, port, target, err := ref("webhook "+w.Name, w.ClientConfig.Service)
			if err != nil {
				return err
			}
			defs = append(defs, WebhookDescription{
				GenerateName: w.Name, Type: ValidatingAdmissionWebhook, DeploymentName: dep, ContainerPort: port, TargetPort: target,
				Rules: w.Rules, FailurePolicy: w.FailurePolicy, MatchPolicy: w.MatchPolicy, ObjectSelector: w.ObjectSelector,
				SideEffects: w.SideEffects, TimeoutSeconds: w.TimeoutSeconds, AdmissionReviewVersions: w.AdmissionReviewVersions,
				WebhookPath: w.ClientConfig.Service.Path,
			})
		}
	}
	for _, crd := range g.crds {
		c := crd.Spec.Conversion
		if c == nil || c.Strategy != apiextensionsv1.WebhookConverter {
			continue
		}
		if c.Webhook == nil || c.Webhook.ClientConfig == nil || c.Webhook.ClientConfig.Service == nil {
			return fmt.Errorf("CRD %s converts by webhook but names no Service", crd.Name)
		}
		s := c.Webhook.ClientConfig.Service
		webhookServices[key("Service", s.Namespace, s.Name)] = true
		dep, port, target, err := g.backend("the conversion webhook of "+crd.Name, s.Namespace, s.Name, s.Port)
		if err != nil {
			return err
		}
		none := admissionregistrationv1.SideEffectClassNone
		fail := admissionregistrationv1.Fail
		defs = append(defs, WebhookDescription{
			GenerateName: "c" + crd.Spec.Names.Singular + "." + crd.Spec.Group, Type: ConversionWebhook,
			DeploymentName: dep, ContainerPort: port, TargetPort: target, SideEffects: &none, FailurePolicy: &fail,
			AdmissionReviewVersions: c.Webhook.ConversionReviewVersions, WebhookPath: s.Path, ConversionCRDs: []string{crd.Name},
		})
	}
	sort.SliceStable(defs, func(i, j int) bool {
		if defs[i].Type != defs[j].Type {
			return defs[i].Type < defs[j].Type
		}
		return defs[i].GenerateName < defs[j].GenerateName
	})
	g.csv.Spec.WebhookDefinitions = defs

	for _, s := range g.services {
		if !webhookServices[key("Service", s.Namespace, s.Name)] {
			g.others = append(g.others, mustUnstructured(s))
		}
	}
	for _, o := range g.others {
		if err := g.manifest(o); err != nil {
			return err
		}
	}
	return nil
}

// backend finds the Deployment behind a webhook Service and the port mapping.
func (g *generator) backend(what, ns, name string, port *int32) (string, int32, *intstr.IntOrString, error) {
	var svc *corev1.Service
	for _, s := range g.services {
		if s.Namespace == ns && s.Name == name {
			svc = s
		}
	}
	if svc == nil {
		return "", 0, nil, fmt.Errorf("%s calls Service %s/%s, which config/manifests does not render", what, ns, name)
	}
	want := int32(443)
	if port != nil {
		want = *port
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == want {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return "", 0, nil, fmt.Errorf("%s calls port %d of Service %s, which has no such port", what, want, name)
	}
	target := sp.TargetPort
	for _, d := range g.deployments {
		if selects(svc.Spec.Selector, d.Spec.Template.Labels) {
			return d.Name, sp.Port, &target, nil
		}
	}
	return "", 0, nil, fmt.Errorf("Service %s selects no Deployment of config/manifests", name)
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// manifest ships an object as its own file, named as operator-sdk names them. OLM
// creates namespaced ones in the install namespace.
func (g *generator) manifest(o *unstructured.Unstructured) error {
	o = o.DeepCopy()
	o.SetNamespace("")
	gvk := o.GroupVersionKind()
	gv := gvk.Version
	if gvk.Group != "" {
		gv = gvk.Group + "_" + gvk.Version
	}
	name := fmt.Sprintf("%s_%s_%s.yaml", o.GetName(), gv, strings.ToLower(gvk.Kind))
	if _, dup := g.files[filepath.Join(ManifestsDir, name)]; dup {
		return fmt.Errorf("two manifests named %s", name)
	}
	data, err := marshalYAML(o.Object)
	if err != nil {
		return err
	}
	g.files[filepath.Join(ManifestsDir, name)] = data
	return nil
}

// ownedCRDs lists every served version of every CRD, with the base's display name and
// description of its kind, and the status fields every dapr.io kind has.
func (g *generator) ownedCRDs() error {
	base := map[string]CRDDescription{}
	for _, d := range g.csv.Spec.CustomResourceDefinitions.Owned {
		base[d.Kind] = d
	}
	var owned []CRDDescription
	sort.Slice(g.crds, func(i, j int) bool { return g.crds[i].Name < g.crds[j].Name })
	for _, crd := range g.crds {
		b, ok := base[crd.Spec.Names.Kind]
		if !ok || b.Description == "" || b.DisplayName == "" {
			return fmt.Errorf("%s has no displayName and description for kind %s under spec.customresourcedefinitions.owned", BaseCSVPath, crd.Spec.Names.Kind)
		}
		delete(base, crd.Spec.Names.Kind)
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			d := b
			d.Name, d.Version, d.Kind = crd.Name, v.Name, crd.Spec.Names.Kind
			d.StatusDescriptors = append(slices.Clone(b.StatusDescriptors), statusDescriptors(v)...)
			owned = append(owned, d)
		}
	}
	for kind := range base {
		return fmt.Errorf("%s describes kind %s, which config/manifests does not render", BaseCSVPath, kind)
	}
	g.csv.Spec.CustomResourceDefinitions.Owned = owned
	return nil
}

// statusDescriptors points the console at the conditions and observedGeneration that
// the operator reports on every dapr.io kind.
func statusDescriptors(v apiextensionsv1.CustomResourceDefinitionVersion) []StatusDescriptor {
	if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		return nil
	}
	status, ok := v.Schema.OpenAPIV3Schema.Properties["status"]
	if !ok {
		return nil
	}
	var out []StatusDescriptor
	if _, ok := status.Properties["conditions"]; ok {
		out = append(out, StatusDescriptor{Path: "conditions", DisplayName: "Conditions",
			Description:  "Ready says whether the resource was accepted, with the reason when it was not.",
			XDescriptors: []string{"urn:alm:descriptor:io.kubernetes.conditions"}})
	}
	if _, ok := status.Properties["observedGeneration"]; ok {
		out = append(out, StatusDescriptor{Path: "observedGeneration", DisplayName: "Observed Generation",
			Description: "The metadata.generation that the conditions describe."})
	}
	return out
}

// examples sets alm-examples from config/samples, in their order.
func (g *generator) examples(samples []*unstructured.Unstructured) error {
	list := make([]map[string]any, 0, len(samples))
	for _, s := range samples {
		list = append(list, s.Object)
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	g.csv.Annotations["alm-examples"] = string(data)
	return nil
}

func annotations(o Options) []byte {
	var b strings.Builder
	b.WriteString("# Generated by `make bundle` (internal/bundle); do not edit.\nannotations:\n")
	for _, kv := range bundleLabels(o) {
		fmt.Fprintf(&b, "  %s: %s\n", kv[0], kv[1])
	}
	return []byte(b.String())
}

func dockerfile(o Options) []byte {
	var b strings.Builder
	b.WriteString("# Generated by `make bundle` (internal/bundle); do not edit.\n")
	b.WriteString("# The OLM bundle image: docker build -f bundle.Dockerfile -t <bundle image> .\nFROM scratch\n\n")
	for _, kv := range bundleLabels(o) {
		fmt.Fprintf(&b, "LABEL %s=%s\n", kv[0], kv[1])
	}
	b.WriteString("\nCOPY bundle/manifests /manifests/\nCOPY bundle/metadata /metadata/\n")
	return []byte(b.String())
}

func bundleLabels(o Options) [][2]string {
	return [][2]string{
		{"operators.operatorframework.io.bundle.mediatype.v1", "registry+v1"},
		{"operators.operatorframework.io.bundle.manifests.v1", "manifests/"},
		{"operators.operatorframework.io.bundle.metadata.v1", "metadata/"},
		{"operators.operatorframework.io.bundle.package.v1", o.Package},
		{"operators.operatorframework.io.bundle.channels.v1", strings.Join(o.Channels, ",")},
		{"operators.operatorframework.io.bundle.channel.default.v1", o.DefaultChannel},
	}
}

func convert(u *unstructured.Unstructured, into any) error {
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return yaml.UnmarshalStrict(data, into)
}

func mustUnstructured(obj any) *unstructured.Unstructured {
	data, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		panic(err)
	}
	// Typed objects marshal an empty creationTimestamp and status.
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u
}

// marshalYAML writes obj with sorted keys, as kubectl and kustomize do.
func marshalYAML(obj any) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil {
		return nil, err
	}
	pruneEmpty(generic)
	return yaml.Marshal(generic)
}

// pruneEmpty drops what typed Kubernetes structs marshal without anyone having written
// it: a null creationTimestamp and an empty Deployment strategy.
func pruneEmpty(m map[string]any) {
	for k, v := range m {
		switch t := v.(type) {
		case nil:
			if k == "creationTimestamp" {
				delete(m, k)
			}
		case map[string]any:
			pruneEmpty(t)
			if len(t) == 0 && k == "strategy" {
				delete(m, k)
			}
		case []any:
			for _, e := range t {
				if em, ok := e.(map[string]any); ok {
					pruneEmpty(em)
				}
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
