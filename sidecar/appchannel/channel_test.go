package appchannel

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCleanHeader(t *testing.T) {
	h := http.Header{
		"Connection":          {"keep-alive, X-Named"},
		"X-Named":             {"1"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Authorization": {"x"},
		"Proxy-Foo":           {"y"},
		"Te":                  {"trailers"},
		"Trailer":             {"X-T"},
		"Transfer-Encoding":   {"chunked"},
		"Upgrade":             {"h2c"},
		"Content-Length":      {"3"},
		"X-Kept":              {"a", "b"},
	}
	got := CleanHeader(h)
	want := http.Header{"Content-Length": {"3"}, "X-Kept": {"a", "b"}}
	if len(got) != len(want) || got.Get("Content-Length") != "3" || len(got.Values("X-Kept")) != 2 {
		t.Fatalf("got %v, want %v", got, want)
	}
	got.Add("X-Kept", "c")
	if len(h["X-Kept"]) != 2 {
		t.Error("CleanHeader shares slices with its input")
	}
}

func TestChannelDo(t *testing.T) {
	var seen *http.Request
	var body string
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen, body = r, string(b)
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "1")
		w.Header().Set("X-Out", "2")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "done")
	}))
	defer app.Close()
	ch, err := New(Options{BaseURL: app.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ch.Do(ctx, &Request{Method: http.MethodPatch, Path: "a%2Fb/c", RawQuery: "q=1",
		Header: http.Header{"X-In": {"1"}, "Dapr-Api-Token": {"app-supplied"}, "Keep-Alive": {"1"}},
		Body:   strings.NewReader("hello"), ContentLength: 5})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if seen.Method != http.MethodPatch || seen.URL.EscapedPath() != "/a%2Fb/c" || seen.URL.RawQuery != "q=1" ||
		seen.Header.Get("X-In") != "1" || seen.Header.Get("dapr-api-token") != "tok" || seen.Header.Get("Keep-Alive") != "" ||
		seen.ContentLength != 5 || body != "hello" {
		t.Errorf("app saw %s %s %v %d %q", seen.Method, seen.URL, seen.Header, seen.ContentLength, body)
	}
	if resp.Status != http.StatusAccepted || string(out) != "done" || resp.Header.Get("X-Out") != "2" ||
		resp.Header.Get("X-Secret") != "" || resp.Header.Get("Content-Length") != "4" || resp.ContentLength != 4 {
		t.Errorf("response %d %v %q", resp.Status, resp.Header, out)
	}

	// Without a token, an app-supplied one is removed too.
	ch, _ = New(Options{BaseURL: app.URL})
	resp, err = ch.Do(ctx, &Request{Method: http.MethodGet, Header: http.Header{"Dapr-Api-Token": {"app-supplied"}}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, ok := seen.Header["Dapr-Api-Token"]; ok {
		t.Errorf("token passed through: %v", seen.Header)
	}
}

func TestChannelMaxConcurrency(t *testing.T) {
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		entered <- struct{}{}
		<-release
		inFlight.Add(-1)
	}))
	defer app.Close()
	ch, _ := New(Options{BaseURL: app.URL, MaxConcurrency: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			resp, err := ch.Do(ctx, &Request{Method: http.MethodGet})
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for i := 0; i < 2; i++ {
		select {
		case <-entered:
		case <-ctx.Done():
			t.Fatal("calls did not reach the app")
		}
	}
	// Two calls are in the app; the other two wait for a slot, which they only get
	// when one of these ends.
	select {
	case <-entered:
		t.Fatal("a third call reached the app")
	default:
	}
	close(release)
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if peak.Load() != 2 {
		t.Errorf("peak concurrency %d", peak.Load())
	}
	// A call waiting for a slot gives up with its context.
	ch, _ = New(Options{BaseURL: app.URL, MaxConcurrency: 1})
	ch.sem <- struct{}{}
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if _, err := ch.Do(short, &Request{Method: http.MethodGet}); !errors.Is(err, context.Canceled) {
		t.Errorf("waiting call: %v", err)
	}
}

func TestChannelUnhealthy(t *testing.T) {
	ch, _ := New(Options{BaseURL: "http://127.0.0.1:1", Healthy: func() bool { return false }})
	if _, err := ch.Do(context.Background(), &Request{Method: http.MethodGet}); !errors.Is(err, ErrAppUnhealthy) {
		t.Fatalf("got %v", err)
	}
}
