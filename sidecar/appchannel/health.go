package appchannel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
)

// Health states, as /v1.0/metadata reports them.
const (
	StatusHealthy   = "healthy"
	StatusUnhealthy = "unhealthy"
)

// Probe checks the app once; nil means healthy.
type Probe func(ctx context.Context) error

// HealthOptions configure a Health checker (--enable-app-health-check and the
// --app-health-* flags).
type HealthOptions struct {
	Probe     Probe
	Interval  time.Duration
	Timeout   time.Duration
	Threshold int
	// Ticks triggers the probes after the first; nil ticks every Interval. Tests send
	// on it instead of waiting.
	Ticks <-chan time.Time
	// OnChange is called, from the checker's goroutine, each time Status changes
	// (including from "" at the first probe), with the last probe's error.
	OnChange func(healthy bool, err error)
}

// Health probes the app and keeps its state. As in Dapr (pkg/apphealth), the app
// starts unhealthy, one successful probe makes it healthy, and Threshold failures in a
// row make it unhealthy again. Unlike Dapr, the first probe runs at once rather than
// one interval after start, so that calls are not refused for the first 5 seconds.
type Health struct {
	opts HealthOptions

	mu       sync.Mutex
	probed   bool
	healthy  bool
	failures int
}

// NewHealth validates opts as Dapr does: a positive interval, and a timeout no longer
// than the interval.
func NewHealth(opts HealthOptions) (*Health, error) {
	if opts.Probe == nil {
		return nil, errors.New("app health check: no probe")
	}
	if opts.Interval <= 0 {
		return nil, fmt.Errorf("--app-health-probe-interval %s: must be positive", opts.Interval)
	}
	if opts.Timeout <= 0 || opts.Timeout > opts.Interval {
		return nil, fmt.Errorf("--app-health-probe-timeout %s: must be positive and no longer than the probe interval %s", opts.Timeout, opts.Interval)
	}
	if opts.Threshold < 1 {
		return nil, fmt.Errorf("--app-health-threshold %d: must be at least 1", opts.Threshold)
	}
	return &Health{opts: opts}, nil
}

// Run probes until ctx ends.
func (h *Health) Run(ctx context.Context) {
	ticks := h.opts.Ticks
	if ticks == nil {
		t := time.NewTicker(h.opts.Interval)
		defer t.Stop()
		ticks = t.C
	}
	h.probe(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			h.probe(ctx)
		}
	}
}

func (h *Health) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	err := h.opts.Probe(pctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	before := h.statusLocked()
	h.probed = true
	if err == nil {
		h.failures = 0
		h.healthy = true
	} else {
		h.failures++
		if h.failures >= h.opts.Threshold {
			h.healthy = false
		}
	}
	after := h.statusLocked()
	h.mu.Unlock()
	if h.opts.OnChange != nil && after != before {
		h.opts.OnChange(after == StatusHealthy, err)
	}
}

// Healthy reports the current state; false before the first successful probe.
func (h *Health) Healthy() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.healthy
}

// Status is "healthy", "unhealthy", or "" before the first probe.
func (h *Health) Status() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.statusLocked()
}

func (h *Health) statusLocked() string {
	switch {
	case !h.probed:
		return ""
	case h.healthy:
		return StatusHealthy
	default:
		return StatusUnhealthy
	}
}

// HTTPProbe GETs path on the app and expects a 2xx answer.
func HTTPProbe(client *http.Client, baseURL, path string) Probe {
	if len(path) == 0 || path[0] != '/' {
		path = "/" + path
	}
	url := baseURL + path
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("GET %s answered %d", path, resp.StatusCode)
		}
		return nil
	}
}

// GRPCProbe checks a gRPC app: Dapr's AppCallbackHealthCheck first (what Dapr
// calls), else the standard grpc.health.v1 service; an app that implements neither
// but answers counts as healthy.
func GRPCProbe(conn grpc.ClientConnInterface) Probe {
	return func(ctx context.Context) error {
		_, err := runtimev1.NewAppCallbackHealthCheckClient(conn).HealthCheck(ctx, &emptypb.Empty{})
		if status.Code(err) != codes.Unimplemented {
			return err
		}
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		switch {
		case status.Code(err) == codes.Unimplemented:
			return nil
		case err != nil:
			return err
		case res.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			return fmt.Errorf("grpc.health.v1 status %s", res.GetStatus())
		}
		return nil
	}
}

// TCPProbe succeeds when the address accepts a connection.
func TCPProbe(addr string) Probe {
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}
