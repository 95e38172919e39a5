package bundle

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The ClusterServiceVersion of operators.coreos.com/v1alpha1, the fields a registry+v1
// bundle uses, with the JSON names of github.com/operator-framework/api. That module is
// not among the versions this project may fetch, so the types are declared here;
// strict decoding in the tests catches a misspelt field.

// ClusterServiceVersion describes one version of an operator to OLM.
type ClusterServiceVersion struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              CSVSpec `json:"spec"`
}

// CSVSpec is the spec of a ClusterServiceVersion.
type CSVSpec struct {
	InstallStrategy           NamedInstallStrategy      `json:"install"`
	Version                   string                    `json:"version,omitempty"`
	Maturity                  string                    `json:"maturity,omitempty"`
	CustomResourceDefinitions CustomResourceDefinitions `json:"customresourcedefinitions,omitempty"`
	WebhookDefinitions        []WebhookDescription      `json:"webhookdefinitions,omitempty"`
	MinKubeVersion            string                    `json:"minKubeVersion,omitempty"`
	DisplayName               string                    `json:"displayName"`
	Description               string                    `json:"description,omitempty"`
	Keywords                  []string                  `json:"keywords,omitempty"`
	Maintainers               []Maintainer              `json:"maintainers,omitempty"`
	Provider                  AppLink                   `json:"provider,omitempty"`
	Links                     []AppLink                 `json:"links,omitempty"`
	Icon                      []Icon                    `json:"icon,omitempty"`
	InstallModes              []InstallMode             `json:"installModes,omitempty"`
	Replaces                  string                    `json:"replaces,omitempty"`
	Skips                     []string                  `json:"skips,omitempty"`
	RelatedImages             []RelatedImage            `json:"relatedImages,omitempty"`
}

// InstallStrategyNameDeployment is the only install strategy OLM knows.
const InstallStrategyNameDeployment = "deployment"

// NamedInstallStrategy is the install strategy of a CSV.
type NamedInstallStrategy struct {
	StrategyName string                    `json:"strategy"`
	StrategySpec StrategyDetailsDeployment `json:"spec,omitempty"`
}

// StrategyDetailsDeployment lists the Deployments OLM creates and the RBAC it grants
// their service accounts.
type StrategyDetailsDeployment struct {
	DeploymentSpecs    []StrategyDeploymentSpec        `json:"deployments"`
	Permissions        []StrategyDeploymentPermissions `json:"permissions,omitempty"`
	ClusterPermissions []StrategyDeploymentPermissions `json:"clusterPermissions,omitempty"`
}

// StrategyDeploymentSpec is one Deployment of the install strategy.
type StrategyDeploymentSpec struct {
	Name  string                `json:"name"`
	Spec  appsv1.DeploymentSpec `json:"spec"`
	Label map[string]string     `json:"label,omitempty"`
}

// StrategyDeploymentPermissions are the rules of one service account: namespaced
// (permissions, in the install namespace) or cluster-wide (clusterPermissions).
type StrategyDeploymentPermissions struct {
	ServiceAccountName string              `json:"serviceAccountName"`
	Rules              []rbacv1.PolicyRule `json:"rules"`
}

// CustomResourceDefinitions lists the CRDs the operator owns and requires.
type CustomResourceDefinitions struct {
	Owned    []CRDDescription `json:"owned,omitempty"`
	Required []CRDDescription `json:"required,omitempty"`
}

// CRDDescription describes one version of a CRD for the catalogue and the console.
type CRDDescription struct {
	Name              string             `json:"name"`
	Version           string             `json:"version"`
	Kind              string             `json:"kind"`
	DisplayName       string             `json:"displayName,omitempty"`
	Description       string             `json:"description,omitempty"`
	SpecDescriptors   []SpecDescriptor   `json:"specDescriptors,omitempty"`
	StatusDescriptors []StatusDescriptor `json:"statusDescriptors,omitempty"`
}

// SpecDescriptor describes a field of a spec for the console.
type SpecDescriptor struct {
	Path         string   `json:"path"`
	DisplayName  string   `json:"displayName,omitempty"`
	Description  string   `json:"description,omitempty"`
	XDescriptors []string `json:"x-descriptors,omitempty"`
}

// StatusDescriptor describes a field of a status for the console.
type StatusDescriptor struct {
	Path         string   `json:"path"`
	DisplayName  string   `json:"displayName,omitempty"`
	Description  string   `json:"description,omitempty"`
	XDescriptors []string `json:"x-descriptors,omitempty"`
}

// WebhookAdmissionType is the kind of a webhook definition.
type WebhookAdmissionType string

// The webhook kinds OLM creates from webhookdefinitions.
const (
	ValidatingAdmissionWebhook WebhookAdmissionType = "ValidatingAdmissionWebhook"
	MutatingAdmissionWebhook   WebhookAdmissionType = "MutatingAdmissionWebhook"
	ConversionWebhook          WebhookAdmissionType = "ConversionWebhook"
)

// WebhookDescription is a webhook OLM creates, pointing at a Service in front of one of
// the install strategy's Deployments, with a certificate it issues and mounts.
type WebhookDescription struct {
	GenerateName            string                                          `json:"generateName"`
	Type                    WebhookAdmissionType                            `json:"type"`
	DeploymentName          string                                          `json:"deploymentName,omitempty"`
	ContainerPort           int32                                           `json:"containerPort,omitempty"`
	TargetPort              *intstr.IntOrString                             `json:"targetPort,omitempty"`
	Rules                   []admissionregistrationv1.RuleWithOperations    `json:"rules,omitempty"`
	FailurePolicy           *admissionregistrationv1.FailurePolicyType      `json:"failurePolicy,omitempty"`
	MatchPolicy             *admissionregistrationv1.MatchPolicyType        `json:"matchPolicy,omitempty"`
	ObjectSelector          *metav1.LabelSelector                           `json:"objectSelector,omitempty"`
	SideEffects             *admissionregistrationv1.SideEffectClass        `json:"sideEffects"`
	TimeoutSeconds          *int32                                          `json:"timeoutSeconds,omitempty"`
	AdmissionReviewVersions []string                                        `json:"admissionReviewVersions"`
	ReinvocationPolicy      *admissionregistrationv1.ReinvocationPolicyType `json:"reinvocationPolicy,omitempty"`
	WebhookPath             *string                                         `json:"webhookPath,omitempty"`
	ConversionCRDs          []string                                        `json:"conversionCRDs,omitempty"`
}

// Maintainer is a person or team to contact.
type Maintainer struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
}

// AppLink is a named URL.
type AppLink struct {
	Name string `json:"name,omitempty"`
	URL  string `json:"url,omitempty"`
}

// Icon is a base64-encoded image.
type Icon struct {
	Data      string `json:"base64data"`
	MediaType string `json:"mediatype"`
}

// InstallModeType is a way OLM can scope an operator.
type InstallModeType string

// The install modes; a CSV lists each one once.
const (
	InstallModeOwnNamespace    InstallModeType = "OwnNamespace"
	InstallModeSingleNamespace InstallModeType = "SingleNamespace"
	InstallModeMultiNamespace  InstallModeType = "MultiNamespace"
	InstallModeAllNamespaces   InstallModeType = "AllNamespaces"
)

// InstallMode says whether the operator supports one install mode.
type InstallMode struct {
	Type      InstallModeType `json:"type"`
	Supported bool            `json:"supported"`
}

// RelatedImage is an image the operator uses, for mirroring in disconnected clusters.
type RelatedImage struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}
