package compat

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

// idleRSSLimit is the target for a sidecar at rest.
const idleRSSLimit = 30 << 20

// A sidecar with the embedded defaults (state and pub/sub on SQLite) gives back its
// start-up memory once it is up, and then rests under 30 MB resident, still serving.
func TestIdleResidentMemory(t *testing.T) {
	dir := t.TempDir()
	component := func(name, typ, db string) string {
		return fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: %s
  version: v1
  metadata:
  - name: connectionString
    value: %q
`, name, typ, filepath.Join(dir, db))
	}
	s := testproc.Start(t, "idle", testproc.WriteResources(t, map[string]string{
		"statestore.yaml": component("statestore", "state.sqlite", "state.db"),
		"pubsub.yaml":     component("pubsub", "pubsub.sqlite", "pubsub.db"),
	}), nil)
	s.WaitHealthy(t)
	s.WaitOutput(t, testproc.MemoryReleased)

	status, err := testproc.ProcStatus(s.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("idle: VmRSS %d kB (anonymous %d kB, file %d kB)", status["VmRSS"], status["RssAnon"], status["RssFile"])
	if status["VmRSS"]*1024 >= idleRSSLimit {
		t.Errorf("idle resident memory %d kB, want under %d kB", status["VmRSS"], idleRSSLimit>>10)
	}

	// The pages given back come back as they are used.
	if code, _, body := testproc.Do(t, http.MethodPost, s.URL("/v1.0/state/statestore"), `[{"key":"k","value":"v"}]`); code != http.StatusNoContent {
		t.Fatalf("save after the release: %d %s", code, body)
	}
	if code, _, body := testproc.Do(t, http.MethodGet, s.URL("/v1.0/state/statestore/k"), ""); code != http.StatusOK || body != `"v"` {
		t.Fatalf("get after the release: %d %s", code, body)
	}
}
