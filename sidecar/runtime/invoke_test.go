package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/selfhosted"
)

// mesh is a set of in-process sidecars that find each other through one registry.
type mesh struct {
	t        testing.TB
	registry string
}

func newMesh(t testing.TB) *mesh {
	t.Helper()
	return &mesh{t: t, registry: t.TempDir()}
}

// sidecar starts a sidecar for appID in front of the app at appURL (empty for none),
// with extra flags, and stops it when the test ends.
func (m *mesh) sidecar(appID, appURL string, extra ...string) *Runtime {
	return m.sidecarWith(appID, appURL, nil, extra...)
}

func (m *mesh) sidecarWith(appID, appURL string, setup func(*Runtime), extra ...string) *Runtime {
	t := m.t
	t.Helper()
	args := []string{"--app-id", appID, "--resources-path", t.TempDir(),
		"--dapr-http-port", "0", "--dapr-grpc-port", "0", "--dapr-internal-grpc-port", "0",
		"--dapr-public-port", "0", "--metrics-port", "0", "--enable-metrics=false"}
	if appURL != "" {
		u, err := url.Parse(appURL)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--app-port", u.Port(), "--app-channel-address", u.Hostname())
	}
	args = append(args, extra...)
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	v := Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, a := range extra {
		if k, val, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "env:") {
			env[strings.TrimPrefix(k, "env:")] = val
		}
	}
	cfg, err := v.Finish(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	log := logr.Discard()
	if tt, ok := t.(*testing.T); ok {
		log = testr.NewWithOptions(tt, testr.Options{Verbosity: 0}).WithValues("app", appID)
	}
	rt := New(cfg, log)
	rt.RegistryDir = m.registry
	if setup != nil {
		setup(rt)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	wait, stop := context.WithTimeout(context.Background(), 20*time.Second)
	defer stop()
	select {
	case <-rt.Ready:
	case err := <-done:
		cancel()
		t.Fatalf("sidecar %s stopped: %v", appID, err)
	case <-wait.Done():
		cancel()
		t.Fatalf("sidecar %s did not start", appID)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sidecar %s: %v", appID, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("sidecar %s did not stop", appID)
		}
	})
	return rt
}

func httpURL(rt *Runtime, path string) string { return "http://" + rt.Addr("http").String() + path }

// call makes one HTTP call with a deadline and returns the status, headers and body.
func call(t *testing.T, method, url string, body io.Reader, header ...string) (int, http.Header, string) {
	t.Helper()
	req, cancel := request(t, method, url, body, header...)
	defer cancel()
	resp, b, _ := do(t, req)
	return resp.StatusCode, resp.Header, string(b)
}

// request is an HTTP request with a deadline, which cancel ends, and the header's
// name and value pairs.
func request(t *testing.T, method, url string, body io.Reader, header ...string) (*http.Request, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return req, cancel
}

// do sends req and returns the response with its body read, and the trailers that the
// response announced before its body.
func do(t *testing.T, req *http.Request) (*http.Response, []byte, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	announced := resp.Trailer.Clone()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b, announced
}

// seen is what the echo app received.
type seen struct {
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	RawPath string      `json:"rawPath"`
	Query   string      `json:"query"`
	Header  http.Header `json:"header"`
	Body    string      `json:"body"`
	Length  int64       `json:"length"`
}

// echoApp answers every call with what it received, status 201 and a custom header
// (hop-by-hop headers among them, which must not come back).
func echoApp(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		out, _ := json.Marshal(seen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Header: r.Header, Body: string(b), Length: r.ContentLength})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-App", "echo")
		w.Header().Set("Connection", "X-Conn-Only")
		w.Header().Set("X-Conn-Only", "1")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusTeapot)
		} else {
			w.WriteHeader(http.StatusCreated)
		}
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func decodeSeen(t *testing.T, body string) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("app answer %q: %v", body, err)
	}
	return s
}

