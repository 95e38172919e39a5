package invoke

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"sigs.k8s.io/yaml"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/static"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// answer is what the scripted remote answers one attempt.
type answer struct {
	status int
	body   string
	// skipBody answers without reading the request body.
	skipBody bool
}

// scriptedRemote answers the attempts of a call in turn (the last answer repeats), and
// records the request body each attempt received.
type scriptedRemote struct {
	mu      sync.Mutex
	answers []answer
	bodies  []string
	sent    []*closeTracker
}

type closeTracker struct {
	io.Reader
	mu     sync.Mutex
	closed bool
}

func (c *closeTracker) Close() error { c.mu.Lock(); c.closed = true; c.mu.Unlock(); return nil }
func (c *closeTracker) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (s *scriptedRemote) Call(_ context.Context, _ string, call *Call) (*Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.answers[min(len(s.bodies), len(s.answers)-1)]
	var got string
	if call.Body != nil && !a.skipBody {
		b, err := io.ReadAll(call.Body)
		if err != nil {
			return nil, err
		}
		got = string(b)
	}
	s.bodies = append(s.bodies, got)
	body := &closeTracker{Reader: strings.NewReader(a.body)}
	s.sent = append(s.sent, body)
	return &Response{Status: a.status, Header: http.Header{}, Body: body, ContentLength: int64(len(a.body))}, nil
}

func (s *scriptedRemote) Conn(string, string, string) (grpc.ClientConnInterface, error) {
	return nil, errors.New("no conn")
}

func policies(t *testing.T, spec string) *resiliency.Policies {
	t.Helper()
	r := &daprv1alpha1.Resiliency{}
	if err := yaml.UnmarshalStrict([]byte("metadata: {name: r}\nspec:\n"+spec), r); err != nil {
		t.Fatal(err)
	}
	p, err := resiliency.Compile([]*daprv1alpha1.Resiliency{r}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// invokeB calls app b with body (none when empty); length -1 streams it chunked.
func invokeB(t *testing.T, b *Block, body string, length int64) (*Response, error) {
	t.Helper()
	req := &Request{Target: "b", Verb: http.MethodPost, Method: "orders", Header: http.Header{}, ContentLength: length}
	if body != "" {
		req.Body = strings.NewReader(body)
	} else {
		req.Verb, req.ContentLength = http.MethodGet, 0
	}
	return b.Invoke(context.Background(), req)
}

func TestRetryByStatus(t *testing.T) {
	const order = "order 42"
	tests := []struct {
		name     string
		matching string
		answers  []answer
		length   int64 // of the body "order 42"; -1 streams it
		attempts int
		status   int
		body     string
	}{
		{"a listed status is retried with the whole body", "{httpStatusCodes: '503'}",
			[]answer{{503, "busy", false}, {200, "done", false}}, 8, 2, 200, "done"},
		{"a status not listed goes to the caller", "{httpStatusCodes: '503'}",
			[]answer{{404, "no such order", false}, {200, "done", false}}, 8, 1, 404, "no such order"},
		{"without matching every failing status is retried", "",
			[]answer{{404, "no such order", false}, {200, "done", false}}, 8, 2, 200, "done"},
		{"the last attempt's answer when the retries run out", "{httpStatusCodes: '500-599'}",
			[]answer{{503, "first", false}, {500, "second", false}, {502, "third", false}}, 8, 3, 502, "third"},
		{"a 3xx is no failure", "",
			[]answer{{302, "moved", false}, {200, "done", false}}, 8, 1, 302, "moved"},
		// A streamed body cannot be kept: once part of it went, no attempt follows.
		{"a streamed body that was sent is not sent again", "{httpStatusCodes: '503'}",
			[]answer{{503, "busy", false}, {200, "done", false}}, -1, 1, 503, "busy"},
		{"a streamed body that was not read is sent by the next attempt", "{httpStatusCodes: '503'}",
			[]answer{{503, "busy", true}, {200, "done", false}}, -1, 2, 200, "done"},
		{"an early answer before the body was read", "{httpStatusCodes: '503'}",
			[]answer{{503, "busy", true}, {503, "still busy", true}, {200, "done", false}}, 8, 3, 200, "done"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			retry := "{duration: 1ms, maxRetries: 2}"
			if tt.matching != "" {
				retry = "{duration: 1ms, maxRetries: 2, matching: " + tt.matching + "}"
			}
			remote := &scriptedRemote{answers: tt.answers}
			b := &Block{AppID: "a", Remote: remote, Resolver: static.Resolver{"b": "127.0.0.1:1"},
				Runner: policies(t, "  policies: {retries: {r: "+retry+"}}\n  targets: {apps: {b: {retry: r}}}\n")}
			resp, err := invokeB(t, b, order, tt.length)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			if resp.Status != tt.status || string(got) != tt.body {
				t.Errorf("answer %d %q, want %d %q", resp.Status, got, tt.status, tt.body)
			}
			if len(remote.bodies) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(remote.bodies), tt.attempts)
			}
			for i, a := range tt.answers[:tt.attempts] {
				if !a.skipBody && remote.bodies[i] != order {
					t.Errorf("attempt %d sent %q, want %q", i, remote.bodies[i], order)
				}
			}
			// Every answer but the last was dropped.
			for i, s := range remote.sent[:len(remote.sent)-1] {
				if !s.isClosed() {
					t.Errorf("answer %d was not closed", i)
				}
			}
			_ = resp.Body.Close()
		})
	}
}

