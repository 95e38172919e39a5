package cli

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/builtin"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/selfhosted"
)

func TestHelp(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	for cmd, flags := range map[string][]string{
		"init":    {"--dir", "--force", "--state-db", "pubsub"},
		"run":     {"--app-id", "--app-port", "--app-protocol", "--dapr-http-port", "--dapr-grpc-port", "--dapr-internal-grpc-port", "--metrics-port", "--resources-path", "--config", "--log-level", "--enable-api-logging", "== APP =="},
		"list":    {"--output", "json"},
		"stop":    {"--app-id", "--timeout"},
		"invoke":  {"--app-id", "--method", "--verb", "--data", "--data-file"},
		"publish": {"--publish-app-id", "--pubsub", "--topic", "--data", "--metadata"},
	} {
		t.Run(cmd, func(t *testing.T) {
			r := m.mustCLI(cmd, "--help")
			for _, f := range flags {
				if !strings.Contains(r.stdout, f) {
					t.Errorf("outrigger %s --help does not mention %s:\n%s", cmd, f, r.stdout)
				}
			}
		})
	}
}

func TestInit(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	file := filepath.Join(m.home, ".outrigger", "components", "statestore.yaml")

	first := m.mustCLI("init")
	if !strings.Contains(first.stdout, "Wrote "+file) {
		t.Errorf("first init does not say it wrote %s:\n%s", file, first.stdout)
	}
	written, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		APIVersion string `json:"apiVersion"`
		Kind       string
		Metadata   struct{ Name string }
		Spec       struct {
			Type     string
			Version  string
			Metadata []struct{ Name, Value string }
		}
	}
	if err := yaml.UnmarshalStrict(written, &c); err != nil {
		t.Fatalf("statestore.yaml: %v\n%s", err, written)
	}
	md := map[string]string{}
	for _, kv := range c.Spec.Metadata {
		md[kv.Name] = kv.Value
	}
	wantDB := filepath.Join(m.home, ".outrigger", "state.db")
	if c.APIVersion != "dapr.io/v1alpha1" || c.Kind != "Component" || c.Metadata.Name != "statestore" || c.Spec.Type != "state.sqlite" || c.Spec.Version != "v1" ||
		md["connectionString"] != wantDB || md["actorStateStore"] != "true" {
		t.Errorf("statestore.yaml is not the default state store on %s:\n%s", wantDB, written)
	}
	// init must never write a component that no sidecar of this build can load.
	builtin.RegisterDefaults()
	entries, err := os.ReadDir(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var typed struct{ Spec struct{ Type string } }
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(file), e.Name()))
		if err := yaml.Unmarshal(b, &typed); err != nil || !components.IsImplemented(typed.Spec.Type) {
			t.Errorf("init wrote %s of type %q, which this build does not implement (%v)", e.Name(), typed.Spec.Type, err)
		}
	}

	t.Run("idempotent", func(t *testing.T) {
		r := m.mustCLI("init")
		if !strings.Contains(r.stdout, "Unchanged "+file) {
			t.Errorf("second init does not report the file unchanged:\n%s", r.stdout)
		}
		if again, _ := os.ReadFile(file); string(again) != string(written) {
			t.Errorf("second init changed the file:\n%s", again)
		}
	})
	t.Run("keeps edits without --force", func(t *testing.T) {
		edited := strings.Replace(string(written), `value: "true"`, `value: "false"`, 1)
		if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		r := m.mustCLI("init")
		if !strings.Contains(r.stdout, "Kept "+file) || !strings.Contains(r.stdout, "--force") {
			t.Errorf("init does not say it kept the edited file:\n%s", r.stdout)
		}
		if now, _ := os.ReadFile(file); string(now) != edited {
			t.Errorf("init overwrote an edited file without --force:\n%s", now)
		}
		m.mustCLI("init", "--force")
		if now, _ := os.ReadFile(file); string(now) != string(written) {
			t.Errorf("init --force did not restore the default:\n%s", now)
		}
	})
	t.Run("--dir and --state-db", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "components")
		db := filepath.Join(t.TempDir(), "data", "my.db")
		m.mustCLI("init", "--dir", dir, "--state-db", db)
		b, err := os.ReadFile(filepath.Join(dir, "statestore.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), strconv.Quote(db)) {
			t.Errorf("statestore.yaml does not use %s:\n%s", db, b)
		}
		if st, err := os.Stat(filepath.Dir(db)); err != nil || !st.IsDir() {
			t.Errorf("init did not create the directory of the state file: %v", err)
		}
	})
}

