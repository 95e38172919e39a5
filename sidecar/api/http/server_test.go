package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/api/apitest"
	httpapi "github.com/outrigger-dev/outrigger/sidecar/api/http"
)

const testTimeout = 10 * time.Second

var testMetadata = api.Metadata{
	ID:              "myapp",
	RuntimeVersion:  "1.2.3",
	EnabledFeatures: []string{"FeatureA"},
	Components: []api.Component{
		{Name: "statestore", Type: "state.in-memory", Version: "v1", Capabilities: []string{"ETAG", "TRANSACTIONAL", "TTL", "QUERY_API"}},
	},
	FailedComponents: []api.FailedComponent{{Name: "broken", Type: "state.redis", Version: "v1", Error: "dial tcp: connection refused"}},
	Extended:         map[string]string{"app": "x"},
	AppConnectionProperties: api.AppConnectionProperties{
		Port: 8080, Protocol: "http", ChannelAddress: "127.0.0.1", MaxConcurrency: 4,
		Health: &api.AppHealth{HealthCheckPath: "/healthz", HealthProbeInterval: "5s", HealthProbeTimeout: "500ms", HealthThreshold: 3},
	},
}

// response is one HTTP exchange's outcome.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorCode decodes Dapr's error body; "" when the body is not one.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	if len(r.body) == 0 {
		return ""
	}
	var e struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		return ""
	}
	if e.ErrorCode != "" {
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("error Content-Type = %q, want application/json", ct)
		}
		if e.Message == "" {
			t.Errorf("error %s has no message", e.ErrorCode)
		}
	}
	return e.ErrorCode
}

