// Package scheme builds the one runtime.Scheme the operator, the local control plane and
// the envtest suites share: the built-in kinds, CRDs and the dapr.io kinds.
package scheme

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	daprv2alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v2alpha1"
)

// New returns a scheme with every kind Outrigger reads or writes.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(daprv1alpha1.AddToScheme(s))
	utilruntime.Must(daprv2alpha1.AddToScheme(s))
	return s
}