func TestRunNeedsComponents(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	r := m.cli("run", "--app-id", "lonely", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "outrigger init") || !strings.Contains(r.stderr, filepath.Join(m.home, ".outrigger", "components")) {
		t.Errorf("run without components: exit code %d, want 1 and an error telling to run outrigger init:\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "Starting the sidecar") {
		t.Errorf("run started a sidecar without components:\n%s", r.stdout)
	}
}

func TestRunNeedsAppID(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.mustCLI("init")
	r := m.cli("run", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "--app-id is required") {
		t.Errorf("run without --app-id: exit code %d, want 1 and an error naming --app-id:\n%s", r.code, r.stderr)
	}
}

// The app starts once the sidecar is ready, knows its ports, and its exit code is run's.
func TestRunGivesTheAppItsSidecar(t *testing.T) {
	t.Parallel()
	requireTool(t, "python3")
	m := newMachine(t)
	m.mustCLI("init")
	httpPort := testproc.FreePort(t)
	appPort := testproc.FreePort(t)
	script := `
import json, os, urllib.request
port = os.environ["DAPR_HTTP_PORT"]
health = urllib.request.urlopen("http://127.0.0.1:%s/v1.0/healthz/outbound" % port, timeout=5).status
body = json.dumps([{"key": "k", "value": "v"}]).encode()
saved = urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%s/v1.0/state/statestore" % port, data=body,
    headers={"Content-Type": "application/json"}, method="POST"), timeout=5).status
env = {k: os.environ.get(k) for k in ["APP_ID", "APP_PORT", "APP_PROTOCOL", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT"]}
print("ENV " + json.dumps(env), flush=True)
print("HEALTH %d SAVED %d" % (health, saved), flush=True)
raise SystemExit(7)
`
	r := m.startRun("envapp", "--dapr-http-port", strconv.Itoa(httpPort), "--app-port", strconv.Itoa(appPort), "--", "python3", "-c", script)
	if code := r.wait(); code != 7 {
		t.Fatalf("run exited with %d, want the app's 7:\n%s", code, r.output())
	}
	out := r.stdout.String()
	grpcPort := regexp.MustCompile(`gRPC port: (\d+)\.`).FindStringSubmatch(out)
	if grpcPort == nil {
		t.Fatalf("run did not print the gRPC port:\n%s", out)
	}
	envLine := regexp.MustCompile(`(?m)^== APP == ENV (.*)$`).FindStringSubmatch(out)
	if envLine == nil {
		t.Fatalf("no prefixed app output:\n%s", r.output())
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(envLine[1]), &env); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"APP_ID": "envapp", "APP_PORT": strconv.Itoa(appPort), "APP_PROTOCOL": "http",
		"DAPR_HTTP_PORT": strconv.Itoa(httpPort), "DAPR_GRPC_PORT": grpcPort[1]}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("app's %s = %q, want %q", k, env[k], v)
		}
	}
	// The sidecar was ready (outbound) before the app's first line ran.
	if !strings.Contains(out, "== APP == HEALTH 204 SAVED 204") {
		t.Errorf("the app could not use its sidecar from its first line:\n%s", r.output())
	}
	if !strings.Contains(r.stderr.String(), "== DAPR == ") {
		t.Errorf("the sidecar's log is not prefixed:\n%s", r.stderr.String())
	}
	if entries, _ := selfhosted.List(m.registry); len(entries) != 0 {
		t.Errorf("the registry still lists %+v", entries)
	}
	if files, _ := filepath.Glob(filepath.Join(m.registry, "*.json")); len(files) != 0 {
		t.Errorf("run left registry files behind: %v", files)
	}
}