func TestInvokeHTTPThroughTwoSidecars(t *testing.T) {
	m := newMesh(t)
	b := m.sidecar("b", echoApp(t).URL, "env:APP_API_TOKEN=app-secret")
	a := m.sidecar("a", "")
	_ = b

	code, h, body := call(t, http.MethodPut, httpURL(a, "/v1.0/invoke/b/method/orders/a%2Fb?x=1&y=two"), strings.NewReader("hello"),
		"Content-Type", "text/plain", "X-Custom", "yes", "Connection", "X-Hop", "X-Hop", "drop me", "Keep-Alive", "timeout=5",
		"Proxy-Authorization", "Basic x", "dapr-caller-app-id", "forged", "Upgrade", "h2c")
	if code != http.StatusCreated {
		t.Fatalf("status %d: %s", code, body)
	}
	s := decodeSeen(t, body)
	if s.Method != http.MethodPut || s.RawPath != "/orders/a%2Fb" || s.Query != "x=1&y=two" || s.Body != "hello" || s.Length != 5 {
		t.Errorf("app saw %+v", s)
	}
	for k, want := range map[string]string{"X-Custom": "yes", "Content-Type": "text/plain", "Dapr-Caller-App-Id": "a",
		"Dapr-Callee-App-Id": "b", "Dapr-Api-Token": "app-secret"} {
		if got := s.Header.Get(k); got != want {
			t.Errorf("app saw %s %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Upgrade"} {
		if v, ok := s.Header[k]; ok {
			t.Errorf("hop-by-hop header %s reached the app: %q", k, v)
		}
	}
	if h.Get("X-App") != "echo" || h.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Errorf("response headers %v", h)
	}
	if _, ok := h["X-Conn-Only"]; ok {
		t.Errorf("a header the app's Connection named came back: %v", h)
	}

	// The app's status passes through, whatever it is.
	if code, _, body := call(t, http.MethodGet, httpURL(a, "/v1.0/invoke/b/method/fail"), nil); code != http.StatusTeapot {
		t.Errorf("status %d: %s", code, body)
	}
	// A HEAD answer announces a length but carries no body.
	if code, h, body := call(t, http.MethodHead, httpURL(a, "/v1.0/invoke/b/method/x"), nil); code != http.StatusCreated || h.Get("Content-Length") == "" || body != "" {
		t.Errorf("HEAD: %d %v %q", code, h, body)
	}
	// app.namespace names the same app.
	if code, _, body := call(t, http.MethodPost, httpURL(a, "/v1.0/invoke/b.default/method/x"), nil); code != http.StatusCreated {
		t.Errorf("b.default: %d %s", code, body)
	}
}

func TestInvokeDaprAppIDHeaderForm(t *testing.T) {
	m := newMesh(t)
	m.sidecar("b", echoApp(t).URL)
	a := m.sidecar("a", "")
	code, _, body := call(t, http.MethodPost, httpURL(a, "/neworder?id=7"), strings.NewReader("{}"), "dapr-app-id", "b")
	if code != http.StatusCreated {
		t.Fatalf("status %d: %s", code, body)
	}
	if s := decodeSeen(t, body); s.Path != "/neworder" || s.Query != "id=7" || s.Body != "{}" {
		t.Errorf("app saw %+v", s)
	}
	// Without the header, an unknown route is still Dapr's 404 ERR_DIRECT_INVOKE.
	if code, _, body := call(t, http.MethodPost, httpURL(a, "/neworder"), nil); code != http.StatusNotFound || !strings.Contains(body, "ERR_DIRECT_INVOKE") {
		t.Errorf("no header: %d %s", code, body)
	}
}

func TestInvokeOwnApp(t *testing.T) {
	m := newMesh(t)
	a := m.sidecar("a", echoApp(t).URL)
	code, _, body := call(t, http.MethodGet, httpURL(a, "/v1.0/invoke/a/method/self"), nil)
	if code != http.StatusCreated || decodeSeen(t, body).Path != "/self" {
		t.Fatalf("status %d: %s", code, body)
	}
}

type errorBody struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

func decodeError(t *testing.T, body string) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e
}