// A failing answer too large to keep goes to the caller whole, and the call is not
// tried again.
func TestFailingAnswerTooLargeToHold(t *testing.T) {
	big := strings.Repeat("x", maxHeldAnswer+10)
	remote := &scriptedRemote{answers: []answer{{503, big, false}, {200, "done", false}}}
	b := &Block{AppID: "a", Remote: remote, Resolver: static.Resolver{"b": "127.0.0.1:1"},
		Runner: policies(t, "  policies: {retries: {r: {duration: 1ms, maxRetries: 2}}}\n  targets: {apps: {b: {retry: r}}}\n")}
	resp, err := invokeB(t, b, "order", 5)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if resp.Status != 503 || string(got) != big || len(remote.bodies) != 1 {
		t.Errorf("answer %d with %d bytes after %d attempts", resp.Status, len(got), len(remote.bodies))
	}
}

// Without a retry policy, a failing answer still counts for the circuit breaker, and
// streams to the caller as it came.
func TestFailingStatusCountsForTheBreaker(t *testing.T) {
	remote := &scriptedRemote{answers: []answer{{500, "broken", false}}}
	b := &Block{AppID: "a", Remote: remote, Resolver: static.Resolver{"b": "127.0.0.1:1"},
		Runner: policies(t, "  policies: {circuitBreakers: {cb: {trip: consecutiveFailures > 1}}}\n  targets: {apps: {b: {circuitBreaker: cb}}}\n")}
	for i := range 2 {
		resp, err := invokeB(t, b, "", 0)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.Body != io.ReadCloser(remote.sent[i]) || resp.Status != 500 {
			t.Errorf("call %d: the answer did not come as it was", i)
		}
		_ = resp.Body.Close()
	}
	if _, err := invokeB(t, b, "", 0); err == nil || !strings.Contains(err.Error(), resiliency.ErrCircuitOpen.Error()) {
		t.Fatalf("third call: %v", err)
	}
	if len(remote.bodies) != 2 {
		t.Errorf("%d calls reached the app", len(remote.bodies))
	}
}

// Each attempt reads the whole body from its start, even while an earlier attempt
// that is over still reads (a transport forwarding the body after the answer came).
func TestReplayReaders(t *testing.T) {
	const body = "the quick brown fox jumps over the lazy dog"
	rb := &replayBody{src: iotest.HalfReader(strings.NewReader(body))}
	first, second := &replayReader{rb: rb}, &replayReader{rb: rb}
	buf := make([]byte, 5)
	var a, b bytes.Buffer
	for a.Len() < len(body) || b.Len() < len(body) {
		for _, x := range []struct {
			r   io.Reader
			out *bytes.Buffer
		}{{first, &a}, {second, &b}, {second, &b}} {
			n, err := x.r.Read(buf)
			x.out.Write(buf[:n])
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
		}
	}
	if a.String() != body || b.String() != body {
		t.Errorf("read %q and %q", a.String(), b.String())
	}
	third, err := io.ReadAll(&replayReader{rb: rb})
	if err != nil || string(third) != body {
		t.Errorf("a later attempt read %q, %v", third, err)
	}
	// An error of the source reaches every attempt after what was read.
	boom := errors.New("too large")
	rb = &replayBody{src: io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom))}
	for range 2 {
		got, err := io.ReadAll(&replayReader{rb: rb})
		if string(got) != "abc" || !errors.Is(err, boom) {
			t.Errorf("read %q, %v", got, err)
		}
	}
}
