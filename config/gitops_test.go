package config_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lua "github.com/yuin/gopher-lua"

	"github.com/outrigger-dev/outrigger/controllers"
	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

const (
	gitopsDir      = "gitops/operator"
	argoCMDir      = "gitops/argocd/argocd-cm"
	argoAppsDir    = "gitops/argocd"
	syncWave       = "argocd.argoproj.io/sync-wave"
	gitopsImage    = "ghcr.io/outrigger-dev/outrigger:v0.1.0"
	healthKey      = "resource.customizations.health."
	conversionPath = ".spec.conversion.webhook.clientConfig.caBundle"
	webhookCAPath  = ".webhooks[]?.clientConfig.caBundle"
)

// The sync waves order the operator's objects so that Argo CD applies the CRDs first and
// waits for the webhook server before anything the webhooks admit.
func TestGitOpsSyncWaves(t *testing.T) {
	objs := render(t, gitopsDir)
	wave := func(o *unstructured.Unstructured) int {
		v, ok := o.GetAnnotations()[syncWave]
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			t.Errorf("%s %s has sync wave %q", o.GetKind(), o.GetName(), v)
		}
		return n
	}
	byKind := map[string]int{}
	for _, o := range objs {
		w := wave(o)
		if prev, ok := byKind[o.GetKind()]; ok && prev != w {
			t.Errorf("%s objects are in waves %d and %d", o.GetKind(), prev, w)
		}
		byKind[o.GetKind()] = w
	}
	before := func(a, b string) {
		t.Helper()
		if byKind[a] >= byKind[b] {
			t.Errorf("%s (wave %d) must sync before %s (wave %d)", a, byKind[a], b, byKind[b])
		}
	}
	before("CustomResourceDefinition", "ClusterRole")
	before("Namespace", "ServiceAccount")
	before("Service", "Deployment")
	before("ClusterRoleBinding", "Deployment")
	if byKind["Deployment"] != byKind["MutatingWebhookConfiguration"] || byKind["Deployment"] != byKind["ValidatingWebhookConfiguration"] {
		t.Errorf("waves %v: the webhook configurations belong with the Deployment, whose CA fills their caBundle at start", byKind)
	}
	// Resources and workloads synced with the operator (the default wave 0) come after
	// the Deployment is healthy, that is after its webhook server is ready.
	for kind, w := range byKind {
		if w >= 0 {
			t.Errorf("%s is in wave %d: the operator's objects must precede the default wave", kind, w)
		}
	}

	// Apart from the annotations and the image, it is config/default.
	dep := find[appsv1.Deployment](t, objs, "Deployment", namespace, deploymentName)
	c := managerContainer(t, dep)
	if c.Image != gitopsImage || !slices.Contains(c.Args, "--sidecar-image="+gitopsImage) {
		t.Errorf("image %s args %v, want the operator and the sidecar at %s", c.Image, c.Args, gitopsImage)
	}
	def := decode(t, []byte(strings.ReplaceAll(renderRaw(t, defaultDir), imagePlaceholder, gitopsImage)))
	if len(def) != len(objs) {
		t.Fatalf("%d objects, config/default has %d", len(objs), len(def))
	}
	for i, o := range objs {
		o = o.DeepCopy()
		a := o.GetAnnotations()
		delete(a, syncWave)
		if len(a) == 0 {
			a = nil
		}
		o.SetAnnotations(a)
		if !reflect.DeepEqual(o.Object, def[i].Object) {
			t.Errorf("%s %s differs from config/default", o.GetKind(), o.GetName())
		}
	}
}

