package bundle

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/blang/semver/v4"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Validate checks a CSV against the bundle's CRDs the way OLM and the operator-framework
// validators (csv, bundle, operatorhub) do, for the fields this bundle uses: what OLM
// would refuse to install, and what OperatorHub would refuse to list.
func Validate(csv *ClusterServiceVersion, crds []*apiextensionsv1.CustomResourceDefinition) []error {
	v := &validator{}
	v.metadata(csv)
	v.installModes(csv)
	v.install(csv)
	owned := v.owned(csv, crds)
	v.webhooks(csv, crds, owned)
	v.examples(csv, owned)
	return v.errs
}

type validator struct{ errs []error }

func (v *validator) errorf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

func (v *validator) metadata(csv *ClusterServiceVersion) {
	if csv.APIVersion != "operators.coreos.com/v1alpha1" || csv.Kind != "ClusterServiceVersion" {
		v.errorf("apiVersion/kind = %s/%s, want operators.coreos.com/v1alpha1/ClusterServiceVersion", csv.APIVersion, csv.Kind)
	}
	ver, err := semver.Parse(csv.Spec.Version)
	if err != nil {
		v.errorf("spec.version %q: %v", csv.Spec.Version, err)
	}
	if pkg, ok := strings.CutSuffix(csv.Name, ".v"+csv.Spec.Version); !ok || pkg == "" || err != nil {
		v.errorf("metadata.name %q is not <package>.v<spec.version>", csv.Name)
	} else if errs := validation.IsDNS1123Subdomain(csv.Name); len(errs) > 0 {
		v.errorf("metadata.name %q: %s", csv.Name, strings.Join(errs, "; "))
	}
	_ = ver
	for field, value := range map[string]string{
		"spec.displayName": csv.Spec.DisplayName, "spec.description": csv.Spec.Description,
		"spec.maturity": csv.Spec.Maturity, "spec.provider.name": csv.Spec.Provider.Name,
		"metadata.annotations.capabilities":   csv.Annotations["capabilities"],
		"metadata.annotations.categories":     csv.Annotations["categories"],
		"metadata.annotations.description":    csv.Annotations["description"],
		"metadata.annotations.containerImage": csv.Annotations["containerImage"],
	} {
		if strings.TrimSpace(value) == "" {
			v.errorf("%s is empty", field)
		}
	}
	capabilities := []string{"Basic Install", "Seamless Upgrades", "Full Lifecycle", "Deep Insights", "Auto Pilot"}
	if c := csv.Annotations["capabilities"]; c != "" && !slices.Contains(capabilities, c) {
		v.errorf("capabilities %q is not one of %v", c, capabilities)
	}
	if _, err := semver.ParseTolerant(csv.Spec.MinKubeVersion); err != nil {
		v.errorf("spec.minKubeVersion %q: %v", csv.Spec.MinKubeVersion, err)
	}
	if len(csv.Spec.Keywords) == 0 {
		v.errorf("spec.keywords is empty")
	}
	links := append(slices.Clone(csv.Spec.Links), csv.Spec.Provider)
	for _, l := range links {
		if u, err := url.Parse(l.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			v.errorf("link %q has no https URL: %q", l.Name, l.URL)
		}
	}
	for _, m := range csv.Spec.Maintainers {
		if m.Name == "" || !strings.Contains(m.Email, "@") {
			v.errorf("maintainer %+v needs a name and an email", m)
		}
	}
	image := csv.Annotations["containerImage"]
	if image != "" && !slices.ContainsFunc(csv.Spec.RelatedImages, func(r RelatedImage) bool { return r.Image == image }) {
		v.errorf("relatedImages lacks the containerImage %s", image)
	}
}

func (v *validator) installModes(csv *ClusterServiceVersion) {
	seen := map[InstallModeType]bool{}
	supported := 0
	for _, m := range csv.Spec.InstallModes {
		if seen[m.Type] {
			v.errorf("install mode %s is listed twice", m.Type)
		}
		seen[m.Type] = true
		if m.Supported {
			supported++
		}
	}
	for _, t := range []InstallModeType{InstallModeOwnNamespace, InstallModeSingleNamespace, InstallModeMultiNamespace, InstallModeAllNamespaces} {
		if !seen[t] {
			v.errorf("install mode %s is not listed", t)
		}
	}
	if len(seen) != 4 {
		v.errorf("installModes lists %d modes, want the 4 OLM knows", len(seen))
	}
	if supported == 0 {
		v.errorf("no install mode is supported")
	}
}

