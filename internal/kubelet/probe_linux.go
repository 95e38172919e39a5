package kubelet

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeReadiness runs the container's readiness probe from the host against the pod
// IP, as the kubelet does, and reports changes of the container's readiness. Exec and
// gRPC probes are not run: they count as passing.
func (rt *podRuntime) probeReadiness(ctx context.Context, c *containerRuntime) {
	p := c.spec.ReadinessProbe
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	if p.PeriodSeconds == 0 {
		period = 10 * time.Second
	}
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	failures, successes := max(p.FailureThreshold, 1), max(p.SuccessThreshold, 1)
	if p.FailureThreshold == 0 {
		failures = 3
	}
	// The first check comes after the initial delay; then every period. Until the
	// first success the pod is not ready, as in Kubernetes.
	wait := time.Duration(p.InitialDelaySeconds) * time.Second
	var okRun, failRun int32
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = period
		err := rt.probe(ctx, c, p, timeout)
		if err != nil {
			okRun, failRun = 0, failRun+1
		} else {
			okRun, failRun = okRun+1, 0
		}
		rt.mu.Lock()
		was := c.ready
		switch {
		case err == nil && okRun >= successes:
			c.ready = true
		case err != nil && failRun >= failures:
			c.ready = false
		}
		now := c.ready
		rt.mu.Unlock()
		if was != now {
			rt.log.V(1).Info("Readiness changed", "container", c.spec.Name, "ready", now)
			rt.changed()
		}
	}
}

func (rt *podRuntime) probe(ctx context.Context, c *containerRuntime, p *corev1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := resolvePort(g.Port, &c.spec)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = rt.net.ip
		}
		scheme := "http"
		if g.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		for _, h := range g.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		req.Header.Set("User-Agent", "kube-probe/outrigger")
		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as the kubelet's probes
			DisableKeepAlives: true,
		}}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe answered %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, &c.spec)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = rt.net.ip
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return nil
}

// resolvePort turns a named port into the container's number.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, p.StrVal)
}
