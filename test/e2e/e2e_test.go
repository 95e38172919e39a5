//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/outrigger-dev/outrigger/internal/localcp"
	"github.com/outrigger-dev/outrigger/internal/testproc"
)

const (
	redisAddr = "127.0.0.1:6379"
	pgAddr    = "127.0.0.1:5432"
	// pgConn is how the pods reach PostgreSQL: localhost in the pod is the machine's
	// loopback, through the local kubelet's relay. Trust auth, as the conformance suite.
	pgConn = "host=localhost port=5432 user=postgres dbname=test sslmode=disable"
	// stepTimeout bounds each wait of the test.
	stepTimeout = 2 * time.Minute
)

func TestHelloKubernetes(t *testing.T) {
	requireMachine(t)
	testproc.RequireServer(t, "Redis", redisAddr)
	testproc.RequireServer(t, "PostgreSQL", pgAddr)
	assets, err := localcp.AssetsDir()
	if err != nil {
		failOrSkip(t, "envtest binaries: %v", err)
	}
	kubectlBin := filepath.Join(assets, "kubectl")
	if _, err := os.Stat(kubectlBin); err != nil {
		failOrSkip(t, "no kubectl next to the envtest binaries: %v", err)
	}

	began := time.Now()
	d := startDemo(t, assets)
	t.Logf("demo up in %s", time.Since(began).Round(time.Millisecond))
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)

	// The orders flow: pythonapp posts an order every second to nodeapp through both
	// sidecars, and nodeapp keeps the latest in the state store.
	ctx := stepCtx(t)
	first := d.waitOrder(ctx, t, 0)
	second := d.waitOrder(ctx, t, first)
	t.Logf("orders flow: order %d, then %d (%s)", first, second, time.Since(began).Round(time.Millisecond))
	if !strings.Contains(d.output.String(), "Got a new order! Order ID: ") ||
		!strings.Contains(d.output.String(), "Successfully persisted state.") {
		t.Errorf("nodeapp's log lines are missing from the demo's output")
	}
	procs := d.processes(ctx, t)
	d.checkMTLS(ctx, t)

	// The state store moves from Redis to PostgreSQL with kubectl apply; new orders land
	// in PostgreSQL.
	table := "e2e_state_" + suffix
	pg := connectPostgres(t)
	t.Cleanup(func() { _, _ = pg.Exec(context.Background(), `DROP TABLE IF EXISTS `+table) })
	swapped := time.Now()
	d.kubectl(t, "apply", `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.postgresql
  version: v1
  metadata:
  - name: connectionString
    value: "`+pgConn+`"
  - name: tableName
    value: `+table+`
`)
	ctx = stepCtx(t)
	inPG := waitFor(ctx, t, "an order in PostgreSQL", func() (int, bool) {
		n, err := pgOrder(ctx, pg, table)
		return n, err == nil && n > 0
	})
	t.Logf("statestore on PostgreSQL: order %d landed in table %s %s after the apply", inPG, table, time.Since(swapped).Round(time.Millisecond))
	waitFor(ctx, t, "a later order in PostgreSQL", func() (int, bool) {
		n, err := pgOrder(ctx, pg, table)
		return n, err == nil && n > inPG
	})
	if got := d.waitOrder(ctx, t, inPG); got <= inPG {
		t.Errorf("GET order after the swap: %d, want past %d", got, inPG)
	}

	// A Subscription applied while the apps run starts delivering to its route.
	topic := "e2e-orders-" + suffix
	t.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		_ = rdb.Del(context.Background(), topic).Err()
		_ = rdb.Close()
	})
	// Two pub/subs, so that deleting one leaves the other: Dapr answers a call to a
	// missing pub/sub with ERR_PUBSUB_NOT_FOUND only while some pub/sub exists, and with
	// ERR_PUBSUB_NOT_CONFIGURED when none does.
	d.kubectl(t, "apply", `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: spare-pubsub
spec:
  type: pubsub.in-memory
  version: v1
`)
	ctx = stepCtx(t)
	waitFor(ctx, t, "nodeapp's sidecar to load the pubsub Component", func() (struct{}, bool) {
		code, body := d.call(ctx, http.MethodGet, "/v1.0/metadata", "")
		return struct{}{}, code == http.StatusOK && strings.Contains(body, `"name":"pubsub"`) && strings.Contains(body, `"name":"spare-pubsub"`)
	})
	subscribed := time.Now()
	d.kubectl(t, "apply", `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: e2e-orders
spec:
  pubsubname: pubsub
  topic: `+topic+`
  routes:
    default: /events
scopes:
- nodeapp
`)
	i := 0
	waitFor(ctx, t, "an event delivered to nodeapp's /events", func() (struct{}, bool) {
		i++
		code, body := d.call(ctx, http.MethodPost, "/v1.0/publish/pubsub/"+topic, fmt.Sprintf(`{"n":%d}`, i))
		if code != http.StatusNoContent {
			t.Logf("publish: %d %s", code, body)
		}
		code, body = d.call(ctx, http.MethodGet, "/v1.0/invoke/nodeapp/method/events", "")
		return struct{}{}, code == http.StatusOK && strings.Contains(body, `"topic":"`+topic+`"`)
	})
	t.Logf("subscription: first event delivered %s after the apply", time.Since(subscribed).Round(time.Millisecond))

	// A deleted Component is gone: calls get Dapr's not-found error, and the other
	// pub/sub is untouched.
	deleted := time.Now()
	d.kubectl(t, "delete", "component", "pubsub")
	var lastBody string
	waitFor(ctx, t, "publishing to the deleted pubsub to fail with ERR_PUBSUB_NOT_FOUND", func() (struct{}, bool) {
		code, body := d.call(ctx, http.MethodPost, "/v1.0/publish/pubsub/"+topic, `{"n":0}`)
		lastBody = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
		return struct{}{}, code == http.StatusNotFound && strings.Contains(body, "ERR_PUBSUB_NOT_FOUND")
	})
	t.Logf("delete: %s, %s after the delete", lastBody, time.Since(deleted).Round(time.Millisecond))
	if code, body := d.call(ctx, http.MethodPost, "/v1.0/publish/spare-pubsub/"+topic, `{"n":0}`); code != http.StatusNoContent {
		t.Errorf("publish to spare-pubsub after deleting pubsub: %d %s", code, body)
	}
	d.kubectl(t, "delete", "component", "spare-pubsub")
	waitFor(ctx, t, "publishing with no pubsub left to fail with ERR_PUBSUB_NOT_CONFIGURED", func() (struct{}, bool) {
		code, body := d.call(ctx, http.MethodPost, "/v1.0/publish/spare-pubsub/"+topic, `{"n":0}`)
		return struct{}{}, code == http.StatusBadRequest && strings.Contains(body, "ERR_PUBSUB_NOT_CONFIGURED")
	})

	// Nothing was restarted along the way.
	if after := d.processes(stepCtx(t), t); !equalProcesses(procs, after) {
		t.Errorf("containers restarted during the test:\nbefore %v\nafter  %v", procs, after)
	}

	// Ctrl-C stops everything and leaves nothing behind.
	d.stop(t)
	for _, p := range procs {
		if pid := p.pid(); pid > 0 && syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d (%s) is still running after the demo stopped", pid, p.name)
		}
	}
	for _, ns := range d.netns() {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Errorf("network namespace %s is still there after the demo stopped", ns)
		}
	}
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// requireMachine skips, or fails under CI, unless the local kubelet can run here.
func requireMachine(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		failOrSkip(t, "the local kubelet needs root for network namespaces")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		failOrSkip(t, "ip netns is not available: %v %s", err, out)
	}
	for _, tool := range []string{"node", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			failOrSkip(t, "the sample apps need %s: %v", tool, err)
		}
	}
}

func failOrSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func stepCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls ok until it holds, or fails the test when ctx ends.
func waitFor[T any](ctx context.Context, t *testing.T, what string, ok func() (T, bool)) T {
	t.Helper()
	for {
		v, done := ok()
		if done {
			return v
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// demo is a running `outrigger dev --demo`.
type demo struct {
	cmd        *exec.Cmd
	output     *testproc.SyncBuffer
	done       chan struct{}
	waitErr    error
	base       string
	kubeconfig string
	kubectlBin string
	clientset  kubernetes.Interface
}

func startDemo(t *testing.T, assets string) *demo {
	t.Helper()
	bin := testproc.Binary(t)
	dir := t.TempDir()
	port := testproc.FreePort(t)
	d := &demo{
		output:     &testproc.SyncBuffer{},
		done:       make(chan struct{}),
		base:       fmt.Sprintf("http://127.0.0.1:%d", port),
		kubeconfig: filepath.Join(dir, "kubeconfig"),
		kubectlBin: filepath.Join(assets, "kubectl"),
	}
	d.cmd = exec.Command(bin, "dev", "--demo",
		"--kubeconfig-out", d.kubeconfig,
		"--demo-dir", filepath.Join(dir, "demo"),
		"--demo-port", strconv.Itoa(port),
		"--demo-state-store", "redis")
	d.cmd.Env = append(os.Environ(), localcp.AssetsEnv+"="+assets, "NO_COLOR=1")
	d.cmd.Stdout, d.cmd.Stderr = d.output, d.output
	// Its own process group: the test signals it alone, once, as a terminal's Ctrl-C.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("outrigger dev --demo output:\n%s", d.output.String())
			if logs, err := os.ReadFile(filepath.Join(dir, "demo", "control-plane.log")); err == nil {
				t.Logf("control-plane.log (last 8 KiB):\n%s", tail(logs, 8<<10))
			}
		}
	})

	ctx := stepCtx(t)
	waitFor(ctx, t, "the demo's kubeconfig", func() (struct{}, bool) {
		select {
		case <-d.done:
			t.Fatalf("outrigger dev --demo exited: %v\n%s", d.waitErr, d.output.String())
		default:
		}
		_, err := os.Stat(d.kubeconfig)
		return struct{}{}, err == nil && strings.Contains(d.output.String(), "walkthrough is running")
	})
	cfg, err := clientcmd.BuildConfigFromFlags("", d.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if d.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return d
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// stop sends one SIGINT and waits for the demo to finish its cleanup.
func (d *demo) stop(t *testing.T) {
	t.Helper()
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
		if d.waitErr != nil {
			t.Errorf("outrigger dev --demo exited with %v after Ctrl-C", d.waitErr)
		}
	case <-time.After(90 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		t.Errorf("outrigger dev --demo did not stop within 90s of Ctrl-C")
	}
}

// call makes one HTTP call to nodeapp's sidecar through the demo's forwarded port; a
// transport error comes back as status 0.
func (d *demo) call(ctx context.Context, method, path, body string) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitOrder waits until GET order, invoked through nodeapp's sidecar, returns an
// order past after.
func (d *demo) waitOrder(ctx context.Context, t *testing.T, after int) int {
	t.Helper()
	return waitFor(ctx, t, fmt.Sprintf("an order past %d from GET /v1.0/invoke/nodeapp/method/order", after), func() (int, bool) {
		code, body := d.call(ctx, http.MethodGet, "/v1.0/invoke/nodeapp/method/order", "")
		if code != http.StatusOK {
			return 0, false
		}
		n, err := orderID([]byte(body))
		return n, err == nil && n > after
	})
}

func orderID(b []byte) (int, error) {
	var o struct {
		OrderID json.Number `json:"orderId"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(o.OrderID.String())
	return n, err
}

// kubectl runs the envtest kubectl against the demo; stdin, when given, is a manifest.
func (d *demo) kubectl(t *testing.T, args ...string) {
	t.Helper()
	var stdin string
	if args[0] == "apply" {
		stdin, args = args[1], []string{"apply", "-f", "-"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.kubectlBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("kubectl %s: %s", strings.Join(args, " "), bytes.TrimSpace(out))
}

// checkMTLS: the sidecars got their certificates from the dev control plane's
// certificate authority, and nodeapp's sidecar serves its internal API only to callers
// that show one.
func (d *demo) checkMTLS(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, app := range []string{"nodeapp", "pythonapp"} {
		if want := "mTLS enabled, identity spiffe://public/ns/default/" + app; !strings.Contains(d.output.String(), want) {
			t.Errorf("%s's sidecar did not log %q", app, want)
		}
	}
	pods, err := d.clientset.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var podIP string
	for _, p := range pods.Items {
		if strings.HasPrefix(p.Name, "nodeapp-") {
			podIP = p.Status.PodIP
		}
	}
	if podIP == "" {
		t.Fatalf("no IP for nodeapp's pod")
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", net.JoinHostPort(podIP, "50002"), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("TLS to nodeapp's sidecar internal API: %v", err)
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 || len(certs[0].URIs) == 0 || certs[0].URIs[0].String() != "spiffe://public/ns/default/nodeapp" {
		t.Errorf("nodeapp's sidecar serves certificate %v, want the SPIFFE ID spiffe://public/ns/default/nodeapp", certs)
	}
	// TLS 1.3 reports the missing client certificate on the first read.
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	_, err = conn.Read(make([]byte, 64))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("a caller without a certificate was not refused: read %v", err)
	} else {
		t.Logf("mTLS: nodeapp's sidecar is spiffe://public/ns/default/nodeapp and refuses a caller without a certificate (%v)", err)
	}
}

// process is one container's process, as the local kubelet reports it.
type process struct {
	name        string
	containerID string
	restarts    int32
}

func (p process) pid() int {
	n, _ := strconv.Atoi(strings.TrimPrefix(p.containerID, "process://"))
	return n
}

func (d *demo) processes(ctx context.Context, t *testing.T) []process {
	t.Helper()
	pods, err := d.clientset.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []process
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			out = append(out, process{name: p.Name + "/" + c.Name, containerID: c.ContainerID, restarts: c.RestartCount})
		}
	}
	if len(out) != 4 {
		t.Fatalf("want the 4 containers of nodeapp and pythonapp, have %v", out)
	}
	for _, p := range out {
		if p.pid() == 0 {
			t.Fatalf("container %s has no process: %q", p.name, p.containerID)
		}
	}
	return out
}

func equalProcesses(a, b []process) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[process]bool{}
	for _, p := range a {
		seen[p] = true
	}
	for _, p := range b {
		if !seen[p] {
			return false
		}
	}
	return true
}

var netnsRE = regexp.MustCompile(`network namespace (outrigger\d+-\d+)`)

// netns are the pods' network namespaces, as the demo printed them.
func (d *demo) netns() []string {
	var out []string
	for _, m := range netnsRE.FindAllStringSubmatch(d.output.String(), -1) {
		out = append(out, m[1])
	}
	return out
}

func connectPostgres(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable")
	if err != nil {
		failOrSkip(t, "connect to PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// pgOrder reads nodeapp's order from the state table, as Dapr lays it out: the key is
// "<app id>||<key>", the value JSON.
func pgOrder(ctx context.Context, pg *pgx.Conn, table string) (int, error) {
	var value string
	err := pg.QueryRow(ctx, `SELECT value::text FROM `+table+` WHERE key = 'nodeapp||order'`).Scan(&value)
	if err != nil {
		return 0, err
	}
	return orderID([]byte(value))
}