func (v *validator) install(csv *ClusterServiceVersion) {
	s := csv.Spec.InstallStrategy
	if s.StrategyName != InstallStrategyNameDeployment {
		v.errorf("install.strategy = %q, want %q", s.StrategyName, InstallStrategyNameDeployment)
	}
	if len(s.StrategySpec.DeploymentSpecs) == 0 {
		v.errorf("install.spec.deployments is empty")
	}
	accounts := map[string]bool{}
	names := map[string]bool{}
	for _, d := range s.StrategySpec.DeploymentSpecs {
		if names[d.Name] {
			v.errorf("deployment %s is listed twice", d.Name)
		}
		names[d.Name] = true
		if errs := validation.IsDNS1123Subdomain(d.Name); len(errs) > 0 {
			v.errorf("deployment name %q: %s", d.Name, strings.Join(errs, "; "))
		}
		spec := d.Spec
		if spec.Selector == nil || len(spec.Selector.MatchLabels) == 0 {
			v.errorf("deployment %s has no selector", d.Name)
		} else if !selects(spec.Selector.MatchLabels, spec.Template.Labels) {
			v.errorf("deployment %s's selector does not select its pods", d.Name)
		}
		if len(spec.Template.Spec.Containers) == 0 {
			v.errorf("deployment %s has no containers", d.Name)
		}
		for _, c := range spec.Template.Spec.Containers {
			if c.Image == "" {
				v.errorf("deployment %s container %s has no image", d.Name, c.Name)
			}
		}
		accounts[spec.Template.Spec.ServiceAccountName] = true
	}
	for _, p := range append(slices.Clone(s.StrategySpec.Permissions), s.StrategySpec.ClusterPermissions...) {
		if !accounts[p.ServiceAccountName] {
			v.errorf("permissions of %q, which no deployment runs as", p.ServiceAccountName)
		}
		if len(p.Rules) == 0 {
			v.errorf("permissions of %q have no rules", p.ServiceAccountName)
		}
		for _, r := range p.Rules {
			if len(r.Verbs) == 0 || (len(r.Resources) == 0 && len(r.NonResourceURLs) == 0) {
				v.errorf("rule %+v of %q grants nothing", r, p.ServiceAccountName)
			}
		}
	}
}

type gvk struct{ group, version, kind string }

func (v *validator) owned(csv *ClusterServiceVersion, crds []*apiextensionsv1.CustomResourceDefinition) map[gvk]bool {
	served := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for _, crd := range crds {
		served[crd.Name] = crd
	}
	owned := map[gvk]bool{}
	listed := map[string]bool{}
	for _, d := range csv.Spec.CustomResourceDefinitions.Owned {
		crd, ok := served[d.Name]
		if !ok {
			v.errorf("owned CRD %s is not in the bundle", d.Name)
			continue
		}
		listed[d.Name] = true
		if d.Kind != crd.Spec.Names.Kind {
			v.errorf("owned CRD %s has kind %s, the CRD says %s", d.Name, d.Kind, crd.Spec.Names.Kind)
		}
		if !slices.ContainsFunc(crd.Spec.Versions, func(ver apiextensionsv1.CustomResourceDefinitionVersion) bool {
			return ver.Name == d.Version && ver.Served
		}) {
			v.errorf("owned CRD %s version %s is not served", d.Name, d.Version)
		}
		if d.DisplayName == "" || d.Description == "" {
			v.errorf("owned CRD %s %s needs a displayName and a description", d.Name, d.Version)
		}
		k := gvk{crd.Spec.Group, d.Version, d.Kind}
		if owned[k] {
			v.errorf("owned CRD %s %s is listed twice", d.Name, d.Version)
		}
		owned[k] = true
	}
	for name := range served {
		if !listed[name] {
			v.errorf("CRD %s is in the bundle but not owned by the CSV", name)
		}
	}
	return owned
}