// When the app exits, the sidecar is stopped and run exits with the app's code.
func TestAppExitStopsTheSidecar(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.mustCLI("init")
	// The app prints the registry entry run wrote before starting it, which names the
	// sidecar's pid, then exits.
	r := m.startRun("shortlived", "--", "sh", "-c", `cat "$OUTRIGGER_REGISTRY_DIR/shortlived.json"; echo; exit 3`)
	if code := r.wait(); code != 3 {
		t.Fatalf("run exited with %d, want the app's 3:\n%s", code, r.output())
	}
	match := regexp.MustCompile(`"sidecarPid": (\d+)`).FindStringSubmatch(r.stdout.String())
	if match == nil {
		t.Fatalf("the app did not see its registry entry:\n%s", r.output())
	}
	sidecarPID, _ := strconv.Atoi(match[1])
	if running(sidecarPID) {
		t.Errorf("the sidecar (pid %d) is still running after run exited", sidecarPID)
	}
	if !strings.Contains(r.stdout.String(), "Exited the sidecar successfully") {
		t.Errorf("run did not report the sidecar's exit:\n%s", r.output())
	}
}

// list, a second run of the same app id, and stop, on an app with a child process of
// its own.
func TestListAndStop(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.mustCLI("init")
	appPort := testproc.FreePort(t)
	r := m.startRun("lister", "--app-port", strconv.Itoa(appPort), "--",
		"sh", "-c", `sleep 300 & echo "child $!"; wait`)
	e := r.waitEntry()
	r.waitOutput("child ")
	child := childPID(t, r)
	m.track(child)

	if e.RunPID != r.cmd.Process.Pid || e.SidecarPID == 0 || e.AppPort != appPort || e.HTTPPort == 0 || e.GRPCPort == 0 ||
		!strings.HasPrefix(e.Command, "sh -c 'sleep 300") {
		t.Errorf("registry entry %+v", e)
	}

	t.Run("table", func(t *testing.T) {
		out := m.mustCLI("list").stdout
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("list:\n%s", out)
		}
		for _, col := range []string{"APP ID", "HTTP PORT", "GRPC PORT", "APP PORT", "AGE", "SIDECAR PID", "RUN PID", "APP PID", "COMMAND"} {
			if !strings.Contains(lines[0], col) {
				t.Errorf("list header has no %s column:\n%s", col, out)
			}
		}
		fields := strings.Fields(lines[1])
		for _, want := range []string{"lister", strconv.Itoa(e.HTTPPort), strconv.Itoa(e.GRPCPort), strconv.Itoa(appPort),
			strconv.Itoa(e.SidecarPID), strconv.Itoa(e.RunPID), strconv.Itoa(e.AppPID), "sh"} {
			if !contains(fields, want) {
				t.Errorf("list row has no %s:\n%s", want, out)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		var got []struct {
			selfhosted.Entry
			Age string `json:"age"`
		}
		out := m.mustCLI("list", "-o", "json").stdout
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("list -o json: %v\n%s", err, out)
		}
		if len(got) != 1 || got[0].AppID != "lister" || got[0].HTTPPort != e.HTTPPort || got[0].SidecarPID != e.SidecarPID ||
			got[0].RunPID != e.RunPID || got[0].AppPID != e.AppPID || got[0].Command != e.Command || got[0].Age == "" {
			t.Errorf("list -o json = %+v, want the entry %+v", got, e)
		}
	})
	t.Run("unknown output", func(t *testing.T) {
		if r := m.cli("list", "-o", "xml"); r.code != 1 || !strings.Contains(r.stderr, "table or json") {
			t.Errorf("list -o xml: %d %s", r.code, r.stderr)
		}
	})
	t.Run("same app id twice", func(t *testing.T) {
		r := m.cli("run", "--app-id", "lister", "--", "true")
		if r.code != 1 || !strings.Contains(r.stderr, "already running") {
			t.Errorf("second run of lister: exit code %d:\n%s", r.code, r.stderr)
		}
	})

	stop := m.mustCLI("stop", "--app-id", "lister")
	if !strings.Contains(stop.stdout, "app stopped successfully: lister") {
		t.Errorf("stop: %s", stop.stdout)
	}
	// stop returns once run, the sidecar and the app are gone; the app's child went
	// with its process group.
	for name, pid := range map[string]int{"run": e.RunPID, "sidecar": e.SidecarPID, "app": e.AppPID, "the app's child": child} {
		if running(pid) {
			t.Errorf("%s (pid %d) is still running after stop returned", name, pid)
		}
	}
	r.wait()
	if out := m.mustCLI("list").stdout; !strings.Contains(out, "No apps are running.") {
		t.Errorf("list after stop:\n%s", out)
	}
	if out := m.mustCLI("list", "-o", "json").stdout; strings.TrimSpace(out) != "[]" {
		t.Errorf("list -o json after stop: %s", out)
	}
	if r := m.cli("stop", "--app-id", "lister"); r.code != 1 || !strings.Contains(r.stderr, "no app with id") {
		t.Errorf("stop of a stopped app: %d %s", r.code, r.stderr)
	}
}

