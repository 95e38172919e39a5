package testenv

import (
	"os"
	"sync"
	"testing"

	ctrl "sigs.k8s.io/controller-runtime"
)

// One control plane per test binary: starting one takes seconds, and tests keep apart
// by working in their own namespaces.
var shared struct {
	once     sync.Once
	env      *Env
	cleanups []func()
}

// suiteTB defers cleanups to Main, so the environment outlives the test that started it.
type suiteTB struct{ *testing.T }

func (suiteTB) Cleanup(f func()) { shared.cleanups = append(shared.cleanups, f) }

// Shared starts the environment on first use, with the setup functions of that first
// call, and returns the same one afterwards. The package's TestMain must call Main.
func Shared(t *testing.T, setup ...func(ctrl.Manager) error) *Env {
	t.Helper()
	shared.once.Do(func() { shared.env = Start(suiteTB{t}, setup...) })
	if shared.env == nil {
		t.Skip("envtest unavailable")
	}
	return shared.env
}

// Main runs the tests, then stops the shared environment.
func Main(m *testing.M) {
	code := m.Run()
	for i := len(shared.cleanups) - 1; i >= 0; i-- {
		shared.cleanups[i]()
	}
	os.Exit(code)
}