// The Applications sync the trees of this repository, ignore the caBundle the
// operator's CA writes, and the ApplicationSet deploys what the Application does.
func TestArgoCDApplications(t *testing.T) {
	read := func(name string) *unstructured.Unstructured {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(argoAppsDir, name))
		if err != nil {
			t.Fatal(err)
		}
		objs := decode(t, data)
		if len(objs) != 1 {
			t.Fatalf("%s holds %d objects", name, len(objs))
		}
		return objs[0]
	}
	app := read("application.yaml")
	set := read("applicationset.yaml")
	hello := read("hello-kubernetes.yaml")
	for _, o := range []*unstructured.Unstructured{app, set, hello} {
		if o.GetAPIVersion() != "argoproj.io/v1alpha1" || o.GetNamespace() != "argocd" {
			t.Errorf("%s %s: apiVersion %s namespace %s", o.GetKind(), o.GetName(), o.GetAPIVersion(), o.GetNamespace())
		}
	}
	appSpec, _, _ := unstructured.NestedMap(app.Object, "spec")
	tmplSpec, _, _ := unstructured.NestedMap(set.Object, "spec", "template", "spec")
	if srv, _, _ := unstructured.NestedString(tmplSpec, "destination", "server"); srv != "{{.server}}" {
		t.Errorf("the ApplicationSet deploys to %q, want each generated cluster", srv)
	}
	a, s := deepCopyMap(appSpec), deepCopyMap(tmplSpec)
	unstructured.RemoveNestedField(a, "destination", "server")
	unstructured.RemoveNestedField(s, "destination", "server")
	if !reflect.DeepEqual(a, s) {
		t.Errorf("the ApplicationSet's template differs from application.yaml:\n%v\n%v", s, a)
	}

	for _, o := range []*unstructured.Unstructured{app, hello} {
		path, _, _ := unstructured.NestedString(o.Object, "spec", "source", "path")
		if fi, err := os.Stat(filepath.Join("..", path)); err != nil || !fi.IsDir() {
			t.Errorf("%s syncs %s, which is not a directory of this repository", o.GetName(), path)
		}
	}
	if path, _, _ := unstructured.NestedString(app.Object, "spec", "source", "path"); path != "config/"+gitopsDir {
		t.Errorf("the operator's Application syncs %s, want config/%s", path, gitopsDir)
	}
	opts, _, _ := unstructured.NestedStringSlice(app.Object, "spec", "syncPolicy", "syncOptions")
	if !slices.Contains(opts, "ServerSideApply=true") {
		t.Errorf("syncOptions %v lack ServerSideApply=true: the CRDs are too large for client-side apply", opts)
	}
	// The self-managed CA patches exactly these: without ignoreDifferences Argo CD
	// would undo it on every self-heal.
	ignored := map[string][]string{}
	diffs, _, _ := unstructured.NestedSlice(app.Object, "spec", "ignoreDifferences")
	for _, d := range diffs {
		m := d.(map[string]any)
		paths, _, _ := unstructured.NestedStringSlice(m, "jqPathExpressions")
		ignored[fmt.Sprint(m["kind"], "/", m["name"])] = paths
	}
	for k, want := range map[string]string{
		"MutatingWebhookConfiguration/<nil>":           webhookCAPath,
		"ValidatingWebhookConfiguration/<nil>":         webhookCAPath,
		"CustomResourceDefinition/" + subscriptionsCRD: conversionPath,
	} {
		if !slices.Contains(ignored[k], want) {
			t.Errorf("ignoreDifferences of %s = %v, want %s", k, ignored[k], want)
		}
	}
	appWave, _ := strconv.Atoi(app.GetAnnotations()[syncWave])
	helloWave, _ := strconv.Atoi(hello.GetAnnotations()[syncWave])
	if appWave >= helloWave {
		t.Errorf("in an app of apps the operator (wave %d) must sync before the apps (wave %d)", appWave, helloWave)
	}
}

