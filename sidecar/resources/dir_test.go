package resources

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const redis = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
`

func TestLoadDirReadsEveryKind(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a-components.yaml": redis + `---
# a comment-only document is skipped
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: secrets
spec:
  type: secretstores.local.env
  version: 1          # Dapr's loader turns a number into the string field's text
  metadata:
  - name: maxRetries
    value: 3
  - name: enableTLS
    value: false
---
apiVersion: v1
kind: Secret
metadata:
  name: not-ours
---
`,
		"b-subscriptions.yml": `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders-v2
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    rules:
    - match: event.type == "widget"
      path: /widgets
    default: /orders
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: orders-v1
spec:
  pubsubname: pubsub
  topic: legacy
  route: /legacy
scopes:
- app
`,
		"c-other.yaml": `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
  tracing:
    samplingRate: "1"
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: resiliency
spec:
  policies:
    timeouts:
      general: 5s
  targets:
    apps:
      other:
        timeout: general
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: external
spec:
  baseUrl: https://example.com
`,
		"secrets.json":          `{"a": "b"}`,
		"f-patch.yaml":          "- op: add\n  path: /spec\n",
		"nested/ignored.yaml":   "this: [is not even valid",
		"d-no-version.yaml":     strings.Replace(strings.Replace(redis, "statestore", "noversion", 1), "  version: v1\n", "", 1),
		"e-upper-case-ext.YAML": strings.Replace(redis, "statestore", "upper", 1),
	})

	set, err := LoadDir([]string{dir}, "app")
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}

	var names []string
	for _, c := range set.Components {
		names = append(names, c.Object.Name)
	}
	if got, want := strings.Join(names, ","), "statestore,secrets,noversion,upper"; got != want {
		t.Errorf("components = %s, want %s (manifest order)", got, want)
	}
	secrets := set.Components[1]
	if secrets.Object.Spec.Version != "1" {
		t.Errorf("numeric version decoded as %q, want \"1\"", secrets.Object.Spec.Version)
	}
	if got := secrets.Object.Spec.Metadata[0].Value.String(); got != "3" {
		t.Errorf("number value = %q, want 3", got)
	}
	if secrets.Origin.File != filepath.Join(dir, "a-components.yaml") || secrets.Origin.Document != 3 || secrets.Origin.Line != 13 {
		t.Errorf("origin = %+v, want document 3 at line 13 of a-components.yaml", secrets.Origin)
	}
	if set.Components[2].Object.Spec.Version != "" {
		t.Errorf("missing version should stay empty (read as v1), got %q", set.Components[2].Object.Spec.Version)
	}

	if len(set.Subscriptions) != 2 {
		t.Fatalf("subscriptions = %d, want 2", len(set.Subscriptions))
	}
	v2, v1 := set.Subscriptions[0].Object, set.Subscriptions[1].Object
	if v2.Spec.Routes.Default != "/orders" || len(v2.Spec.Routes.Rules) != 1 || v2.Spec.Routes.Rules[0].Path != "/widgets" {
		t.Errorf("v2alpha1 routes = %+v", v2.Spec.Routes)
	}
	if v1.APIVersion != "dapr.io/v2alpha1" || v1.Spec.Routes.Default != "/legacy" || v1.Spec.Topic != "legacy" || len(v1.Scopes) != 1 {
		t.Errorf("v1alpha1 subscription not converted: %+v", v1)
	}
	if len(set.Configurations) != 1 || len(set.Resiliencies) != 1 || len(set.HTTPEndpoints) != 1 {
		t.Errorf("configurations %d, resiliencies %d, endpoints %d; want 1 each",
			len(set.Configurations), len(set.Resiliencies), len(set.HTTPEndpoints))
	}

	var skipped []string
	for _, s := range set.Skipped {
		skipped = append(skipped, filepath.Base(s.Origin.File)+":"+s.Kind)
	}
	if got, want := strings.Join(skipped, ","), "a-components.yaml:v1/Secret,f-patch.yaml:,secrets.json:"; got != want {
		t.Errorf("skipped = %s, want %s", got, want)
	}
}

func TestLoadDirScopesAndNamespaces(t *testing.T) {
	scoped := func(name, ns string, scopes ...string) string {
		y := strings.Replace(redis, "name: statestore", "name: "+name, 1)
		if ns != "" {
			y = strings.Replace(y, "metadata:\n  name:", "metadata:\n  namespace: "+ns+"\n  name:", 1)
		}
		if len(scopes) > 0 {
			y += "scopes:\n"
			for _, s := range scopes {
				y += "- " + s + "\n"
			}
		}
		return y
	}
	dir := writeFiles(t, map[string]string{
		"1.yaml": scoped("everyone", ""),
		"2.yaml": scoped("mine", "", "other", "app"),
		"3.yaml": scoped("theirs", "", "other"),
		// Two files may define one name for different apps: only one applies here.
		"4.yaml": scoped("shared", "", "app"),
		"5.yaml": scoped("shared", "", "other"),
		"6.yaml": scoped("prod", "production"),
		"7.yaml": scoped("dev", "dev"),
	})

	tests := []struct {
		name      string
		namespace string
		want      string
		skipped   string
	}{
		{name: "no sidecar namespace", want: "everyone,mine,shared,prod,dev", skipped: "theirs,shared"},
		{name: "sidecar namespace", namespace: "dev", want: "everyone,mine,shared,dev", skipped: "theirs,shared,prod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := (&Dir{Paths: []string{dir}, AppID: "app", Namespace: tt.namespace}).Load(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var got, skipped []string
			for _, c := range set.Components {
				got = append(got, c.Object.Name)
			}
			for _, s := range set.Skipped {
				skipped = append(skipped, s.Name)
				if s.Reason == "" {
					t.Errorf("skipped %s without a reason", s.Name)
				}
			}
			if strings.Join(got, ",") != tt.want {
				t.Errorf("loaded %v, want %s", got, tt.want)
			}
			if strings.Join(skipped, ",") != tt.skipped {
				t.Errorf("skipped %v, want %s", skipped, tt.skipped)
			}
		})
	}
}

func TestLoadDirErrorsNameFileLineAndField(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		// want are substrings of the error; the file name is relative to the directory.
		want []string
	}{
		{
			name: "malformed YAML in the second document",
			files: map[string]string{"bad.yaml": redis + `---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: b
 spec: x
