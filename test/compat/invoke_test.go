package compat

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprgrpc "github.com/dapr/go-sdk/service/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

// pair starts the sidecars of app a (no app) and app b (in front of appURL), which
// find each other through a registry of their own.
func pair(t *testing.T, appURL string, extra ...string) (a, b *testproc.Sidecar) {
	t.Helper()
	env := []string{"OUTRIGGER_REGISTRY_DIR=" + t.TempDir()}
	u, err := url.Parse(appURL)
	if err != nil {
		t.Fatal(err)
	}
	b = testproc.Start(t, "b", testproc.WriteResources(t, nil), env, append([]string{"--app-port", u.Port()}, extra...)...)
	a = testproc.Start(t, "a", testproc.WriteResources(t, nil), env, extra...)
	b.WaitHealthy(t)
	a.WaitHealthy(t)
	return a, b
}

type received struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	Query       string `json:"query"`
	ContentType string `json:"contentType"`
	Caller      string `json:"caller"`
	Body        string `json:"body"`
	Forwarded   string `json:"forwarded"`
	FwdHost     string `json:"fwdHost"`
}

func recordingApp(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/missing" {
			http.Error(w, "no such order", http.StatusNotFound)
			return
		}
		out, _ := json.Marshal(received{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			ContentType: r.Header.Get("Content-Type"), Caller: r.Header.Get("dapr-caller-app-id"), Body: string(b),
			Forwarded: r.Header.Get("Forwarded"), FwdHost: r.Header.Get("X-Forwarded-Host")})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The Dapr Go SDK invokes through the gRPC API (InvokeService) of app a's sidecar.