func do(t *testing.T, h http.Handler, method, target string, body string, header http.Header) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequestWithContext(ctx, method, target, rd)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func TestHealthz(t *testing.T) {
	notReady := errors.New("components are not loaded yet")
	tests := []struct {
		name               string
		healthy, outbound  error
		target             string
		wantStatus         int
		wantCode           string
		wantMessageContain string
	}{
		{name: "healthy", target: "/v1.0/healthz", wantStatus: 204},
		{name: "not healthy", healthy: notReady, outbound: notReady, target: "/v1.0/healthz", wantStatus: 500, wantCode: "ERR_HEALTH_NOT_READY", wantMessageContain: "components are not loaded yet"},
		{name: "app not up, outbound ready", healthy: errors.New("app channel is not up yet"), target: "/v1.0/healthz/outbound", wantStatus: 204},
		{name: "outbound not ready", healthy: notReady, outbound: notReady, target: "/v1.0/healthz/outbound", wantStatus: 500, wantCode: "ERR_OUTBOUND_HEALTH_NOT_READY"},
		{name: "appid matches", target: "/v1.0/healthz?appid=myapp", wantStatus: 204},
		{name: "appid does not match", target: "/v1.0/healthz?appid=other", wantStatus: 500, wantCode: "ERR_HEALTH_APPID_NOT_MATCH"},
		{name: "trailing slash", target: "/v1.0/healthz/", wantStatus: 204},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := apitest.NewRuntime(testMetadata)
			rt.SetHealth(tc.healthy, tc.outbound)
			for name, h := range map[string]http.Handler{
				"api":    httpapi.New(rt, api.Blocks{}, api.Options{}, logr.Discard()),
				"public": httpapi.ServePublic(rt),
			} {
				res := do(t, h, http.MethodGet, tc.target, "", nil)
				if name == "public" && strings.HasSuffix(tc.target, "/") {
					continue // the public port has no trailing-slash fallback
				}
				if res.status != tc.wantStatus {
					t.Errorf("%s: status = %d, want %d (body %s)", name, res.status, tc.wantStatus, res.body)
				}
				if got := res.errorCode(t); got != tc.wantCode {
					t.Errorf("%s: errorCode = %q, want %q", name, got, tc.wantCode)
				}
				if tc.wantMessageContain != "" && !bytes.Contains(res.body, []byte(tc.wantMessageContain)) {
					t.Errorf("%s: body %s does not contain %q", name, res.body, tc.wantMessageContain)
				}
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	h := httpapi.New(rt, api.Blocks{}, api.Options{}, logr.Discard())

	if res := do(t, h, http.MethodPut, "/v1.0/metadata/color", "blue", nil); res.status != 204 {
		t.Fatalf("PUT metadata: status = %d, want 204 (body %s)", res.status, res.body)
	}
	// Dapr decodes path parameters with url.QueryUnescape.
	if res := do(t, h, http.MethodPut, "/v1.0/metadata/a%2Fb+c", "v", nil); res.status != 204 {
		t.Fatalf("PUT metadata: status = %d, want 204", res.status)
	}

	for _, handler := range []http.Handler{h, httpapi.ServePublic(rt)} {
		res := do(t, handler, http.MethodGet, "/v1.0/metadata", "", nil)
		if res.status != 200 || res.header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET metadata: status %d, Content-Type %q", res.status, res.header.Get("Content-Type"))
		}
		var got map[string]any
		if err := json.Unmarshal(res.body, &got); err != nil {
			t.Fatalf("GET metadata: %v: %s", err, res.body)
		}
		want := map[string]any{
			"id":              "myapp",
			"runtimeVersion":  "1.2.3",
			"enabledFeatures": []any{"FeatureA"},
			"components": []any{map[string]any{
				"name": "statestore", "type": "state.in-memory", "version": "v1",
				"capabilities": []any{"ETAG", "TRANSACTIONAL", "TTL", "QUERY_API"},
			}},
			"failedComponents": []any{map[string]any{
				"name": "broken", "type": "state.redis", "version": "v1", "error": "dial tcp: connection refused",
			}},
			"extended": map[string]any{"app": "x", "color": "blue", "a/b c": "v", "daprRuntimeVersion": "1.2.3"},
			"appConnectionProperties": map[string]any{
				"port": float64(8080), "protocol": "http", "channelAddress": "127.0.0.1", "maxConcurrency": float64(4),
				"health": map[string]any{
					"healthCheckPath": "/healthz", "healthProbeInterval": "5s", "healthProbeTimeout": "500ms", "healthThreshold": float64(3),
				},
			},
			"actorRuntime": map[string]any{"runtimeStatus": "DISABLED", "hostReady": false},
		}
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(want)
		if !bytes.Equal(gotJSON, wantJSON) {
			t.Errorf("GET metadata:\n got %s\nwant %s", gotJSON, wantJSON)
		}
	}
}

func TestShutdown(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	srv := httptest.NewServer(httpapi.New(rt, api.Blocks{}, api.Options{}, logr.Discard()))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1.0/shutdown", nil)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != 204 {
		t.Fatalf("status = %d, want 204", res.StatusCode)
	}
	select {
	case <-rt.ShutdownCalled():
	case <-ctx.Done():
		t.Fatal("Shutdown was not called")
	}
}

