// Package docs_test keeps the documentation true: the generated references must be what
// `make docs` writes, links must resolve, and every example marked with a test comment
// must run. A fenced block preceded by one of these lines is tested:
//
//	<!-- test: apply -->   YAML the API server accepts (server-side dry run, with the
//	                       operator's validating webhooks) in a namespace of its own
//	<!-- test: inject -->  a Deployment or Pod the injector gives a daprd container
//	<!-- test: sh -->      shell commands, run with bash against a local control plane
//	                       (kubectl on PATH, KUBECONFIG set) from the repository root
//	<!-- test: http -->    curl commands against a running sidecar (localhost:3500)
//	<!-- test: output -->  what the block before it prints: line by line, a JSON line
//	                       matches when the output holds at least its fields
package docs_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/controllers"
	"github.com/outrigger-dev/outrigger/internal/docgen"
	"github.com/outrigger-dev/outrigger/internal/localcp"
	"github.com/outrigger-dev/outrigger/internal/manifests"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/internal/testproc"
	"github.com/outrigger-dev/outrigger/webhooks/injector"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

const root = ".."

// block is one fenced code block of a page.
type block struct {
	file   string
	line   int
	marker string
	lang   string
	body   string
	output *block
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var (
	markerRE = regexp.MustCompile(`^<!-- test: ([a-z]+) -->$`)
	fenceRE  = regexp.MustCompile("^```([a-z]*)\\s*$")
)

// pages lists the hand-written pages and the generated references.
func pages(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"*.md", "reference/*.md"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) == 0 {
		t.Fatal("no pages")
	}
	return out
}

// blocks parses the marked blocks of a page; an output block is attached to the block
// before it.
func blocks(t *testing.T, file string) []*block {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out  []*block
		cur  *block
		prev string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if cur != nil {
			if strings.TrimSpace(line) == "```" {
				if cur.marker == "output" {
					if len(out) == 0 {
						t.Fatalf("%s: an output block with no block before it", cur)
					}
					out[len(out)-1].output = cur
				} else if cur.marker != "" {
					out = append(out, cur)
				}
				cur = nil
				continue
			}
			cur.body += line + "\n"
			continue
		}
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			cur = &block{file: file, line: n, lang: m[1]}
			if mm := markerRE.FindStringSubmatch(strings.TrimSpace(prev)); mm != nil {
				cur.marker = mm[1]
			}
		}
		if m := markerRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			switch m[1] {
			case "apply", "inject", "sh", "http", "output":
			default:
				t.Errorf("%s:%d: unknown test marker %q", file, n, m[1])
			}
		}
		if strings.TrimSpace(line) != "" {
			prev = line
		}
	}
	if cur != nil {
		t.Fatalf("%s: unclosed code block", cur)
	}
	return out
}

func marked(t *testing.T, kind string) []*block {
	t.Helper()
	var out []*block
	for _, p := range pages(t) {
		for _, b := range blocks(t, p) {
			if b.marker == kind {
				out = append(out, b)
			}
		}
	}
	return out
}

// The generated pages are what `make docs` writes (the CLI page is checked in
// cmd/outrigger, whose command tree it comes from).
func TestGeneratedReferenceIsFresh(t *testing.T) {
	pages, err := docgen.Generate(filepath.Join(root))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range pages {
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make docs", name)
		}
	}
}

var linkRE = regexp.MustCompile(`\]\(([^)#\s]*)(#[^)\s]*)?\)`)

// Relative links point at files of the repository, and anchors at headings.
func TestLinks(t *testing.T) {
	for _, p := range pages(t) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range linkRE.FindAllStringSubmatch(prose(string(data)), -1) {
			target, anchor := m[1], strings.TrimPrefix(m[2], "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path := p
			if target != "" {
				path = filepath.Join(filepath.Dir(p), target)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s links to %s, which does not exist", p, target)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !hasAnchor(t, path, anchor) {
				t.Errorf("%s links to %s#%s, which has no such heading", p, target, anchor)
			}
		}
	}
}

var (
	fencedRE = regexp.MustCompile("(?s)\n```.*?\n```")
	codeRE   = regexp.MustCompile("`[^`\n]*`")
)

// prose drops code, where brackets and parentheses are not links.
func prose(md string) string {
	md = fencedRE.ReplaceAllString(md, "\n")
	return codeRE.ReplaceAllStringFunc(md, func(c string) string {
		if strings.ContainsAny(c, "[]()") {
			return ""
		}
		return c
	})
}

