// Package testproc builds the outrigger binary and runs sidecars as processes for the
// compatibility tests and the benchmarks, the way users run them.
package testproc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// Binary builds the binary once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outrigger-compat-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "outrigger")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/outrigger")
		build.Dir = repoRoot()
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// handedOut are the ports FreePort has returned in this process.
var handedOut sync.Map

// FreePort returns a loopback port that was free a moment ago and that this process
// has not handed out before: sidecars started one after the other pick their ports
// before any binds them, and the system may offer a port just released twice.
func FreePort(t testing.TB) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if _, taken := handedOut.LoadOrStore(port, true); !taken {
			return port
		}
	}
}

// Sidecar is one running `outrigger sidecar` process.
type Sidecar struct {
	Cmd                *exec.Cmd
	HTTPPort, GRPCPort int
	PublicPort         int
	output             *SyncBuffer
	done               chan struct{}
	exitErr            error
	Started            time.Time
}

// SyncBuffer collects a process's output while tests read it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WriteResources writes manifests into a fresh resources directory.
func WriteResources(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Start starts a sidecar on free ports; it is stopped with SIGTERM when the test ends.
func Start(t testing.TB, appID, resources string, env []string, extraArgs ...string) *Sidecar {
	t.Helper()
	s := &Sidecar{HTTPPort: FreePort(t), GRPCPort: FreePort(t), PublicPort: FreePort(t), output: &SyncBuffer{}, done: make(chan struct{})}
	args := []string{"sidecar", "--app-id", appID,
		"--dapr-http-port", strconv.Itoa(s.HTTPPort), "--dapr-grpc-port", strconv.Itoa(s.GRPCPort),
		"--dapr-public-port", strconv.Itoa(s.PublicPort), "--dapr-internal-grpc-port", strconv.Itoa(FreePort(t)),
		"--metrics-port", strconv.Itoa(FreePort(t)), "--resources-path", resources}
	args = append(args, extraArgs...)
	s.Cmd = exec.Command(Binary(t), args...)
	// Sidecars of one test binary share a registry of their own, never the user's.
	s.Cmd.Env = append(append(os.Environ(), "OUTRIGGER_REGISTRY_DIR="+registryDir(t)), env...)
	s.Cmd.Stderr = s.output
	s.Cmd.Stdout = s.output
	s.Started = time.Now()
	if err := s.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exitErr = s.Cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.Cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("sidecar %s output:\n%s", appID, s.output.String())
		}
	})
	return s
}

// WaitHealthy polls /v1.0/healthz/outbound until 204, the process exits, or the
// deadline, and returns how long after the start it became healthy.
func (s *Sidecar) WaitHealthy(t testing.TB) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/v1.0/healthz/outbound", s.HTTPPort)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return time.Since(s.Started)
			}
		}
		select {
		case <-s.done:
			t.Fatalf("sidecar exited before it was healthy (%v):\n%s", s.exitErr, s.output.String())
		case <-ctx.Done():
			t.Fatalf("sidecar not healthy within the deadline:\n%s", s.output.String())
		case <-time.After(time.Millisecond):
		}
	}
}

// WaitExit waits for the process to exit by itself and returns its error and output.
func (s *Sidecar) WaitExit(t testing.TB) (error, string) {
	t.Helper()
	select {
	case <-s.done:
		return s.exitErr, s.output.String()
	case <-time.After(30 * time.Second):
		t.Fatalf("sidecar did not exit:\n%s", s.output.String())
		return nil, ""
	}
}

// URL is an HTTP API URL of the sidecar.
func (s *Sidecar) URL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.HTTPPort, path)
}

// Do makes one HTTP call and returns its status, headers and body.
func Do(t testing.TB, method, url, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// RequireServer skips, or fails under CI, when a loopback server is down.
func RequireServer(t testing.TB, name, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = conn.Close()
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not reachable on %s: %v", name, addr, err)
	}
	t.Skipf("%s is not reachable on %s: %v", name, addr, err)
}

// Output is what the process has printed so far.
func (s *Sidecar) Output() string { return s.output.String() }

// Done is closed when the process has exited.
func (s *Sidecar) Done() <-chan struct{} { return s.done }

// repoRoot is the module's root, found from this file's path.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	registryOnce sync.Once
	registry     string
)

// registryDir is one temporary registry directory per test binary, removed with the
// binary's other temporary files by the OS; tests that need their own pass
// OUTRIGGER_REGISTRY_DIR in env, which comes later and wins.
func registryDir(t testing.TB) string {
	registryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outrigger-registry-")
		if err != nil {
			t.Fatal(err)
		}
		registry = dir
	})
	return registry
}

// RedisStateStore is a Component manifest of the state store "statestore" on the
// loopback Redis.
const RedisStateStore = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:6379
`

// WaitSubscribed polls GET /v1.0/metadata until the sidecar lists the subscription of
// topic on pubsubName without an error, that is until it is in force: a message
// published before that may reach no subscriber.
func (s *Sidecar) WaitSubscribed(t testing.TB, pubsubName, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var body []byte
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL("/v1.0/metadata"), nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			body, _ = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		var md struct {
			Subscriptions []struct {
				PubsubName string `json:"pubsubname"`
				Topic      string `json:"topic"`
				Error      string `json:"error"`
			} `json:"subscriptions"`
		}
		_ = json.Unmarshal(body, &md)
		for _, sub := range md.Subscriptions {
			if sub.PubsubName == pubsubName && sub.Topic == topic && sub.Error == "" {
				return
			}
		}
		select {
		case <-s.done:
			t.Fatalf("sidecar exited before subscription %s/%s came into force (%v):\n%s", pubsubName, topic, s.exitErr, s.output.String())
		case <-ctx.Done():
			t.Fatalf("subscription %s/%s never came into force; metadata: %s", pubsubName, topic, body)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitOutput waits until the sidecar's output contains text, the process exits, or
// a 30-second deadline passes.
func (s *Sidecar) WaitOutput(t testing.TB, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !strings.Contains(s.output.String(), text) {
		select {
		case <-s.done:
			t.Fatalf("sidecar exited before it printed %q (%v):\n%s", text, s.exitErr, s.output.String())
		case <-ctx.Done():
			t.Fatalf("sidecar did not print %q within the deadline:\n%s", text, s.output.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// MemoryReleased is what a sidecar prints once it has given back its start-up memory.
const MemoryReleased = "Gave back the start-up memory"

// ProcStatus reads the kB figures of /proc/<pid>/status (VmRSS, RssAnon, RssFile...).
func ProcStatus(pid int) (map[string]int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		rest = strings.TrimSpace(rest)
		if !ok || !strings.HasSuffix(rest, " kB") {
			continue
		}
		if kb, err := strconv.ParseInt(strings.TrimSuffix(rest, " kB"), 10, 64); err == nil {
			out[name] = kb
		}
	}
	if _, ok := out["VmRSS"]; !ok {
		return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return out, nil
}
