package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

// TestHelloWorld is the seed's scenario with the sample apps of examples/hello-world,
// each started with `outrigger run`: pythonapp posts an order every second to nodeapp
// through its sidecar, nodeapp saves it through its own, and `outrigger invoke` returns
// the latest order.
func TestHelloWorld(t *testing.T) {
	t.Parallel()
	requireTool(t, "node")
	requireTool(t, "python3")
	m := newMachine(t)
	m.mustCLI("init")
	examples := filepath.Join(repoRoot(), "examples", "hello-world")

	node := m.startRun("nodeapp", "--app-port", strconv.Itoa(testproc.FreePort(t)), "--", "node", filepath.Join(examples, "node", "app.js"))
	nodeEntry := node.waitEntry()
	node.waitOutput("== APP == Node App listening on port")
	if reason := invocationMissing(t, nodeEntry.HTTPPort); reason != "" {
		t.Skipf("service invocation is not in the sidecar yet (GET /v1.0/invoke/nodeapp/method/order answered %s); this test runs once it is", reason)
	}

	python := m.startRun("pythonapp", "--", "python3", filepath.Join(examples, "python", "app.py"))
	pythonEntry := python.waitEntry()
	node.waitOutput("== APP == Successfully persisted state.")

	persisted, _ := orders(node.stdout.String())
	r := m.mustCLI("invoke", "--app-id", "nodeapp", "--method", "order", "--verb", "GET")
	_, received := orders(node.stdout.String())
	var order struct {
		OrderID int `json:"orderId"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &order); err != nil {
		t.Fatalf("outrigger invoke nodeapp order: %v\n%s", err, r.stdout)
	}
	// The latest order is at least the last one nodeapp had saved before the call, and
	// at most the last one it had received after.
	if order.OrderID < persisted || order.OrderID > received || order.OrderID < 1 {
		t.Errorf("outrigger invoke returned order %d; nodeapp had persisted up to %d before and received up to %d after\n%s",
			order.OrderID, persisted, received, node.output())
	}

	m.mustCLI("stop", "--app-id", "pythonapp", "--app-id", "nodeapp")
	python.wait()
	node.wait()
	m.waitGone("the apps and their sidecars", nodeEntry.SidecarPID, nodeEntry.AppPID, pythonEntry.SidecarPID, pythonEntry.AppPID)
}

// invocationMissing calls the invoke route and describes the answer when it is the one
// a sidecar without service invocation gives: 404 ERR_DIRECT_INVOKE because no route
// matches (or "not implemented"). Any other answer, failures included, is "".
func invocationMissing(t *testing.T, httpPort int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v1.0/invoke/nodeapp/method/order", httpPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("call nodeapp's sidecar: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var apiErr struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	_ = json.Unmarshal(body, &apiErr)
	if resp.StatusCode == http.StatusNotFound && apiErr.ErrorCode == "ERR_DIRECT_INVOKE" &&
		(strings.Contains(apiErr.Message, "no API route matches") || strings.Contains(strings.ToLower(apiErr.Message), "not implemented")) {
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return ""
}

var orderLine = regexp.MustCompile(`(?m)^== APP == (?:Got a new order! Order ID: (\d+)|(Successfully persisted state\.))$`)

// orders reads nodeapp's log: the id of the last order it persisted, and of the last it
// received. pythonapp waits for each answer, so the log is in order.
func orders(log string) (persisted, received int) {
	for _, m := range orderLine.FindAllStringSubmatch(log, -1) {
		if m[1] != "" {
			received, _ = strconv.Atoi(m[1])
		} else {
			persisted = received
		}
	}
	return persisted, received
}

// repoRoot is the module's root, found from this file's path.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