func TestInvokeFailures(t *testing.T) {
	m := newMesh(t)
	// An app port where nothing listens: the app is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + ln.Addr().String()
	_ = ln.Close()
	m.sidecar("down", downURL)
	a := m.sidecar("a", "")

	cases := []struct {
		name, path string
		status     int
		code       string
		msg        []string
	}{
		{name: "unknown app", path: "/v1.0/invoke/nobody/method/x", status: 500, code: "ERR_DIRECT_INVOKE",
			msg: []string{"failed to invoke, id: nobody, err: ", "app not found"}},
		{name: "app down", path: "/v1.0/invoke/down/method/x", status: 500, code: "ERR_DIRECT_INVOKE",
			msg: []string{"failed to invoke, id: down, err: error invoking app channel", "connection refused"}},
		{name: "own app absent", path: "/v1.0/invoke/a/method/x", status: 500, code: "ERR_DIRECT_INVOKE",
			msg: []string{"failed to invoke, id: a, err: app channel is not initialized"}},
		{name: "invalid app id", path: "/v1.0/invoke/a.b.c/method/x", status: 500, code: "ERR_DIRECT_INVOKE",
			msg: []string{"invalid app id a.b.c"}},
		{name: "no method", path: "/v1.0/invoke/b", status: 404, code: "ERR_DIRECT_INVOKE",
			msg: []string{"failed getting app id"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := call(t, http.MethodPost, httpURL(a, tc.path), strings.NewReader("x"))
			e := decodeError(t, body)
			if code != tc.status || e.ErrorCode != tc.code {
				t.Fatalf("got %d %s", code, body)
			}
			for _, want := range tc.msg {
				if !strings.Contains(e.Message, want) {
					t.Errorf("message %q lacks %q", e.Message, want)
				}
			}
		})
	}
}

