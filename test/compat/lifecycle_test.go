package compat

import (
	"net/http"
	"strings"
	"testing"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

func TestShutdownThroughAPI(t *testing.T) {
	s := testproc.Start(t, "shutdown", testproc.WriteResources(t, nil), nil)
	s.WaitHealthy(t)
	if code, _, body := testproc.Do(t, http.MethodPost, s.URL("/v1.0/shutdown"), ""); code != http.StatusNoContent {
		t.Fatalf("shutdown: %d %s", code, body)
	}
	if err, out := s.WaitExit(t); err != nil {
		t.Fatalf("exit: %v\n%s", err, out)
	}
}

func TestAPIToken(t *testing.T) {
	s := testproc.Start(t, "token", testproc.WriteResources(t, nil), []string{"DAPR_API_TOKEN=s3cret"})
	s.WaitHealthy(t) // healthz is exempt
	if code, _, body := testproc.Do(t, http.MethodGet, s.URL("/v1.0/metadata"), ""); code != http.StatusUnauthorized || !strings.Contains(body, "errorCode") {
		t.Errorf("without token: %d %s", code, body)
	}
	if code, _, body := testproc.Do(t, http.MethodGet, s.URL("/v1.0/metadata"), "", "dapr-api-token", "s3cret"); code != http.StatusOK {
		t.Errorf("with token: %d %s", code, body)
	}
}

// Bad manifests stop the sidecar at start with a message naming the file and the field.
func TestStartupErrorsNameFileAndField(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "malformed YAML",
			files: map[string]string{"broken.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\nspec: [\n"},
			want:  []string{"broken.yaml"},
		},
		{
			name: "missing required metadata",
			files: map[string]string{"redis.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisPassword
    value: x
`},
			want: []string{"statestore", "redisHost"},
		},
		{
			name: "unknown field",
			files: map[string]string{"typo.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
  metdata: []
`},
			want: []string{"typo.yaml", "metdata"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := testproc.Start(t, "broken", testproc.WriteResources(t, tc.files), nil)
			err, out := s.WaitExit(t)
			if err == nil {
				t.Fatalf("sidecar started; output:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
		})
	}
}

// With ignoreErrors a component that fails to initialise is reported, and the sidecar
// serves the rest.
func TestIgnoreErrorsReportsFailure(t *testing.T) {
	s := testproc.Start(t, "tolerant", testproc.WriteResources(t, map[string]string{"c.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: unreachable
spec:
  type: state.redis
  version: v1
  ignoreErrors: true
  initTimeout: 2s
  metadata:
  - name: redisHost
    value: 127.0.0.1:1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
`}), nil)
	s.WaitHealthy(t)
	code, _, body := testproc.Do(t, http.MethodGet, s.URL("/v1.0/metadata"), "")
	if code != http.StatusOK || !strings.Contains(body, `"unreachable"`) || !strings.Contains(body, "failedComponents") {
		t.Errorf("metadata: %d %s", code, body)
	}
	if code, _, body := testproc.Do(t, http.MethodPost, s.URL("/v1.0/state/statestore"), `[{"key":"a","value":1}]`); code != http.StatusNoContent {
		t.Errorf("the healthy store does not serve: %d %s", code, body)
	}
}
