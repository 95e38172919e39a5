// Package cli tests the outrigger CLI the way a developer uses it: the built binary,
// real sidecars and real app processes, with HOME and the registry in temporary
// directories.
package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/selfhosted"
)

// waitTimeout bounds every wait on a process or on output in these tests.
const waitTimeout = 60 * time.Second

// machine is one developer's machine: a HOME and a registry of its own.
type machine struct {
	t        *testing.T
	bin      string
	home     string
	registry string
	mu       sync.Mutex
	pids     map[int]bool // every pid seen, killed at the end if still there
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	m := &machine{t: t, bin: testproc.Binary(t), home: t.TempDir(), registry: t.TempDir(), pids: map[int]bool{}}
	// A leftover process is a failure, but it must not outlive the test either.
	t.Cleanup(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for pid := range m.pids {
			if running(pid) {
				t.Errorf("process %d was left behind; killing it", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return m
}

// env is the environment of every command run on this machine.
func (m *machine) env() []string {
	return append(os.Environ(), "HOME="+m.home, "OUTRIGGER_REGISTRY_DIR="+m.registry)
}

// track remembers pids to check and clean up at the end of the test.
func (m *machine) track(pids ...int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range pids {
		if p > 0 {
			m.pids[p] = true
		}
	}
}

// result is a finished command.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs a short outrigger command to its end.
func (m *machine) cli(args ...string) result {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.bin, args...)
	cmd.Env = m.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		m.t.Fatalf("outrigger %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		m.t.Fatalf("outrigger %s did not finish within %s:\n%s%s", strings.Join(args, " "), waitTimeout, stdout.String(), stderr.String())
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

func (m *machine) mustCLI(args ...string) result {
	m.t.Helper()
	r := m.cli(args...)
	if r.code != 0 {
		m.t.Fatalf("outrigger %s: exit code %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// run is one `outrigger run` process.
type run struct {
	m      *machine
	appID  string
	cmd    *exec.Cmd
	stdout testproc.SyncBuffer
	stderr testproc.SyncBuffer
	done   chan struct{}
}

// startRun starts `outrigger run`; it is stopped, and its processes checked, when the
// test ends.
func (m *machine) startRun(appID string, args ...string) *run {
	m.t.Helper()
	r := &run{m: m, appID: appID, done: make(chan struct{})}
	r.cmd = exec.Command(m.bin, append([]string{"run", "--app-id", appID}, args...)...)
	r.cmd.Env = m.env()
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.track(r.cmd.Process.Pid)
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	m.t.Cleanup(func() {
		if !r.exited() {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.done:
			case <-time.After(waitTimeout):
				m.t.Errorf("outrigger run %s did not stop on SIGTERM", appID)
				_ = r.cmd.Process.Kill()
				<-r.done
			}
		}
		if m.t.Failed() {
			m.t.Logf("outrigger run %s stdout:\n%s\nstderr:\n%s", appID, r.stdout.String(), r.stderr.String())
		}
	})
	return r
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// wait waits for run to exit by itself and returns its exit code.
func (r *run) wait() int {
	r.m.t.Helper()
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(waitTimeout):
		r.m.t.Fatalf("outrigger run %s did not exit within %s\nstdout:\n%s\nstderr:\n%s", r.appID, waitTimeout, r.stdout.String(), r.stderr.String())
		return 0
	}
}

// output is everything run has printed so far.
func (r *run) output() string { return r.stdout.String() + r.stderr.String() }

// waitOutput waits until run has printed s.
func (r *run) waitOutput(s string) {
	r.m.t.Helper()
	r.m.eventually("outrigger run "+r.appID+" to print "+s, func() bool { return strings.Contains(r.output(), s) }, r)
}

// waitEntry waits until the app is in the registry with its app pid, which run records
// once the app has started.
func (r *run) waitEntry() selfhosted.Entry {
	r.m.t.Helper()
	var e selfhosted.Entry
	r.m.eventually(r.appID+" in the registry", func() bool {
		var err error
		e, err = selfhosted.Lookup(r.m.registry, r.appID)
		return err == nil && e.AppPID != 0
	}, r)
	r.m.track(e.SidecarPID, e.AppPID, e.RunPID)
	return e
}

// eventually polls cond until it holds, failing after waitTimeout or when the run
// given exits first.
func (m *machine) eventually(what string, cond func() bool, r *run) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var exited <-chan struct{}
	if r != nil {
		exited = r.done
	}
	for !cond() {
		select {
		case <-ctx.Done():
			m.t.Fatalf("timed out waiting for %s", what)
		case <-exited:
			if cond() {
				return
			}
			m.t.Fatalf("outrigger run %s exited (%v) before %s\n%s", r.appID, r.cmd.ProcessState, what, r.output())
		case <-tick.C:
		}
	}
}

// waitGone waits until none of the pids is a running process.
func (m *machine) waitGone(what string, pids ...int) {
	m.t.Helper()
	m.eventually(what+" to exit", func() bool {
		for _, p := range pids {
			if p > 0 && running(p) {
				return false
			}
		}
		return true
	}, nil)
}

// running reports whether pid is a live process; a zombie has exited.
func running(pid int) bool {
	if !selfhosted.Alive(pid) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// requireTool skips when a program the test runs is missing, and fails under CI.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed: %v", name, err)
		}
		t.Skipf("%s is not installed: %v", name, err)
	}
}