// The health checks, run by the Lua interpreter Argo CD embeds, on objects whose status
// the real controllers wrote.
func TestArgoCDHealth(t *testing.T) {
	scripts := healthScripts(t)
	for _, kind := range []string{"Component", "Configuration", "HTTPEndpoint", "Resiliency", "Subscription"} {
		if scripts["dapr.io_"+kind] == "" {
			t.Errorf("argocd-cm has no health check for dapr.io %s", kind)
		}
	}
	health := func(t *testing.T, key string, obj map[string]any) (string, string) {
		t.Helper()
		status, message, err := runHealth(scripts[key], obj)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return status, message
	}

	t.Run("status not written yet", func(t *testing.T) {
		obj := map[string]any{"metadata": map[string]any{"name": "x", "generation": int64(1)}}
		if s, _ := health(t, "dapr.io_Component", obj); s != "Progressing" {
			t.Errorf("status = %s, want Progressing", s)
		}
	})
	t.Run("stale generation", func(t *testing.T) {
		obj := map[string]any{"metadata": map[string]any{"generation": int64(3)}, "status": map[string]any{
			"observedGeneration": int64(2),
			"conditions":         []any{map[string]any{"type": "Ready", "status": "True", "reason": "Ready", "message": ""}},
		}}
		if s, _ := health(t, "dapr.io_Component", obj); s != "Progressing" {
			t.Errorf("status = %s, want Progressing", s)
		}
	})
	t.Run("sidecars failed to load", func(t *testing.T) {
		obj := map[string]any{"metadata": map[string]any{"generation": int64(1)}, "status": map[string]any{
			"observedGeneration": int64(1),
			"conditions": []any{
				map[string]any{"type": "Ready", "status": "True", "reason": "Ready", "message": ""},
				map[string]any{"type": "AppsLoaded", "status": "False", "reason": "AppsFailed", "message": "1 of 2 sidecars failed"},
			},
		}}
		if s, m := health(t, "dapr.io_Component", obj); s != "Degraded" || !strings.Contains(m, "1 of 2") {
			t.Errorf("health = %s %q, want Degraded with the message", s, m)
		}
	})
	t.Run("application", func(t *testing.T) {
		obj := map[string]any{"status": map[string]any{"health": map[string]any{"status": "Healthy"}}}
		if s, _ := health(t, "argoproj.io_Application", obj); s != "Healthy" {
			t.Errorf("status = %s, want Healthy", s)
		}
		if s, _ := health(t, "argoproj.io_Application", map[string]any{}); s != "Progressing" {
			t.Errorf("status = %s, want Progressing", s)
		}
	})

	env := testenv.Start(t, controllers.SetupWithManager, validation.SetupWithManager)
	ns := env.Namespace(t, "argocd-health")
	ctx := context.Background()
	for _, tc := range []struct {
		name, kind string
		manifest   string
		want       string
		message    string
	}{
		{"ready component", "Component", `{"apiVersion":"dapr.io/v1alpha1","kind":"Component","metadata":{"name":"store"},
			"spec":{"type":"state.in-memory","version":"v1"}}`, "Healthy", ""},
		{"component with a missing secret", "Component", `{"apiVersion":"dapr.io/v1alpha1","kind":"Component","metadata":{"name":"redis"},
			"spec":{"type":"state.redis","version":"v1","metadata":[{"name":"redisPassword","secretKeyRef":{"name":"nowhere","key":"k"}}]}}`,
			"Degraded", "nowhere"},
		{"subscription to a missing pub/sub", "Subscription", `{"apiVersion":"dapr.io/v2alpha1","kind":"Subscription","metadata":{"name":"orders"},
			"spec":{"pubsubname":"nopubsub","topic":"orders","routes":{"default":"/orders"}}}`, "Degraded", "nopubsub"},
		{"configuration", "Configuration", `{"apiVersion":"dapr.io/v1alpha1","kind":"Configuration","metadata":{"name":"appconfig"},"spec":{}}`,
			"Healthy", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON([]byte(tc.manifest)); err != nil {
				t.Fatal(err)
			}
			u.SetNamespace(ns)
			if err := env.Client.Create(ctx, u); err != nil {
				t.Fatal(err)
			}
			var status, message string
			deadline := time.Now().Add(30 * time.Second)
			for {
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(u.GroupVersionKind())
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(u), got); err != nil {
					t.Fatal(err)
				}
				status, message = health(t, "dapr.io_"+tc.kind, got.Object)
				if status != "Progressing" || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if status != tc.want || !strings.Contains(message, tc.message) {
				t.Errorf("health = %s %q, want %s with %q", status, message, tc.want, tc.message)
			}
		})
	}
}

// healthScripts reads the health checks from argocd-cm as config/gitops/argocd/health
// merges them, keyed by <group>_<kind>.
func healthScripts(t *testing.T) map[string]string {
	t.Helper()
	objs := render(t, argoCMDir)
	if len(objs) != 1 || objs[0].GetKind() != "ConfigMap" || objs[0].GetName() != "argocd-cm" {
		t.Fatalf("%s renders %d objects, want argocd-cm", argoCMDir, len(objs))
	}
	data, _, _ := unstructured.NestedStringMap(objs[0].Object, "data")
	out := map[string]string{}
	for k, v := range data {
		if key, ok := strings.CutPrefix(k, healthKey); ok {
			out[key] = v
		}
	}
	return out
}

// runHealth runs a health script as Argo CD does: obj is a global table, and the script
// returns a table with status and message.
func runHealth(script string, obj map[string]any) (status, message string, err error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return "", "", err
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, want a table", L.Get(-1).Type())
	}
	return ret.RawGetString("status").String(), lua.LVAsString(ret.RawGetString("message")), nil
}

func toLua(L *lua.LState, v any) lua.LValue {
	switch t := v.(type) {
	case nil:
		return lua.LNil
	case string:
		return lua.LString(t)
	case bool:
		return lua.LBool(t)
	case int64:
		return lua.LNumber(t)
	case int:
		return lua.LNumber(t)
	case float64:
		return lua.LNumber(t)
	case map[string]any:
		tbl := L.NewTable()
		for k, e := range t {
			tbl.RawSetString(k, toLua(L, e))
		}
		return tbl
	case []any:
		tbl := L.NewTable()
		for _, e := range t {
			tbl.Append(toLua(L, e))
		}
		return tbl
	default:
		return lua.LString(fmt.Sprint(t))
	}
}

func deepCopyMap(m map[string]any) map[string]any {
	return (&unstructured.Unstructured{Object: m}).DeepCopy().Object
}