// Ctrl-C on run stops the app, its children and the sidecar.
func TestInterruptStopsEverything(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.mustCLI("init")
	r := m.startRun("interrupted", "--", "sh", "-c", `sleep 300 & echo "child $!"; wait`)
	e := r.waitEntry()
	r.waitOutput("child ")
	child := childPID(t, r)
	m.track(child)

	if err := r.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// sh dies of the SIGTERM run sends it.
	if code := r.wait(); code != 128+int(syscall.SIGTERM) {
		t.Errorf("run exited with %d after Ctrl-C, want the app's %d", code, 128+int(syscall.SIGTERM))
	}
	for name, pid := range map[string]int{"sidecar": e.SidecarPID, "app": e.AppPID, "the app's child": child} {
		if running(pid) {
			t.Errorf("%s (pid %d) is still running after run exited", name, pid)
		}
	}
	if _, err := selfhosted.Lookup(m.registry, "interrupted"); err == nil {
		t.Error("the registry still has the entry")
	}
}

// A sidecar that exits takes its app with it.
func TestSidecarExitStopsTheApp(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	m.mustCLI("init")
	r := m.startRun("orphan", "--", "sleep", "300")
	e := r.waitEntry()
	if err := syscall.Kill(e.SidecarPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r.wait()
	if running(e.AppPID) {
		t.Errorf("the app (pid %d) outlived its sidecar", e.AppPID)
	}
	if !strings.Contains(r.stdout.String(), "The sidecar exited") {
		t.Errorf("run did not say why it stopped:\n%s", r.output())
	}
}

// invoke and publish make exactly the HTTP call to the app's sidecar; a fake sidecar
// (this test process, with an HTTP server) stands in for it.
func TestInvokeAndPublishCallTheSidecar(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	type call struct {
		method, uri, contentType, body string
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, call{r.Method, r.RequestURI, r.Header.Get("Content-Type"), string(b)})
		mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/method/fail"):
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"errorCode":"ERR_DIRECT_INVOKE","message":"boom"}`)
		case strings.HasPrefix(r.URL.Path, "/v1.0/publish/"):
			w.WriteHeader(http.StatusNoContent)
		default:
			_, _ = io.WriteString(w, `{"orderId":42}`)
		}
	}))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	if err := selfhosted.Write(m.registry, selfhosted.Entry{AppID: "fake", HTTPPort: port, SidecarPID: os.Getpid(), Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	last := func() call {
		mu.Lock()
		defer mu.Unlock()
		if len(calls) == 0 {
			return call{}
		}
		return calls[len(calls)-1]
	}
	dataFile := filepath.Join(t.TempDir(), "order.json")
	if err := os.WriteFile(dataFile, []byte(`{"data":{"orderId":7}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		args     []string
		want     call
		code     int
		stdout   string
		inStderr string
	}{
		{name: "post with data", args: []string{"invoke", "--app-id", "fake", "--method", "neworder", "--data", `{"data":{"orderId":42}}`},
			want: call{"POST", "/v1.0/invoke/fake/method/neworder", "application/json", `{"data":{"orderId":42}}`}, stdout: "{\"orderId\":42}\n", inStderr: "App invoked successfully"},
		{name: "get with a query", args: []string{"invoke", "-a", "fake", "-m", "orders/7?verbose=1", "--verb", "get"},
			want: call{"GET", "/v1.0/invoke/fake/method/orders/7?verbose=1", "", ""}, stdout: "{\"orderId\":42}\n"},
		{name: "data file", args: []string{"invoke", "-a", "fake", "-m", "neworder", "--data-file", dataFile},
			want: call{"POST", "/v1.0/invoke/fake/method/neworder", "application/json", `{"data":{"orderId":7}}`}, stdout: "{\"orderId\":42}\n"},
		{name: "non-2xx", args: []string{"invoke", "-a", "fake", "-m", "fail"},
			want: call{"POST", "/v1.0/invoke/fake/method/fail", "", ""}, code: 1, inStderr: `HTTP 500 Internal Server Error: {"errorCode":"ERR_DIRECT_INVOKE","message":"boom"}`},
		{name: "unknown app", args: []string{"invoke", "-a", "nobody", "-m", "x"}, code: 1, inStderr: `no app with id "nobody" is running`},
		{name: "both data flags", args: []string{"invoke", "-a", "fake", "-m", "x", "-d", "{}", "-f", dataFile}, code: 1, inStderr: "data"},
		{name: "publish", args: []string{"publish", "--publish-app-id", "fake", "--pubsub", "pubsub", "--topic", "orders", "--data", `{"orderId":1}`, "--metadata", `{"ttlInSeconds":"60"}`},
			want: call{"POST", "/v1.0/publish/pubsub/orders?metadata.ttlInSeconds=60", "application/json", `{"orderId":1}`}, stdout: "Event published successfully\n"},
		{name: "publish a cloudevent", args: []string{"publish", "-i", "fake", "-p", "pubsub", "-t", "orders", "-d", `{"specversion":"1.0","id":"1","type":"t","source":"s"}`},
			want: call{"POST", "/v1.0/publish/pubsub/orders", "application/cloudevents+json", `{"specversion":"1.0","id":"1","type":"t","source":"s"}`}, stdout: "Event published successfully\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := last()
			r := m.cli(tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			if tc.stdout != "" && r.stdout != tc.stdout {
				t.Errorf("stdout %q, want %q", r.stdout, tc.stdout)
			}
			if tc.code != 0 && r.stdout != "" {
				t.Errorf("a failed call printed on stdout: %q", r.stdout)
			}
			if !strings.Contains(r.stderr, tc.inStderr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.inStderr)
			}
			got := last()
			if tc.want.method == "" {
				if got != before {
					t.Errorf("the sidecar was called: %+v", got)
				}
				return
			}
			if tc.want.body == "" && tc.want.contentType == "" {
				got.contentType, got.body = "", ""
			}
			if got != tc.want {
				t.Errorf("the sidecar got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// childPID is the pid the app printed as "child N".
func childPID(t *testing.T, r *run) int {
	t.Helper()
	m := regexp.MustCompile(`== APP == child (\d+)`).FindStringSubmatch(r.stdout.String())
	if m == nil {
		t.Fatalf("no child pid in:\n%s", r.output())
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
