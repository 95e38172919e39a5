package validation_test

import (
	"testing"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/sidecar/components/builtin"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func env(t *testing.T) *testenv.Env {
	return testenv.Shared(t, func(mgr ctrl.Manager) error {
		builtin.RegisterDefaults() // as the operator does
		return validation.SetupWithManager(mgr)
	})
}
