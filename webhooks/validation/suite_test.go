package validation_test

import "testing"

// suiteTB lets the shared environment outlive the first test that starts it: its
// cleanups run when the whole package's tests end, from TestMain.
type suiteTB struct{ *testing.T }

var cleanups []func()

func (s *suiteTB) Cleanup(f func()) { cleanups = append(cleanups, f) }

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	if code != 0 {
		panic(code)
	}
}