const aclConfig = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: a
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /orders/**
        httpVerb: ["POST", "GET"]
        action: allow
      - name: /admin
        httpVerb: ["*"]
        action: deny
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInvokeAccessControl(t *testing.T) {
	m := newMesh(t)
	m.sidecar("b", echoApp(t).URL, "--config", writeFile(t, "config.yaml", aclConfig))
	a := m.sidecar("a", "")
	c := m.sidecar("c", "")

	cases := []struct {
		name   string
		from   *Runtime
		method string
		path   string
		header []string
		allow  bool
	}{
		{name: "allowed operation and verb", from: a, method: http.MethodPost, path: "orders/1", allow: true},
		{name: "allowed prefix, case-insensitive", from: a, method: http.MethodGet, path: "Orders/1/items", allow: true},
		{name: "verb not listed", from: a, method: http.MethodDelete, path: "orders/1"},
		{name: "operation not listed", from: a, method: http.MethodPost, path: "other"},
		{name: "denied operation", from: a, method: http.MethodGet, path: "admin"},
		{name: "app without policy", from: c, method: http.MethodPost, path: "orders/1"},
		{name: "forged caller header", from: c, method: http.MethodPost, path: "orders/1", header: []string{"dapr-caller-app-id", "a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := call(t, tc.method, httpURL(tc.from, "/v1.0/invoke/b/method/"+tc.path), nil, tc.header...)
			if tc.allow {
				if code != http.StatusCreated {
					t.Fatalf("denied: %d %s", code, body)
				}
				return
			}
			e := decodeError(t, body)
			if code != http.StatusForbidden || e.ErrorCode != "ERR_PERMISSION_DENIED" ||
				!strings.Contains(e.Message, "access control policy has denied access") {
				t.Fatalf("got %d %s", code, body)
			}
		})
	}
}

func TestInvokeHTTPEndpointAndURL(t *testing.T) {
	var mu sync.Mutex
	var got []seen
	ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header, Body: string(b)})
		mu.Unlock()
		_, _ = io.WriteString(w, "external")
	}))
	t.Cleanup(ext.Close)

	resources := t.TempDir()
	endpoint := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: payments
spec:
  baseUrl: %s/api
  headers:
  - name: X-Api-Key
    value: k123
  - name: X-From-Env
    envRef: PAYMENTS_TEST_ENV
`, ext.URL)
	if err := os.WriteFile(filepath.Join(resources, "endpoint.yaml"), []byte(endpoint), 0o600); err != nil {
		t.Fatal(err)
	}
	m := newMesh(t)
	a := m.sidecarWith("a", "", func(rt *Runtime) {
		rt.cfg.ResourcesPaths = []string{resources}
	})
	t.Setenv("PAYMENTS_TEST_ENV", "from-env")

	code, _, body := call(t, http.MethodPost, httpURL(a, "/v1.0/invoke/payments/method/charge?amount=3"), strings.NewReader("pay"))
	if code != http.StatusOK || body != "external" {
		t.Fatalf("endpoint: %d %s", code, body)
	}
	for _, target := range []string{url.QueryEscape(ext.URL), ext.URL} {
		code, _, body := call(t, http.MethodGet, httpURL(a, "/v1.0/invoke/"+target+"/method/direct"), nil)
		if code != http.StatusOK || body != "external" {
			t.Fatalf("URL target %s: %d %s", target, code, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("external service got %d calls", len(got))
	}
	if s := got[0]; s.Path != "/api/charge" || s.Query != "amount=3" || s.Body != "pay" ||
		s.Header.Get("X-Api-Key") != "k123" || s.Header.Get("X-From-Env") != "from-env" {
		t.Errorf("endpoint call %+v", s)
	}
	if got[1].Path != "/direct" || got[2].Path != "/direct" || got[1].Method != http.MethodGet {
		t.Errorf("URL calls %+v %+v", got[1], got[2])
	}
	// The metadata lists the endpoint.
	if _, _, md := call(t, http.MethodGet, httpURL(a, "/v1.0/metadata"), nil); !strings.Contains(md, `"httpEndpoints":[{"name":"payments"}]`) {
		t.Errorf("metadata %s", md)
	}
}

func TestInvokeTraceparent(t *testing.T) {
	m := newMesh(t)
	m.sidecar("b", echoApp(t).URL)
	a := m.sidecar("a", "")

	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	_, h, body := call(t, http.MethodPost, httpURL(a, "/v1.0/invoke/b/method/t"), nil, "traceparent", incoming, "tracestate", "k=v")
	s := decodeSeen(t, body)
	appTP := s.Header.Get("traceparent")
	if !strings.HasPrefix(appTP, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || appTP == incoming || !strings.HasSuffix(appTP, "-01") {
		t.Errorf("app saw traceparent %q", appTP)
	}
	if s.Header.Get("tracestate") != "k=v" {
		t.Errorf("app saw tracestate %q", s.Header.Get("tracestate"))
	}
	if tp := h.Get("traceparent"); !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || tp == incoming {
		t.Errorf("response traceparent %q", tp)
	}

	// Without one, a trace is started and both sides see it.
	_, h, body = call(t, http.MethodPost, httpURL(a, "/v1.0/invoke/b/method/t"), nil)
	appTP = decodeSeen(t, body).Header.Get("traceparent")
	respTP := h.Get("traceparent")
	if len(appTP) != 55 || len(respTP) != 55 || appTP[3:35] != respTP[3:35] {
		t.Errorf("new trace: app %q, response %q", appTP, respTP)
	}
}

func TestGRPCProxying(t *testing.T) {
	// The app is a gRPC server with the standard health service.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	var mdMu sync.Mutex
	var appMD metadata.MD
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		mdMu.Lock()
		appMD = md
		mdMu.Unlock()
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	m := newMesh(t)
	config := writeFile(t, "config.yaml", `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  accessControl:
    defaultAction: allow
    policies:
    - appId: c
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - name: /grpc.health.v1.Health/Check
        action: deny
`)
	b := m.sidecar("b", "http://"+ln.Addr().String(), "--app-protocol", "grpc", "--config", config, "env:APP_API_TOKEN=app-secret")
	a := m.sidecar("a", "")
	c := m.sidecar("c", "")

	check := func(from *Runtime, target string) (*healthpb.HealthCheckResponse, error) {
		conn, err := grpc.NewClient(from.Addr("grpc").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "dapr-app-id", target, "dapr-caller-app-id", "forged")
		return healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "orders"})
	}
	res, err := check(a, "b")
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("proxied check: %v, %v", res, err)
	}
	mdMu.Lock()
	if got := appMD.Get("dapr-caller-app-id"); len(got) != 1 || got[0] != "a" {
		t.Errorf("app saw caller %v", got)
	}
	if got := appMD.Get("dapr-api-token"); len(got) != 1 || got[0] != "app-secret" {
		t.Errorf("app saw token %v", got)
	}
	mdMu.Unlock()

	// The app's own sidecar proxies to it directly.
	if res, err := check(b, "b"); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("own app: %v, %v", res, err)
	}
	if _, err := check(c, "b"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("denied caller: %v", err)
	}
	if _, err := check(a, "nobody"); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "failed to invoke, id: nobody") {
		t.Errorf("unknown app: %v", err)
	}
}

func TestSidecarRegistersItself(t *testing.T) {
	m := newMesh(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	v := Flags(fs)
	_ = fs.Parse([]string{"--app-id", "reg", "--resources-path", t.TempDir(), "--dapr-http-port", "0", "--dapr-grpc-port", "0",
		"--dapr-internal-grpc-port", "0", "--dapr-public-port", "0", "--metrics-port", "0", "--enable-metrics=false"})
	cfg, err := v.Finish(func(k string) string {
		return map[string]string{"OUTRIGGER_RUN_PID": "4242", "OUTRIGGER_APP_COMMAND": "python3 app.py"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	rt := New(cfg, logr.Discard())
	rt.RegistryDir = m.registry
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	select {
	case <-rt.Ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	e, err := selfhosted.Lookup(m.registry, "reg")
	if err != nil {
		t.Fatal(err)
	}
	if e.HTTPPort != rt.Addr("http").(*net.TCPAddr).Port || e.InternalGRPCPort != rt.Addr("internal").(*net.TCPAddr).Port ||
		e.GRPCPort == 0 || e.SidecarPID != os.Getpid() || e.RunPID != 4242 || e.Command != "python3 app.py" {
		t.Errorf("entry %+v", e)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("did not stop")
	}
	if _, err := selfhosted.Lookup(m.registry, "reg"); err == nil {
		t.Error("entry left behind after stop")
	}
}

// An app that answers before reading the request leaves the rest unread; the sidecar
// must neither hang nor let the leftover bytes be read as the caller's next request
// on the same connection.
func TestInvokeEarlyAnswer(t *testing.T) {
	early := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "early")
	}))
	t.Cleanup(early.Close)
	m := newMesh(t)
	m.sidecar("b", early.URL)
	a := m.sidecar("a", early.URL)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	post := func(target string, size int) (int, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, httpURL(a, "/v1.0/invoke/"+target+"/method/upload"),
			bytes.NewReader(bytes.Repeat([]byte("x"), size)))
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got), err
	}
	for _, target := range []string{"a", "b"} {
		for i := 0; i < 3; i++ {
			// A leftover that net/http drains: the connection is reused.
			if code, got, err := post(target, 100<<10); err != nil || code != http.StatusAccepted || got != "early" {
				t.Fatalf("%s, 100 KiB: %d %q %v", target, code, got, err)
			}
			// A leftover too large to drain: the connection is closed. Whether the
			// caller still reads the answer depends on TCP timing (an HTTP/1 upload
			// answered early may be reset), but the next call must work.
			if code, got, err := post(target, 2<<20); err == nil && (code != http.StatusAccepted || got != "early") {
				t.Fatalf("%s, 2 MiB: %d %q", target, code, got)
			}
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within the deadline", what)
		case <-tick.C:
		}
	}
}

func TestAppHealthCheck(t *testing.T) {
	var unhealthy atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			if unhealthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		_, _ = io.WriteString(w, "served")
	}))
	t.Cleanup(app.Close)
	ticks := make(chan time.Time)
	m := newMesh(t)
	b := m.sidecarWith("b", app.URL, func(rt *Runtime) { rt.AppHealthTicks = ticks },
		"--enable-app-health-check", "--app-health-check-path", "/health", "--app-health-threshold", "1",
		"--app-health-probe-interval", "3", "--app-health-probe-timeout", "1000")
	a := m.sidecar("a", "")
	health := func() map[string]any {
		_, _, body := call(t, http.MethodGet, httpURL(b, "/v1.0/metadata"), nil)
		var md struct {
			AppConnectionProperties struct {
				Health map[string]any `json:"health"`
			} `json:"appConnectionProperties"`
		}
		if err := json.Unmarshal([]byte(body), &md); err != nil {
			t.Fatal(err)
		}
		return md.AppConnectionProperties.Health
	}
	eventually(t, "healthy after the first probe", func() bool { return health()["status"] == "healthy" })
	h := health()
	if h["healthCheckPath"] != "/health" || h["healthProbeInterval"] != "3s" || h["healthProbeTimeout"] != "1s" || h["healthThreshold"] != 1.0 {
		t.Errorf("health metadata %v", h)
	}
	if code, _, body := call(t, http.MethodGet, httpURL(a, "/v1.0/invoke/b/method/x"), nil); code != http.StatusOK || body != "served" {
		t.Fatalf("healthy app: %d %s", code, body)
	}

	unhealthy.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case ticks <- time.Now():
	case <-ctx.Done():
		t.Fatal("tick not taken")
	}
	eventually(t, "unhealthy after a failed probe", func() bool { return health()["status"] == "unhealthy" })
	code, _, body := call(t, http.MethodGet, httpURL(a, "/v1.0/invoke/b/method/x"), nil)
	if e := decodeError(t, body); code != http.StatusInternalServerError || e.ErrorCode != "ERR_DIRECT_INVOKE" ||
		!strings.Contains(e.Message, "app is not in a healthy state") {
		t.Fatalf("unhealthy app: %d %s", code, body)
	}

	unhealthy.Store(false)
	select {
	case ticks <- time.Now():
	case <-ctx.Done():
		t.Fatal("tick not taken")
	}
	eventually(t, "healthy again", func() bool { return health()["status"] == "healthy" })
}

// BenchmarkInvokeInProcess is a closed-loop profile aid: 1 KB calls from a client
// through two in-process sidecars to an in-process app. bench/BenchmarkInvoke is the
// measurement against the direct call.
func BenchmarkInvokeInProcess(b *testing.B) {
	answer := bytes.Repeat([]byte("b"), 1024)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write(answer)
	}))
	defer app.Close()
	m := newMesh(b)
	m.sidecar("b", app.URL)
	a := m.sidecar("a", "")
	url := httpURL(a, "/v1.0/invoke/b/method/echo")
	body := bytes.Repeat([]byte("a"), 1024)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// trailerApp answers with trailers in both of net/http's ways: /declared announces
// X-Checksum (the SHA-256 of its body) before the body, /prefix sets X-Late with
// http.TrailerPrefix after it, along with a Content-Type trailer, which may not be one
// and must not pass. The body is ?size=N bytes. X-Seen-Trailer tells which trailers
// the request brought, and X-Seen-Te whether a Te header reached the app. With h2c it
// speaks HTTP/2 without TLS too, where a small body keeps its Content-Length.
func trailerApp(t *testing.T, h2c bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		var seen []string
		for k, v := range r.Trailer {
			seen = append(seen, k+"="+strings.Join(v, ","))
		}
		w.Header().Set("X-Seen-Trailer", strings.Join(seen, ";"))
		w.Header().Set("X-Seen-Te", r.Header.Get("Te"))
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		body := bytes.Repeat([]byte("t"), size)
		switch r.URL.Path {
		case "/declared":
			w.Header().Set("Trailer", "X-Checksum")
			_, _ = w.Write(body)
			w.Header().Set("X-Checksum", fmt.Sprintf("%x", sha256.Sum256(body)))
		case "/prefix":
			_, _ = w.Write(body)
			// Without a flush, net/http would give a small body a Content-Length and
			// drop the trailers.
			_ = http.NewResponseController(w).Flush()
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
			w.Header().Set(http.TrailerPrefix+"Content-Type", "text/plain")
		default:
			_, _ = w.Write(body)
		}
	}))
	if h2c {
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// trailingBody is a request body of unknown length that sets its trailer just before
// it ends, as net/http lets a client do.
type trailingBody struct {
	r       io.Reader
	trailer http.Header
}

func (b *trailingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		b.trailer.Set("X-Req-Sum", "req-sum")
	}
	return n, err
}

// callTrailers makes one HTTP call whose chunked body ends with the trailer
// X-Req-Sum, as do does.
func callTrailers(t *testing.T, url string, header ...string) (*http.Response, []byte, http.Header) {
	t.Helper()
	req, cancel := request(t, http.MethodPost, url, nil, header...)
	defer cancel()
	req.Trailer = http.Header{"X-Req-Sum": nil}
	req.Body = io.NopCloser(&trailingBody{r: strings.NewReader("request body"), trailer: req.Trailer})
	req.ContentLength = -1
	return do(t, req)
}

// Trailers pass both ways through the sidecars: to and from another app, the
// sidecar's own app, an HTTPEndpoint and a URL target.
func TestInvokeTrailers(t *testing.T) {
	app := trailerApp(t, false)
	resources := t.TempDir()
	endpoint := fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: trailers\nspec:\n  baseUrl: %s\n", app.URL)
	if err := os.WriteFile(filepath.Join(resources, "endpoint.yaml"), []byte(endpoint), 0o600); err != nil {
		t.Fatal(err)
	}
	m := newMesh(t)
	m.sidecar("b", app.URL)
	m.sidecar("c", trailerApp(t, true).URL, "--app-protocol", "h2c")
	a := m.sidecarWith("a", app.URL, func(rt *Runtime) { rt.cfg.ResourcesPaths = []string{resources} })

	for _, tc := range []struct{ name, target string }{
		{"another app", "b"}, {"h2c app", "c"}, {"own app", "a"}, {"HTTPEndpoint", "trailers"}, {"URL", url.QueryEscape(app.URL)},
	} {
		target := tc.target
		// A small answer, one larger than a frame of the internal hop, and an empty one.
		for _, size := range []int{10, 100 << 10, 0} {
			name := fmt.Sprintf("%s, %d bytes", tc.name, size)
			query := fmt.Sprintf("?size=%d", size)
			t.Run(name+", declared", func(t *testing.T) {
				resp, body, announced := callTrailers(t, httpURL(a, "/v1.0/invoke/"+target+"/method/declared"+query), "Te", "trailers")
				if resp.StatusCode != http.StatusOK || len(body) != size {
					t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
				}
				if _, ok := announced["X-Checksum"]; !ok || len(announced) != 1 {
					t.Errorf("announced trailers %v, want X-Checksum", announced)
				}
				if got, want := resp.Trailer.Get("X-Checksum"), fmt.Sprintf("%x", sha256.Sum256(body)); got != want || len(resp.Trailer) != 1 {
					t.Errorf("trailers %v, want X-Checksum %s", resp.Trailer, want)
				}
				if got := resp.Header.Get("X-Seen-Trailer"); got != "X-Req-Sum=req-sum" {
					t.Errorf("the app saw request trailers %q", got)
				}
				if got := resp.Header.Get("X-Seen-Te"); got != "" {
					t.Errorf("Te reached the app: %q", got)
				}
			})
			t.Run(name+", prefix", func(t *testing.T) {
				resp, body, announced := callTrailers(t, httpURL(a, "/v1.0/invoke/"+target+"/method/prefix"+query))
				if resp.StatusCode != http.StatusOK || len(body) != size {
					t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
				}
				if len(announced) != 0 {
					t.Errorf("announced trailers %v, the app announced none", announced)
				}
				if resp.Trailer.Get("X-Late") != "late" || len(resp.Trailer) != 1 {
					t.Errorf("trailers %v, want X-Late only", resp.Trailer)
				}
				if got := resp.Header.Get("X-Seen-Trailer"); got != "X-Req-Sum=req-sum" {
					t.Errorf("the app saw request trailers %q", got)
				}
			})
		}
	}

	// A call without trailers announces none.
	resp, _, announced := callTrailers(t, httpURL(a, "/v1.0/invoke/b/method/none?size=5"))
	if len(resp.Trailer) != 0 || len(announced) != 0 || resp.ContentLength != 5 {
		t.Errorf("no trailers: trailers %v, announced %v, length %d", resp.Trailer, announced, resp.ContentLength)
	}

	// Through the gRPC API, an HTTP app's trailers do not become trailer metadata:
	// Dapr 1.14 sets those only for a gRPC app.
	conn, err := grpc.NewClient(a.Addr("grpc").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var trailer metadata.MD
	out, err := runtimev1.NewDaprClient(conn).InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: "b", Message: &commonv1.InvokeRequest{
		Method: "declared", HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_POST, Querystring: "size=3"}}},
		grpc.Trailer(&trailer))
	if err != nil || string(out.GetData().GetValue()) != "ttt" || len(trailer.Get("x-checksum")) != 0 {
		t.Errorf("InvokeService: %v, %q, trailer metadata %v", err, out.GetData().GetValue(), trailer)
	}
}