func TestInvokeWithSDK(t *testing.T) {
	a, _ := pair(t, recordingApp(t).URL)
	client, err := dapr.NewClientWithAddress(fmt.Sprintf("127.0.0.1:%d", a.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	out, err := client.InvokeMethod(ctx, "b", "orders/latest", "get")
	if err != nil {
		t.Fatal(err)
	}
	var got received
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if got.Method != http.MethodGet || got.Path != "/orders/latest" || got.Caller != "a" {
		t.Errorf("InvokeMethod: app saw %+v", got)
	}
	// The calling sidecar adds its host to the forwarding headers, as Dapr does.
	if host, _ := os.Hostname(); got.FwdHost != host || !strings.Contains(got.Forwarded, "host="+host) {
		t.Errorf("forwarding headers: X-Forwarded-Host %q, Forwarded %q; want host %q", got.FwdHost, got.Forwarded, host)
	}

	out, err = client.InvokeMethodWithContent(ctx, "b", "neworder", "post",
		&dapr.DataContent{ContentType: "application/json", Data: []byte(`{"orderId":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if got.Method != http.MethodPost || got.Path != "/neworder" || got.ContentType != "application/json" || got.Body != `{"orderId":1}` {
		t.Errorf("InvokeMethodWithContent: app saw %+v", got)
	}

	// An app's 404 is a NotFound status, as Dapr maps it.
	if _, err := client.InvokeMethod(ctx, "b", "missing", "get"); status.Code(err) != codes.NotFound {
		t.Errorf("404 from the app: %v", err)
	}
	// An unknown app is Dapr's ERR_DIRECT_INVOKE, gRPC Internal.
	_, err = client.InvokeMethod(ctx, "nobody", "x", "get")
	if st, _ := status.FromError(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "failed to invoke, id: nobody") {
		t.Errorf("unknown app: %v", err)
	}
}

// The app's port is closed: the target sidecar answers Dapr's ERR_DIRECT_INVOKE.
func TestInvokeAppDown(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	appURL := app.URL
	app.Close()
	a, _ := pair(t, appURL)
	code, _, body := testproc.Do(t, http.MethodPost, a.URL("/v1.0/invoke/b/method/neworder"), "{}")
	if code != http.StatusInternalServerError || !strings.Contains(body, `"errorCode":"ERR_DIRECT_INVOKE"`) ||
		!strings.Contains(body, "failed to invoke, id: b, err: error invoking app channel") {
		t.Fatalf("%d %s", code, body)
	}
}

// pattern is the body the large-body test streams: a repeating, position-dependent
// sequence, generated as it is read, so that no copy of it sits in memory.
type pattern struct{ off, size int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	n := int64(len(b))
	if rest := p.size - p.off; n > rest {
		n = rest
	}
	for i := int64(0); i < n; i++ {
		v := p.off + i
		b[i] = byte(v ^ v>>8 ^ v>>16)
	}
	p.off += n
	return int(n), nil
}

// A 64 MiB body streams through both sidecars and back (the app echoes it as it reads
// it), and neither sidecar's memory grows by anything near the body's size.
func TestInvokeLargeBodyStreamsWithBoundedMemory(t *testing.T) {
	const size = 64 << 20
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, r.Body)
	}))
	t.Cleanup(app.Close)
	a, b := pair(t, app.URL, "--max-body-size", "128Mi")

	// Warm both sidecars up with a small call, then take their resident memory.
	if code, _, body := testproc.Do(t, http.MethodPost, a.URL("/v1.0/invoke/b/method/echo"), "warm"); code != http.StatusOK || body != "warm" {
		t.Fatalf("warm-up: %d %q", code, body)
	}
	pids := map[string]int{"a": a.Cmd.Process.Pid, "b": b.Cmd.Process.Pid}
	base := map[string]int64{}
	for name, pid := range pids {
		rss, err := rssBytes(pid)
		if err != nil {
			t.Fatal(err)
		}
		base[name] = rss
	}
	var mu sync.Mutex
	peak := map[string]int64{}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			for name, pid := range pids {
				if rss, err := rssBytes(pid); err == nil {
					mu.Lock()
					peak[name] = max(peak[name], rss)
					mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.URL("/v1.0/invoke/b/method/echo"), &pattern{size: size})
	req.ContentLength = size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sent, got := sha256.New(), sha256.New()
	_, _ = io.Copy(sent, &pattern{size: size})
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	close(stop)
	<-sampled
	if err != nil || resp.StatusCode != http.StatusOK || n != size || !equalSums(sent, got) {
		t.Fatalf("echo: status %d, %d bytes, %v, checksum equal %v", resp.StatusCode, n, err, equalSums(sent, got))
	}
	mu.Lock()
	defer mu.Unlock()
	for name := range pids {
		growth := peak[name] - base[name]
		t.Logf("sidecar %s: resident %d MiB before, peak %d MiB during the 64 MiB echo (+%d MiB)",
			name, base[name]>>20, peak[name]>>20, growth>>20)
		if growth > 24<<20 {
			t.Errorf("sidecar %s grew by %d MiB while streaming 64 MiB each way", name, growth>>20)
		}
	}
}

func equalSums(a, b hash.Hash) bool { return string(a.Sum(nil)) == string(b.Sum(nil)) }

// rssBytes reads a process's resident set size from /proc.
func rssBytes(pid int) (int64, error) {
	status, err := testproc.ProcStatus(pid)
	if err != nil {
		return 0, err
	}
	return status["VmRSS"] << 10, nil
}

// A gRPC app (--app-protocol grpc) is invoked by method name through
// AppCallback.OnInvoke, from HTTP and from the SDK's InvokeMethodWithContent, as Dapr
// does; a gRPC error from the app becomes the matching HTTP status.
func TestInvokeGRPCAppOnInvoke(t *testing.T) {
	ln, port := listen(t)
	svc := daprgrpc.NewServiceWithListener(ln)
	if err := svc.AddServiceInvocationHandler("echo", func(_ context.Context, in *common.InvocationEvent) (*common.Content, error) {
		return &common.Content{ContentType: "application/json",
			Data: []byte(fmt.Sprintf(`{"verb":%q,"query":%q,"contentType":%q,"data":%q}`, in.Verb, in.QueryString, in.ContentType, in.Data))}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := svc.AddServiceInvocationHandler("missing", func(context.Context, *common.InvocationEvent) (*common.Content, error) {
		return nil, status.Error(codes.NotFound, "no such order")
	}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = svc.Start() }()
	t.Cleanup(func() { _ = svc.Stop() })

	env := []string{"OUTRIGGER_REGISTRY_DIR=" + t.TempDir()}
	b := testproc.Start(t, "grpcapp", testproc.WriteResources(t, nil), env, "--app-port", strconv.Itoa(port), "--app-protocol", "grpc")
	a := testproc.Start(t, "caller", testproc.WriteResources(t, nil), env)
	b.WaitHealthy(t)
	a.WaitHealthy(t)

	code, _, body := testproc.Do(t, http.MethodPost, a.URL("/v1.0/invoke/grpcapp/method/echo?x=1"), "hello", "Content-Type", "text/plain")
	if code != http.StatusOK || !strings.Contains(body, `"verb":"POST"`) || !strings.Contains(body, `"query":"x=1"`) ||
		!strings.Contains(body, `"data":"hello"`) || !strings.Contains(body, `"contentType":"text/plain"`) {
		t.Errorf("HTTP invoke of a gRPC app: %d %s", code, body)
	}
	code, _, body = testproc.Do(t, http.MethodGet, a.URL("/v1.0/invoke/grpcapp/method/missing"), "")
	if code != http.StatusNotFound || !strings.Contains(body, "no such order") {
		t.Errorf("gRPC NotFound from the app: %d %s", code, body)
	}

	client := sdkClient(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := client.InvokeMethodWithContent(ctx, "grpcapp", "echo", "put", &dapr.DataContent{ContentType: "application/json", Data: []byte(`{"a":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"verb":"PUT"`) || !strings.Contains(string(out), `"data":"{\"a\":1}"`) {
		t.Errorf("SDK invoke of a gRPC app: %s", out)
	}
}

// HTTP trailers pass through both sidecars each way: the caller's chunked upload ends
// with the trailer X-Upload-Sum, and the app, which echoes the upload, announces
// X-Checksum and sets it after its body, and returns the upload's trailer unannounced.
func TestInvokeTrailers(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = w.Write(body)
		w.Header().Set("X-Checksum", fmt.Sprintf("%x", sha256.Sum256(body)))
		w.Header().Set(http.TrailerPrefix+"X-Upload-Sum-Seen", r.Trailer.Get("X-Upload-Sum"))
	}))
	t.Cleanup(app.Close)
	a, _ := pair(t, app.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL("/v1.0/invoke/b/method/echo"), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Trailer = http.Header{"X-Upload-Sum": nil}
	go func() {
		// The client reads the trailer once the body ends, after Close.
		h := sha256.New()
		_, err := io.Copy(io.MultiWriter(pw, h), &pattern{size: 100 << 10})
		req.Trailer.Set("X-Upload-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		pw.CloseWithError(err)
	}()
	sent := sha256.New()
	_, _ = io.Copy(sent, &pattern{size: 100 << 10})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, ok := resp.Trailer["X-Checksum"]; !ok || len(resp.Trailer) != 1 {
		t.Errorf("announced trailers %v, want X-Checksum", resp.Trailer)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || n != 100<<10 || !equalSums(sent, got) {
		t.Fatalf("echo: status %d, %d bytes, %v", resp.StatusCode, n, err)
	}
	sum := fmt.Sprintf("%x", got.Sum(nil))
	if resp.Trailer.Get("X-Checksum") != sum || resp.Trailer.Get("X-Upload-Sum-Seen") != sum {
		t.Errorf("trailers %v, want X-Checksum and X-Upload-Sum-Seen %s", resp.Trailer, sum)
	}
}