func TestAPIToken(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	h := httpapi.New(rt, api.Blocks{}, api.Options{APIToken: "s3cret"}, logr.Discard())
	tests := []struct {
		name       string
		method     string
		target     string
		token      string
		wantStatus int
		wantCode   string
	}{
		{name: "metadata without token", method: "GET", target: "/v1.0/metadata", wantStatus: 401, wantCode: "ERR_UNAUTHORIZED"},
		{name: "metadata with wrong token", method: "GET", target: "/v1.0/metadata", token: "nope", wantStatus: 401, wantCode: "ERR_UNAUTHORIZED"},
		{name: "metadata with token", method: "GET", target: "/v1.0/metadata", token: "s3cret", wantStatus: 200},
		{name: "state without token", method: "GET", target: "/v1.0/state/statestore/k", wantStatus: 401, wantCode: "ERR_UNAUTHORIZED"},
		{name: "shutdown without token", method: "POST", target: "/v1.0/shutdown", wantStatus: 401, wantCode: "ERR_UNAUTHORIZED"},
		{name: "healthz exempt", method: "GET", target: "/v1.0/healthz", wantStatus: 204},
		{name: "healthz outbound exempt", method: "GET", target: "/v1.0/healthz/outbound", wantStatus: 204},
		{name: "healthz exempt only for GET", method: "POST", target: "/v1.0/healthz", wantStatus: 401, wantCode: "ERR_UNAUTHORIZED"},
		{name: "unknown route without token", method: "GET", target: "/v1.0/nothing", wantStatus: 401, wantCode: "ERR_UNAUTHORIZED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			if tc.token != "" {
				hdr.Set("dapr-api-token", tc.token)
			}
			res := do(t, h, tc.method, tc.target, "", hdr)
			if res.status != tc.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", res.status, tc.wantStatus, res.body)
			}
			if got := res.errorCode(t); got != tc.wantCode {
				t.Errorf("errorCode = %q, want %q", got, tc.wantCode)
			}
		})
	}
	t.Run("public port needs no token", func(t *testing.T) {
		res := do(t, httpapi.ServePublic(rt), "GET", "/v1.0/metadata", "", nil)
		if res.status != 200 {
			t.Errorf("status = %d, want 200", res.status)
		}
	})
}

func TestUnknownRoutes(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	h := httpapi.New(rt, api.Blocks{}, api.Options{}, logr.Discard())
	tests := []struct {
		method, target string
	}{
		{"GET", "/v1.0/nothing"},
		{"GET", "/"},
		{"PATCH", "/v1.0/state/statestore"},
		{"POST", "/v1.0/state/statestore/k/extra"},
		{"GET", "/v2.0/state/statestore/k"},
		{"GET", "/v1.0/metadata/x"},
		{"PUT", "/v1.0/metadata/"},
		{"DELETE", "/v1.0/healthz"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			res := do(t, h, tc.method, tc.target, "", nil)
			if res.status != 404 {
				t.Errorf("status = %d, want 404 (body %s)", res.status, res.body)
			}
			if got := res.errorCode(t); got != "ERR_DIRECT_INVOKE" {
				t.Errorf("errorCode = %q, want ERR_DIRECT_INVOKE", got)
			}
		})
	}
	t.Run("public port", func(t *testing.T) {
		res := do(t, httpapi.ServePublic(rt), "GET", "/v1.0/state/statestore/k", "", nil)
		if res.status != 404 {
			t.Errorf("status = %d, want 404", res.status)
		}
	})
}

// logSink collects funcr's lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lines = append(s.lines, args)
	}, funcr.Options{})
}

func (s *logSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func TestAPILogging(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	sink := &logSink{}
	h := httpapi.New(rt, api.Blocks{}, api.Options{EnableAPILogging: true}, sink.logger())

	do(t, h, "GET", "/v1.0/healthz", "", nil)
	do(t, h, "GET", "/v1.0/healthz/outbound", "", nil)
	if lines := sink.all(); len(lines) != 0 {
		t.Fatalf("health checks were logged: %q", lines)
	}
	do(t, h, "PUT", "/v1.0/metadata/secretkey", "v", nil)
	do(t, h, "GET", "/v1.0/nothing", "", nil)
	lines := sink.all()
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2: %q", len(lines), lines)
	}
	for i, want := range []string{
		`"msg"="HTTP API called" "method"="PUT" "path"="/v1.0/metadata/{key}" "status"=204`,
		`"msg"="HTTP API called" "method"="GET" "path"="/v1.0/nothing" "status"=404`,
	} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], `"duration"=`) {
			t.Errorf("line %d = %s, want %s and a duration", i, lines[i], want)
		}
	}
	if strings.Contains(lines[0], "secretkey") {
		t.Errorf("log line carries the key: %s", lines[0])
	}

	quiet := &logSink{}
	h = httpapi.New(rt, api.Blocks{}, api.Options{}, quiet.logger())
	do(t, h, "GET", "/v1.0/metadata", "", nil)
	if lines := quiet.all(); len(lines) != 0 {
		t.Errorf("API logging disabled, but logged %q", lines)
	}
}