`},
			want: []string{"bad.yaml:16: document 2: malformed YAML", `" spec: x"`},
		},
		{
			name:  "tab indentation",
			files: map[string]string{"tab.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n\tname: x\n"},
			want:  []string{"tab.yaml:4: document 1: malformed YAML"},
		},
		{
			name:  "unknown field",
			files: map[string]string{"c.yaml": strings.Replace(redis, "    value: localhost:6379", "    valeu: localhost:6379", 1)},
			want:  []string{`c.yaml:10: Component "statestore" (document 1): spec.metadata[0].valeu: unknown field`},
		},
		{
			name:  "field with the wrong case",
			files: map[string]string{"c.yaml": strings.Replace(redis, "spec:", "Spec:", 1)},
			want:  []string{`c.yaml:5: Component "statestore" (document 1): Spec: unknown field (did you mean "spec"?)`},
		},
		{
			name:  "scopes under spec",
			files: map[string]string{"c.yaml": redis + "  scopes:\n  - app\n"},
			want:  []string{`c.yaml:11: Component "statestore" (document 1): spec.scopes: unknown field`},
		},
		{
			name:  "wrong type",
			files: map[string]string{"c.yaml": strings.Replace(redis, "  version: v1", "  version: v1\n  ignoreErrors: maybe", 1)},
			want:  []string{`c.yaml:8: Component "statestore" (document 1): spec.ignoreErrors: expected a boolean (true or false), got string "maybe"`},
		},
		{
			name:  "wrong type inside a list",
			files: map[string]string{"c.yaml": redis + "  - name: redisPassword\n    secretKeyRef: redis\n"},
			want:  []string{`c.yaml:12: Component "statestore" (document 1): spec.metadata[1].secretKeyRef: expected a mapping, got string "redis"`},
		},
		{
			name:  "duplicate key",
			files: map[string]string{"c.yaml": strings.Replace(redis, "  type: state.redis", "  type: state.redis\n  type: state.sqlite", 1)},
			want:  []string{`c.yaml:7: Component "statestore" (document 1): spec.type: duplicate field (first given on line 6)`},
		},
		{
			name:  "missing type",
			files: map[string]string{"c.yaml": strings.Replace(redis, "  type: state.redis\n", "", 1)},
			want:  []string{`c.yaml:5: Component "statestore" (document 1): spec.type: Required value`},
		},
		{
			name:  "type without family",
			files: map[string]string{"c.yaml": strings.Replace(redis, "state.redis", "redis", 1)},
			want:  []string{`c.yaml:6: Component "statestore" (document 1): spec.type: Invalid value: "redis"`},
		},
		{
			name:  "metadata item without a name",
			files: map[string]string{"c.yaml": redis + "  - value: x\n"},
			want:  []string{`c.yaml:11: Component "statestore" (document 1): spec.metadata[1].name: Required value`},
		},
		{
			name:  "missing name",
			files: map[string]string{"c.yaml": strings.Replace(redis, "  name: statestore\n", "  labels: {}\n", 1)},
			want:  []string{`c.yaml:3: Component (document 1): metadata.name: Required value`},
		},
		{
			name:  "name that is not a path segment",
			files: map[string]string{"c.yaml": strings.Replace(redis, "name: statestore", "name: a/b", 1)},
			want:  []string{`c.yaml:4: Component "a/b" (document 1): metadata.name: Invalid value`},
		},
		{
			name:  "bad initTimeout",
			files: map[string]string{"c.yaml": strings.Replace(redis, "  version: v1", "  version: v1\n  initTimeout: soon", 1)},
			want:  []string{`c.yaml:8: Component "statestore" (document 1): spec.initTimeout: Invalid value: "soon"`},
		},
		{
			name:  "subscription without a route",
			files: map[string]string{"s.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: p\n  topic: t\n"},
			want:  []string{`s.yaml:5: Subscription "s" (document 1): spec.routes: Required value`},
		},
		{
			name: "duplicate names across files",
			files: map[string]string{
				"a.yaml": redis,
				"b.yaml": "# another copy\n" + redis,
			},
			want: []string{`b.yaml:5: Component "statestore" (document 1): metadata.name: duplicate name`, "also defined in a.yaml:1 (document 1)"},
		},
		{
			name: "every problem at once",
			files: map[string]string{
				"a.yaml": strings.Replace(redis, "  type: state.redis\n", "", 1),
				"b.yaml": "kind: [",
			},
			want: []string{"a.yaml:5:", "spec.type: Required value", "b.yaml:1: document 1: malformed YAML"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			set, err := LoadDir([]string{dir}, "app")
			if err == nil {
				t.Fatalf("no error; loaded %+v", set)
			}
			msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Errorf("error is not a *ManifestError: %T", err)
			}
		})
	}
}

func TestLoadDirPaths(t *testing.T) {
	a := writeFiles(t, map[string]string{"c.yaml": redis})
	b := writeFiles(t, map[string]string{"d.yaml": strings.Replace(redis, "statestore", "second", 1)})

	set, err := LoadDir([]string{a, b}, "app")
	if err != nil || len(set.Components) != 2 || set.Components[1].Object.Name != "second" {
		t.Fatalf("two paths: %v, %+v", err, set)
	}
	set, err = LoadDir([]string{filepath.Join(a, "c.yaml")}, "app")
	if err != nil || len(set.Components) != 1 {
		t.Errorf("a file as a path: %v", err)
	}
	set, err = LoadDir(nil, "app")
	if err != nil || len(set.Components) != 0 {
		t.Errorf("no paths: %v", err)
	}
	missing := filepath.Join(a, "nope")
	if _, err := LoadDir([]string{missing}, "app"); err == nil || !strings.Contains(err.Error(), missing+": no such directory") {
		t.Errorf("missing path: %v", err)
	}
	if err := (&Dir{Paths: []string{missing}}).Watch(context.Background(), nil); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Watch of a missing path = %v, want an error naming it", err)
	}
	if c, ok := set.Component("statestore"); ok {
		t.Errorf("Component on an empty set found %v", c)
	}
}

func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		in    string
		lines []int
	}{
		{in: "a: 1\n", lines: []int{1}},
		{in: "---\na: 1\n", lines: []int{1}},
		{in: "a: 1\n---\nb: 2\n--- \nc: 3\n---\n", lines: []int{1, 2, 4, 6}},
		{in: "a: |\n  ---\n  text\n---x: 1\n", lines: []int{1}},
		{in: "a: 1\r\n---\r\nb: 2\r\n", lines: []int{1, 2}},
	}
	for _, tt := range tests {
		var got []int
		var joined string
		for _, c := range splitDocuments([]byte(tt.in)) {
			got = append(got, c.line)
			joined += string(c.data)
		}
		if joined != tt.in {
			t.Errorf("%q: chunks do not add up to the input", tt.in)
		}
		if len(got) != len(tt.lines) {
			t.Errorf("%q: starts %v, want %v", tt.in, got, tt.lines)
			continue
		}
		for i := range got {
			if got[i] != tt.lines[i] {
				t.Errorf("%q: starts %v, want %v", tt.in, got, tt.lines)
			}
		}
	}
}

func TestInScope(t *testing.T) {
	if !InScope(nil, "a") || !InScope([]string{"a", "b"}, "b") || InScope([]string{"b"}, "a") {
		t.Error("InScope")
	}
	if !InNamespace("", "x") || !InNamespace("x", "") || !InNamespace("x", "x") || InNamespace("x", "y") {
		t.Error("InNamespace")
	}
}

func TestEventTypeString(t *testing.T) {
	for typ, want := range map[EventType]string{Added: "Added", Updated: "Updated", Deleted: "Deleted", 9: "EventType(9)"} {
		if typ.String() != want {
			t.Errorf("%d.String() = %s", typ, typ.String())
		}
	}
	if got := (Origin{File: "a.yaml", Document: 2, Line: 7}).String(); got != "a.yaml:7 (document 2)" {
		t.Errorf("Origin.String() = %s", got)
	}
}