func (v *validator) webhooks(csv *ClusterServiceVersion, crds []*apiextensionsv1.CustomResourceDefinition, owned map[gvk]bool) {
	deployments := map[string]bool{}
	for _, d := range csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs {
		deployments[d.Name] = true
	}
	allNamespaces := slices.ContainsFunc(csv.Spec.InstallModes, func(m InstallMode) bool {
		return m.Type == InstallModeAllNamespaces && m.Supported
	})
	names := map[string]bool{}
	converted := map[string]bool{}
	for _, w := range csv.Spec.WebhookDefinitions {
		if errs := validation.IsDNS1123Subdomain(w.GenerateName); len(errs) > 0 {
			v.errorf("webhook generateName %q: %s", w.GenerateName, strings.Join(errs, "; "))
		}
		if names[w.GenerateName] {
			v.errorf("webhook %s is defined twice", w.GenerateName)
		}
		names[w.GenerateName] = true
		if !deployments[w.DeploymentName] {
			v.errorf("webhook %s is served by deployment %q, which the install strategy lacks", w.GenerateName, w.DeploymentName)
		}
		if w.ContainerPort <= 0 || w.ContainerPort > 65535 {
			v.errorf("webhook %s containerPort %d", w.GenerateName, w.ContainerPort)
		}
		if w.WebhookPath == nil || !strings.HasPrefix(*w.WebhookPath, "/") {
			v.errorf("webhook %s has no path", w.GenerateName)
		}
		if !slices.Contains(w.AdmissionReviewVersions, "v1") {
			v.errorf("webhook %s does not accept review version v1: %v", w.GenerateName, w.AdmissionReviewVersions)
		}
		if w.SideEffects == nil || (*w.SideEffects != admissionregistrationv1.SideEffectClassNone && *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun) {
			v.errorf("webhook %s sideEffects must be None or NoneOnDryRun", w.GenerateName)
		}
		switch w.Type {
		case ValidatingAdmissionWebhook, MutatingAdmissionWebhook:
			if len(w.Rules) == 0 {
				v.errorf("webhook %s has no rules", w.GenerateName)
			}
			if len(w.ConversionCRDs) > 0 {
				v.errorf("admission webhook %s lists conversionCRDs", w.GenerateName)
			}
			if w.ReinvocationPolicy != nil && w.Type == ValidatingAdmissionWebhook {
				v.errorf("validating webhook %s sets reinvocationPolicy", w.GenerateName)
			}
		case ConversionWebhook:
			if !allNamespaces {
				v.errorf("conversion webhook %s needs the AllNamespaces install mode", w.GenerateName)
			}
			if len(w.ConversionCRDs) == 0 {
				v.errorf("conversion webhook %s lists no conversionCRDs", w.GenerateName)
			}
			for _, name := range w.ConversionCRDs {
				if converted[name] {
					v.errorf("CRD %s is converted by two webhooks", name)
				}
				converted[name] = true
				if !slices.ContainsFunc(csv.Spec.CustomResourceDefinitions.Owned, func(d CRDDescription) bool { return d.Name == name }) {
					v.errorf("conversion webhook %s converts %s, which the CSV does not own", w.GenerateName, name)
				}
			}
		default:
			v.errorf("webhook %s has type %q", w.GenerateName, w.Type)
		}
	}
	for _, crd := range crds {
		if c := crd.Spec.Conversion; c != nil && c.Strategy == apiextensionsv1.WebhookConverter && !converted[crd.Name] {
			v.errorf("CRD %s converts by webhook, but no conversion webhook lists it", crd.Name)
		}
	}
}

func (v *validator) examples(csv *ClusterServiceVersion, owned map[gvk]bool) {
	raw := csv.Annotations["alm-examples"]
	if raw == "" {
		v.errorf("metadata.annotations.alm-examples is empty")
		return
	}
	var examples []map[string]any
	if err := json.Unmarshal([]byte(raw), &examples); err != nil {
		v.errorf("alm-examples is not a JSON list of objects: %v", err)
		return
	}
	kinds := map[gvk]bool{}
	for i, e := range examples {
		u := &unstructured.Unstructured{Object: e}
		k := u.GroupVersionKind()
		if u.GetName() == "" {
			v.errorf("alm-examples[%d] has no name", i)
		}
		if !owned[gvk{k.Group, k.Version, k.Kind}] {
			v.errorf("alm-examples[%d] is a %s, which the CSV does not own", i, k)
		}
		kinds[gvk{k.Group, k.Version, k.Kind}] = true
	}
	for k := range owned {
		if !kinds[k] {
			v.errorf("alm-examples has no %s %s/%s", k.kind, k.group, k.version)
		}
	}
}
