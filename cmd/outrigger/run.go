package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/selfhosted"
)

// The environment `outrigger run` gives the sidecar it starts, so that the sidecar's
// entry in the self-hosted registry names the run and the app (see selfhosted.Entry).
const (
	// EnvRunPID is the pid of the `outrigger run` process: Entry.RunPID.
	EnvRunPID = "OUTRIGGER_RUN_PID"
	// EnvAppCommand is the app's command line, its words joined by spaces and quoted
	// as a POSIX shell would need: Entry.Command. Empty when run starts no app.
	EnvAppCommand = "OUTRIGGER_APP_COMMAND"
)

const (
	// sidecarStartTimeout bounds the wait for the sidecar's /v1.0/healthz/outbound.
	sidecarStartTimeout = time.Minute
	// stopGracePeriod is how long each process group gets between SIGTERM and SIGKILL.
	// The sidecar's own graceful shutdown takes up to 5s by default.
	stopGracePeriod = 10 * time.Second
	// killWait bounds the wait for a process group to disappear after SIGKILL.
	killWait = 5 * time.Second
	// maxLinePrefix is the longest line prefixed as one; a longer one is cut.
	maxLinePrefix = 64 << 10
)

const (
	appPrefix     = "== APP == "
	sidecarPrefix = "== DAPR == "
)

type runOptions struct {
	appID            string
	appPort          int
	appProtocol      string
	httpPort         int
	grpcPort         int
	internalGRPCPort int
	publicPort       int
	metricsPort      int
	resourcesPaths   []string
	config           string
	logLevel         string
	enableAPILogging bool
}

func newRunCommand() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run --app-id ID [flags] [-- command [args...]]",
		Short: "Run an app with its sidecar on this machine",
		Long: `run starts a sidecar (outrigger sidecar) for the app, waits until the sidecar's
outbound APIs are ready (GET /v1.0/healthz/outbound), then starts the app with:

  APP_ID          the --app-id
  APP_PORT        the --app-port, when one is given
  APP_PROTOCOL    the --app-protocol
  DAPR_HTTP_PORT  the sidecar's HTTP API port
  DAPR_GRPC_PORT  the sidecar's gRPC API port

Because the app starts once the sidecar answers, it may call the sidecar (state, invoking
other apps) from its first line. The sidecar in turn waits for --app-port before it
reports itself healthy on /v1.0/healthz.

Ports that are not given are picked among the free ones. Without --resources-path,
components come from ~/.outrigger/components, which outrigger init writes.

The app's output is prefixed "== APP == " and the sidecar's "== DAPR == ". The app and
the sidecar each run in their own process group. On Ctrl-C or SIGTERM, or when the app
or the sidecar exits, run stops the app's group and then the sidecar's: SIGTERM, then
SIGKILL after 10s (at once on a second Ctrl-C), so no process is left behind. run exits
with the app's exit code (128+n when a signal n ended it).

Without a command, run starts only the sidecar, until Ctrl-C.

Running apps are recorded in ~/.outrigger/registry ($OUTRIGGER_REGISTRY_DIR), where
outrigger list, stop and invoke find them.`,
		Example: `  outrigger init
  outrigger run --app-id nodeapp --app-port 3000 -- node app.js
  outrigger run --app-id pythonapp -- python3 app.py
  outrigger run --app-id myapp --resources-path ./components --dapr-http-port 3500 -- ./myapp`,
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := o.run(cmd, args)
			if err != nil {
				return err
			}
			if code != 0 {
				// The app's exit code is the result; there is no error to print.
				os.Exit(code)
			}
			return nil
		},
	}
	// Everything after the first word of the command belongs to the app.
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringVarP(&o.appID, "app-id", "a", "", "the app's id, which other apps invoke it by (required)")
	f.IntVarP(&o.appPort, "app-port", "p", 0, "the port the app listens on; none when the app takes no calls")
	f.StringVarP(&o.appProtocol, "app-protocol", "P", "http", "the protocol the sidecar talks to the app in: http, grpc, https, grpcs or h2c")
	f.IntVarP(&o.httpPort, "dapr-http-port", "H", 0, "the sidecar's HTTP API port (default: a free port)")
	f.IntVarP(&o.grpcPort, "dapr-grpc-port", "G", 0, "the sidecar's gRPC API port (default: a free port)")
	f.IntVarP(&o.internalGRPCPort, "dapr-internal-grpc-port", "I", 0, "the port other sidecars call this one on (default: a free port)")
	f.IntVar(&o.publicPort, "dapr-public-port", 0, "the sidecar's health and metadata port (default: a free port)")
	f.IntVarP(&o.metricsPort, "metrics-port", "M", 0, "the sidecar's Prometheus metrics port (default: a free port)")
	f.StringArrayVarP(&o.resourcesPaths, "resources-path", "d", nil, "a directory of component and other resource manifests; repeatable (default ~/.outrigger/components)")
	f.StringVarP(&o.config, "config", "c", "", "a Configuration manifest file")
	f.StringVar(&o.logLevel, "log-level", "info", "the sidecar's log level: debug, info, warn, error or fatal")
	f.BoolVar(&o.enableAPILogging, "enable-api-logging", false, "make the sidecar log every API call")
	return cmd
}