func hasAnchor(t *testing.T, path, anchor string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") &&
			docgen.Slug(strings.ReplaceAll(h, "`", "")) == anchor {
			return true
		}
	}
	return false
}

func TestMain(m *testing.M) { testenv.Main(m) }

// operatorEnv is a control plane with the operator's controllers and webhooks, the
// injector included, served from the test; one per test binary, since controller names
// are global.
func operatorEnv(t *testing.T) *testenv.Env {
	t.Helper()
	inj := &injector.Handler{Defaults: injector.Defaults{Image: "ghcr.io/outrigger-dev/outrigger:docs"},
		ControlPlaneNamespace: "outrigger-system", AllowedServiceAccounts: injector.DefaultAllowedServiceAccounts}
	return testenv.Shared(t, controllers.SetupWithManager, validation.SetupWithManager,
		func(mgr ctrl.Manager) error { return injector.SetupWithManager(mgr, inj) })
}

func TestExamplesApplyAndInject(t *testing.T) {
	apply, inject := marked(t, "apply"), marked(t, "inject")
	if len(apply) == 0 || len(inject) == 0 {
		t.Fatalf("%d apply and %d inject examples: the docs must have some", len(apply), len(inject))
	}
	env := operatorEnv(t)
	ctx := context.Background()
	for _, b := range apply {
		t.Run(b.String(), func(t *testing.T) {
			ns := env.Namespace(t, "docs")
			objs, err := manifests.Decode([]byte(b.body))
			if err != nil || len(objs) == 0 {
				t.Fatalf("parse: %v", err)
			}
			for _, o := range objs {
				if o.GetNamespace() == "" && o.GetKind() != "Namespace" {
					o.SetNamespace(ns)
				}
				if err := env.Client.Create(ctx, o, client.DryRunAll); err != nil {
					t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
		})
	}
	for _, b := range inject {
		t.Run(b.String(), func(t *testing.T) {
			ns := env.Namespace(t, "docs")
			objs, err := manifests.Decode([]byte(b.body))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			var pods int
			for _, o := range objs {
				pod := podOf(t, o)
				if pod == nil {
					continue
				}
				pods++
				pod.Namespace = ns
				if err := env.Client.Create(ctx, pod, client.DryRunAll); err != nil {
					t.Fatalf("create the pod of %s %s: %v", o.GetKind(), o.GetName(), err)
				}
				all := append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...)
				if !slices.ContainsFunc(all, func(c corev1.Container) bool { return c.Name == "daprd" }) {
					t.Errorf("the pod of %s %s was not injected", o.GetKind(), o.GetName())
				}
			}
			if pods == 0 {
				t.Error("no Pod or workload in the example")
			}
		})
	}
}

// podOf returns the pod a Pod or workload manifest makes.
func podOf(t *testing.T, o *unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	data, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	switch o.GetKind() {
	case "Pod":
		pod := &corev1.Pod{}
		if err := yaml.UnmarshalStrict(data, pod); err != nil {
			t.Fatal(err)
		}
		return pod
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		var w struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(data, &w); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{ObjectMeta: *w.Spec.Template.ObjectMeta.DeepCopy(), Spec: w.Spec.Template.Spec}
		pod.Name = o.GetName() + "-docs"
		return pod
	}
	return nil
}

// newControlPlane starts a control plane with nothing installed, as a new cluster is.
func newControlPlane(t *testing.T) (kubeconfig string) {
	t.Helper()
	assets, err := localcp.AssetsDir()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	if _, err := env.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// kubeconfigOf writes a kubeconfig for env whose context defaults to namespace ns.
func kubeconfigOf(t *testing.T, env *testenv.Env, ns string) string {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(env.Env.KubeConfig, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg["contexts"].([]any) {
		c.(map[string]any)["context"].(map[string]any)["namespace"] = ns
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The shell examples of each page run in order, as a user would type them: install.md
// on a new cluster, the others in a namespace of a cluster where the operator runs.
func TestExamplesShell(t *testing.T) {
	byFile := map[string][]*block{}
	for _, b := range marked(t, "sh") {
		byFile[b.file] = append(byFile[b.file], b)
	}
	if len(byFile) == 0 {
		t.Fatal("no shell examples")
	}
	for file, bs := range byFile {
		t.Run(file, func(t *testing.T) {
			var kubeconfig string
			if file == "install.md" {
				kubeconfig = newControlPlane(t)
			} else {
				env := operatorEnv(t)
				kubeconfig = kubeconfigOf(t, env, env.Namespace(t, "docs"))
			}
			assets, err := localcp.AssetsDir()
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bs {
				out := runShell(t, b, nil, "KUBECONFIG="+kubeconfig, "PATH="+assets+":"+os.Getenv("PATH"))
				checkOutput(t, b, out)
			}
		})
	}
}

// The HTTP examples run in order against one sidecar, curl's localhost:3500 being its
// HTTP port.
func TestExamplesHTTP(t *testing.T) {
	byFile := map[string][]*block{}
	for _, b := range marked(t, "http") {
		byFile[b.file] = append(byFile[b.file], b)
	}
	if len(byFile) == 0 {
		t.Fatal("no HTTP examples")
	}
	for file, bs := range byFile {
		t.Run(file, func(t *testing.T) {
			resources := testproc.WriteResources(t, map[string]string{"components.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.in-memory
  version: v1
`})
			s := testproc.Start(t, "myapp", resources, nil)
			s.WaitHealthy(t)
			addr := "127.0.0.1:" + strconv.Itoa(s.HTTPPort)
			for _, b := range bs {
				out := runShell(t, b, strings.NewReplacer("localhost:3500", addr), "PATH="+os.Getenv("PATH"))
				checkOutput(t, b, out)
			}
		})
	}
}

// runShell runs a block with bash; curl is silent but for errors, as in a terminal
// whose user reads the body.
func runShell(t *testing.T, b *block, rewrite *strings.Replacer, env ...string) string {
	t.Helper()
	body := b.body
	if rewrite != nil {
		body = rewrite.Replace(body)
	}
	script := "set -euo pipefail\ncurl() { command curl -sS \"$@\"; }\n" + body
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s\n--- stdout\n%s--- stderr\n%s", b, err, body, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func checkOutput(t *testing.T, b *block, got string) {
	t.Helper()
	if b.output == nil {
		return
	}
	want := strings.Split(strings.TrimRight(b.output.body, "\n"), "\n")
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	if len(lines) != len(want) {
		t.Errorf("%s printed %d lines, %s shows %d:\n%s", b, len(lines), b.output, len(want), got)
		return
	}
	for i := range want {
		if !lineMatches(want[i], lines[i]) {
			t.Errorf("%s line %d:\n got %s\nwant %s (%s)", b, i+1, lines[i], want[i], b.output)
		}
	}
}

func lineMatches(want, got string) bool {
	var w, g any
	if json.Unmarshal([]byte(want), &w) == nil && json.Unmarshal([]byte(got), &g) == nil {
		return subset(w, g)
	}
	return strings.TrimSpace(want) == strings.TrimSpace(got)
}

// subset tells whether got holds everything want does.
func subset(want, got any) bool {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			if gv, ok := g[k]; !ok || !subset(v, gv) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !subset(w[i], g[i]) {
				return false
			}
		}
		return true
	default:
		return fmt.Sprint(want) == fmt.Sprint(got)
	}
}

// The OLM Subscription of install.md subscribes to the package and a channel of the
// committed bundle.
func TestInstallOLMSubscriptionMatchesBundle(t *testing.T) {
	data, err := os.ReadFile("install.md")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := os.ReadFile(filepath.Join(root, "bundle", "metadata", "annotations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var annotations struct{ Annotations map[string]string }
	if err := yaml.Unmarshal(meta, &annotations); err != nil {
		t.Fatal(err)
	}
	pkg := annotations.Annotations["operators.operatorframework.io.bundle.package.v1"]
	channels := strings.Split(annotations.Annotations["operators.operatorframework.io.bundle.channels.v1"], ",")
	found := false
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1) {
		objs, err := manifests.Decode([]byte(m[1]))
		if err != nil {
			t.Fatalf("parse a YAML example of install.md: %v", err)
		}
		for _, o := range objs {
			if o.GetAPIVersion() != "operators.coreos.com/v1alpha1" || o.GetKind() != "Subscription" {
				continue
			}
			found = true
			name, _, _ := unstructured.NestedString(o.Object, "spec", "name")
			channel, _, _ := unstructured.NestedString(o.Object, "spec", "channel")
			if name != pkg || !slices.Contains(channels, channel) {
				t.Errorf("the Subscription asks for package %s channel %s; the bundle is %s in %v", name, channel, pkg, channels)
			}
		}
	}
	if !found {
		t.Error("install.md has no OLM Subscription example")
	}
}
