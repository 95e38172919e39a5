package validation_test

import (
	"testing"

	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func env(t *testing.T) *testenv.Env { return testenv.Shared(t, validation.SetupWithManager) }
