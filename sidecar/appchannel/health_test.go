package appchannel

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

type change struct {
	healthy bool
	err     error
}

// TestHealthTransitions drives the checker with injected ticks: the app starts
// unhealthy, one success makes it healthy, and threshold failures in a row make it
// unhealthy again.
func TestHealthTransitions(t *testing.T) {
	var fail atomic.Bool
	probed := make(chan struct{}, 1)
	changes := make(chan change, 8)
	ticks := make(chan time.Time)
	h, err := NewHealth(HealthOptions{
		Probe: func(context.Context) error {
			defer func() { probed <- struct{}{} }()
			if fail.Load() {
				return errors.New("down")
			}
			return nil
		},
		Interval: time.Hour, Timeout: time.Minute, Threshold: 2, Ticks: ticks,
		OnChange: func(healthy bool, err error) { changes <- change{healthy, err} },
	})
	if err != nil {
		t.Fatal(err)
	}
	if h.Status() != "" || h.Healthy() {
		t.Fatalf("before the first probe: %q %v", h.Status(), h.Healthy())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go h.Run(ctx)
	wait := func() {
		t.Helper()
		select {
		case <-probed:
		case <-ctx.Done():
			t.Fatal("no probe")
		}
	}
	expect := func(healthy bool) {
		t.Helper()
		select {
		case c := <-changes:
			if c.healthy != healthy {
				t.Fatalf("change to healthy=%v (%v), want %v", c.healthy, c.err, healthy)
			}
		case <-ctx.Done():
			t.Fatal("no change")
		}
	}
	tick := func() {
		t.Helper()
		select {
		case ticks <- time.Now():
		case <-ctx.Done():
			t.Fatal("tick not taken")
		}
		wait()
	}
	wait() // the first probe runs at once
	expect(true)
	fail.Store(true)
	tick()
	if !h.Healthy() {
		t.Fatal("one failure below the threshold made the app unhealthy")
	}
	tick()
	expect(false)
	if h.Status() != StatusUnhealthy {
		t.Fatalf("status %q", h.Status())
	}
	fail.Store(false)
	tick()
	expect(true)
	select {
	case c := <-changes:
		t.Fatalf("unexpected change %+v", c)
	default:
	}
}

func TestHealthOptionsValidated(t *testing.T) {
	probe := func(context.Context) error { return nil }
	for _, o := range []HealthOptions{
		{Probe: probe, Interval: 0, Timeout: time.Second, Threshold: 1},
		{Probe: probe, Interval: time.Second, Timeout: 2 * time.Second, Threshold: 1},
		{Probe: probe, Interval: time.Second, Timeout: time.Second, Threshold: 0},
		{Interval: time.Second, Timeout: time.Second, Threshold: 1},
	} {
		if _, err := NewHealth(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestProbes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var code atomic.Int32
	code.Store(http.StatusNoContent)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(int(code.Load()))
	}))
	defer app.Close()
	probe := HTTPProbe(app.Client(), app.URL, "healthz")
	if err := probe(ctx); err != nil {
		t.Errorf("2xx: %v", err)
	}
	code.Store(http.StatusServiceUnavailable)
	if err := probe(ctx); err == nil {
		t.Error("503 passed")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := TCPProbe(ln.Addr().String())(ctx); err != nil {
		t.Errorf("tcp: %v", err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := GRPCProbe(conn)(ctx); err != nil {
		t.Errorf("grpc health SERVING: %v", err)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if err := GRPCProbe(conn)(ctx); err == nil {
		t.Error("grpc health NOT_SERVING passed")
	}
}