// ports are the sidecar's ports, all chosen before it starts.
type ports struct{ http, grpc, internal, public, metrics int }

func (o *runOptions) run(cmd *cobra.Command, command []string) (int, error) {
	if o.appID == "" {
		return 0, errors.New("--app-id is required: outrigger run starts a sidecar for the app, and the sidecar needs the app's id")
	}
	if strings.ContainsAny(o.appID, `/\`) || strings.TrimSpace(o.appID) != o.appID {
		return 0, fmt.Errorf("--app-id %q: an app id may not contain slashes or surrounding spaces", o.appID)
	}
	if o.appPort < 0 || o.appPort > 65535 {
		return 0, fmt.Errorf("--app-port %d: not a port number", o.appPort)
	}
	if len(command) > 0 {
		if _, err := exec.LookPath(command[0]); err != nil {
			return 0, fmt.Errorf("the app's command: %w", err)
		}
	}
	resources, err := o.resources()
	if err != nil {
		return 0, err
	}
	regDir, err := selfhosted.Dir()
	if err != nil {
		return 0, err
	}
	if e, err := selfhosted.Lookup(regDir, o.appID); err == nil {
		return 0, fmt.Errorf("an app with id %q is already running (sidecar pid %d, started %s): stop it first with `outrigger stop --app-id %s`",
			o.appID, e.SidecarPID, e.Started.Local().Format(time.DateTime), o.appID)
	}
	p, err := o.pickPorts()
	if err != nil {
		return 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find the outrigger binary: %w", err)
	}

	// Signals are caught before any child exists, so none is left behind by an early
	// Ctrl-C. The children run in their own process groups: a terminal's Ctrl-C reaches
	// only this process, which then stops them in order.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// Once stopping has begun, another signal means: kill everything now.
	hurry, finished := make(chan struct{}), make(chan struct{})
	defer close(finished)
	var armOnce sync.Once
	armHurry := func() {
		armOnce.Do(func() {
			go func() {
				select {
				case <-sigs:
					close(hurry)
				case <-finished:
				}
			}()
		})
	}

	out := &console{stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr()}
	out.say("Starting the sidecar for app id %s. HTTP port: %d. gRPC port: %d. Internal gRPC port: %d. Public port: %d. Metrics port: %d.",
		o.appID, p.http, p.grpc, p.internal, p.public, p.metrics)

	appCommand := shellJoin(command)
	sidecarCmd := exec.Command(self, o.sidecarArgs(p, resources)...)
	sidecarCmd.Env = append(os.Environ(), EnvRunPID+"="+strconv.Itoa(os.Getpid()), EnvAppCommand+"="+appCommand)
	sidecarOut, sidecarErrOut := out.writers(sidecarPrefix)
	sidecar, err := startChild(sidecarCmd, sidecarOut, sidecarErrOut)
	if err != nil {
		return 0, fmt.Errorf("start the sidecar: %w", err)
	}
	reg := &registration{dir: regDir, out: out, entry: selfhosted.Entry{
		AppID: o.appID, HTTPPort: p.http, GRPCPort: p.grpc, InternalGRPCPort: p.internal, AppPort: o.appPort,
		SidecarPID: sidecar.pid(), RunPID: os.Getpid(), Command: appCommand, Started: time.Now(),
	}}
	// Every path from here stops the sidecar and forgets its entry.
	stopSidecar := func() error {
		armHurry()
		sidecar.stop(out, "sidecar", hurry)
		reg.remove()
		if sidecar.failed() {
			return fmt.Errorf("the sidecar exited: %s", sidecar.status())
		}
		out.say("Exited the sidecar successfully")
		return nil
	}

	if sig, err := waitOutbound(sidecar, p.http, sigs); sig != nil || err != nil {
		_ = stopSidecar()
		if sig != nil {
			out.say("Received %s before the app started; stopped the sidecar", sig)
			return signalExitCode(sig), nil
		}
		return 0, err
	}
	reg.write()

	if len(command) == 0 {
		out.say("The sidecar is up. There is no app command: press Ctrl-C to stop.")
		select {
		case <-sigs:
		case <-sidecar.done:
		}
		return 0, stopSidecar()
	}

	appCmd := exec.Command(command[0], command[1:]...)
	appCmd.Env = append(os.Environ(), o.appEnv(p)...)
	appOut, appErrOut := out.writers(appPrefix)
	app, err := startChild(appCmd, appOut, appErrOut)
	if err != nil {
		_ = stopSidecar()
		return 0, fmt.Errorf("start the app: %w", err)
	}
	reg.entry.AppPID = app.pid()
	reg.write()
	out.say("You're up and running! Both Outrigger and your app logs will appear here.")

	var sidecarFirst bool
	select {
	case <-app.done:
		out.say("The app exited (%s); stopping the sidecar", app.status())
	case <-sidecar.done:
		sidecarFirst = true
		out.say("The sidecar exited (%s); stopping the app", sidecar.status())
	case s := <-sigs:
		out.say("Received %s; stopping the app and the sidecar", s)
	}
	armHurry()
	app.stop(out, "app", hurry)
	out.say("Exited the app: %s", app.status())
	sidecarErr := stopSidecar()
	if sidecarFirst && sidecarErr != nil {
		// The sidecar failing is what ended the run: that is the error to report.
		return 0, sidecarErr
	}
	return app.exitCode(), nil
}

// resources are the --resources-path directories, or ~/.outrigger/components.
func (o *runOptions) resources() ([]string, error) {
	if len(o.resourcesPaths) > 0 {
		return o.resourcesPaths, nil
	}
	dir, err := defaultedPath("", "components")
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("the default components directory %s does not exist: run `outrigger init` to create it, or pass --resources-path", dir)
	}
	return []string{dir}, nil
}

// pickPorts fills in the ports not given. The listeners stay open until every port
// is chosen, so no two of them are the same.
func (o *runOptions) pickPorts() (ports, error) {
	p := ports{http: o.httpPort, grpc: o.grpcPort, internal: o.internalGRPCPort, public: o.publicPort, metrics: o.metricsPort}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for _, f := range []struct {
		flag string
		port *int
	}{{"--dapr-http-port", &p.http}, {"--dapr-grpc-port", &p.grpc}, {"--dapr-internal-grpc-port", &p.internal},
		{"--dapr-public-port", &p.public}, {"--metrics-port", &p.metrics}} {
		if *f.port < 0 || *f.port > 65535 {
			return p, fmt.Errorf("%s %d: not a port number", f.flag, *f.port)
		}
		if *f.port != 0 {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return p, fmt.Errorf("pick a free port for %s: %w", f.flag, err)
		}
		lns = append(lns, ln)
		*f.port = ln.Addr().(*net.TCPAddr).Port
	}
	return p, nil
}

func (o *runOptions) sidecarArgs(p ports, resources []string) []string {
	args := []string{"sidecar", "--app-id", o.appID, "--app-protocol", o.appProtocol,
		"--dapr-http-port", strconv.Itoa(p.http), "--dapr-grpc-port", strconv.Itoa(p.grpc),
		"--dapr-internal-grpc-port", strconv.Itoa(p.internal), "--dapr-public-port", strconv.Itoa(p.public),
		"--metrics-port", strconv.Itoa(p.metrics), "--log-level", o.logLevel}
	if o.appPort > 0 {
		args = append(args, "--app-port", strconv.Itoa(o.appPort))
	}
	for _, r := range resources {
		args = append(args, "--resources-path", r)
	}
	if o.config != "" {
		args = append(args, "--config", o.config)
	}
	if o.enableAPILogging {
		args = append(args, "--enable-api-logging")
	}
	return args
}

// appEnv is what the app learns about its sidecar, as `dapr run` gives it.
func (o *runOptions) appEnv(p ports) []string {
	env := []string{"APP_ID=" + o.appID, "APP_PROTOCOL=" + o.appProtocol,
		"DAPR_HTTP_PORT=" + strconv.Itoa(p.http), "DAPR_GRPC_PORT=" + strconv.Itoa(p.grpc)}
	if o.appPort > 0 {
		env = append(env, "APP_PORT="+strconv.Itoa(o.appPort))
	}
	return env
}

// signalExitCode is a shell's exit code for a process that signal ended.
func signalExitCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}

// waitOutbound polls the sidecar's /v1.0/healthz/outbound until it answers 204, the
// sidecar exits, a signal arrives (returned) or sidecarStartTimeout passes.
func waitOutbound(sidecar *child, httpPort int, sigs <-chan os.Signal) (os.Signal, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sidecarStartTimeout)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/v1.0/healthz/outbound", httpPort)
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil, nil
			}
		}
		select {
		case <-sidecar.done:
			return nil, fmt.Errorf("the sidecar exited before it was ready (%s); its log is above", sidecar.status())
		case sig := <-sigs:
			return sig, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("the sidecar was not ready on %s within %s; its log is above", url, sidecarStartTimeout)
		case <-tick.C:
		}
	}
}

// registration keeps this run's entry in the self-hosted registry. The sidecar is
// expected to write its own entry (filling RunPID and Command from EnvRunPID and
// EnvAppCommand) before its outbound health check passes; run then adds what only it
// knows, the app's pid. When the sidecar has written no entry, run writes the whole one.
type registration struct {
	dir   string
	out   *console
	entry selfhosted.Entry
}

func (r *registration) write() {
	e := r.entry
	if have, err := selfhosted.Lookup(r.dir, e.AppID); err == nil && have.SidecarPID == e.SidecarPID {
		// The sidecar's own record wins for what the sidecar knows.
		have.RunPID, have.Command = e.RunPID, e.Command
		if e.AppPID != 0 {
			have.AppPID = e.AppPID
		}
		e = have
	}
	if err := selfhosted.Write(r.dir, e); err != nil {
		r.out.warn("Could not record the app in the registry (outrigger list, stop and invoke will not see it): %v", err)
	}
}

func (r *registration) remove() {
	if err := selfhosted.Remove(r.dir, r.entry.AppID, r.entry.SidecarPID); err != nil {
		r.out.warn("Could not remove the app from the registry: %v", err)
	}
}

// child is a process started in its own process group.
type child struct {
	cmd     *exec.Cmd
	done    chan struct{}
	flushes []func()
}

func startChild(cmd *exec.Cmd, stdout, stderr *lineWriter) (*child, error) {
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A grandchild that keeps the output pipes open must not keep Wait from returning.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{}), flushes: []func(){stdout.flush, stderr.flush}}
	go func() {
		_ = cmd.Wait()
		for _, f := range c.flushes {
			f()
		}
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// status describes how the process ended; call it once done is closed.
func (c *child) status() string {
	if !c.exited() {
		return "still running"
	}
	return c.cmd.ProcessState.String()
}

func (c *child) failed() bool { return c.exited() && c.exitCode() != 0 }

// exitCode is the process's exit code, or 128+n when signal n ended it.
func (c *child) exitCode() int {
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return c.cmd.ProcessState.ExitCode()
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// stop ends the child's whole process group: SIGTERM, then SIGKILL after
// stopGracePeriod or as soon as hurry is closed. It returns once the
// group is empty, or killWait after SIGKILL.
func (c *child) stop(out *console, name string, hurry <-chan struct{}) {
	pgid := c.pid()
	if c.exited() && !groupAlive(pgid) {
		return
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	if c.waitGone(pgid, stopGracePeriod, hurry) {
		return
	}
	select {
	case <-hurry:
		out.warn("Signalled again: killing the %s", name)
	default:
		out.warn("The %s did not stop within %s of SIGTERM; killing it", name, stopGracePeriod)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if !c.waitGone(pgid, killWait, nil) {
		out.warn("Processes of the %s's process group %d are still there after SIGKILL", name, pgid)
	}
}

// waitGone waits until the leader has been reaped and its group is empty. It reports
// false on timeout or once hurry is closed.
func (c *child) waitGone(pgid int, timeout time.Duration, hurry <-chan struct{}) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if c.exited() && !groupAlive(pgid) {
			return true
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return false
		case <-hurry:
			return false
		}
	}
}

// groupAlive reports whether any process is left in the process group. Zombies do not
// count: a grandchild orphaned by the app is reparented to init, which may take a
// while to collect it, and it has exited all the same.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return true // no /proc: the signal test is all there is
	}
	want := strconv.Itoa(pgid)
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		f, err := selfhosted.ProcStat(pid)
		if err != nil {
			continue
		}
		// state, ppid, pgrp, ...
		if len(f) >= 3 && f[2] == want && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// console serialises run's own messages and the children's prefixed lines, so that no
// two lines mix.
type console struct {
	stdout, stderr io.Writer
	outMu, errMu   sync.Mutex
}

func (c *console) say(format string, args ...any) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	fmt.Fprintf(c.stdout, format+"\n", args...)
}

func (c *console) warn(format string, args ...any) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	fmt.Fprintf(c.stderr, "Warning: "+format+"\n", args...)
}

// writers returns a child's stdout and stderr, each prefixing its lines.
func (c *console) writers(prefix string) (stdout, stderr *lineWriter) {
	return &lineWriter{mu: &c.outMu, dst: c.stdout, prefix: []byte(prefix)},
		&lineWriter{mu: &c.errMu, dst: c.stderr, prefix: []byte(prefix)}
}

// lineWriter writes each complete line with a prefix. It never fails: a child whose
// output cannot be shown must not block on a full pipe.
type lineWriter struct {
	mu     *sync.Mutex
	dst    io.Writer
	prefix []byte
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLinePrefix {
				w.emit()
			}
			break
		}
		w.buf = append(w.buf, p[:i+1]...)
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

// flush writes an unfinished last line.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit()
	}
}

func (w *lineWriter) emit() {
	line := append(append([]byte{}, w.prefix...), w.buf...)
	if line[len(line)-1] != '\n' {
		line = append(line, '\n')
	}
	_, _ = w.dst.Write(line)
	w.buf = w.buf[:0]
}

// shellJoin quotes the words as a POSIX shell needs them, for display.
func shellJoin(words []string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,") == "" {
			quoted[i] = w
			continue
		}
		quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}
