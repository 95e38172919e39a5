package injector_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outrigger-dev/outrigger/internal/testenv"
	"github.com/outrigger-dev/outrigger/webhooks/injector"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

// controlPlaneNS stands for the operator's namespace in these tests.
const controlPlaneNS = "outrigger-system"

func TestMain(m *testing.M) { testenv.Main(m) }

func env(t *testing.T) *testenv.Env {
	return testenv.Shared(t, validation.SetupWithManager, func(mgr ctrl.Manager) error {
		return injector.SetupWithManager(mgr, &injector.Handler{
			Defaults:               injector.Defaults{Image: "ghcr.io/outrigger-dev/outrigger:test"},
			ControlPlaneNamespace:  controlPlaneNS,
			AllowedServiceAccounts: injector.DefaultAllowedServiceAccounts,
		})
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func pod(ns, name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app"}}},
	}
}

func container(p *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// argValue finds a flag's value in "--flag value" or "--flag=value" form.
func argValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestAnnotatedPodGetsSidecar(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "inject")
	p := pod(ns, "orders", map[string]string{"dapr.io/enabled": "true", "dapr.io/app-id": "orders", "dapr.io/app-port": "8080"})
	if err := e.Client.Create(c, p); err != nil {
		t.Fatal(err)
	}
	d := container(p, "daprd")
	if d == nil || len(p.Spec.Containers) != 2 {
		t.Fatalf("containers = %v, want app and daprd", p.Spec.Containers)
	}
	if d.Image != "ghcr.io/outrigger-dev/outrigger:test" {
		t.Errorf("image = %s", d.Image)
	}
	for flag, want := range map[string]string{"--app-id": "orders", "--app-port": "8080", "--mode": "kubernetes"} {
		if got, _ := argValue(d.Args, flag); got != want {
			t.Errorf("%s = %q, want %q (args %v)", flag, got, want, d.Args)
		}
	}
	if d.Args[0] != "sidecar" {
		t.Errorf("args start with %q, want the sidecar subcommand", d.Args[0])
	}
	ports := map[string]int32{}
	for _, port := range d.Ports {
		ports[port.Name] = port.ContainerPort
	}
	for name, want := range map[string]int32{"dapr-http": 3500, "dapr-grpc": 50001, "dapr-internal": 50002, "dapr-public": 3501, "dapr-metrics": 9090} {
		if ports[name] != want {
			t.Errorf("port %s = %d, want %d", name, ports[name], want)
		}
	}
	if r := d.ReadinessProbe; r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/v1.0/healthz" || r.HTTPGet.Port.IntVal != 3501 {
		t.Errorf("readiness probe = %+v", r)
	}
	app := container(p, "app")
	for name, want := range map[string]string{"DAPR_HTTP_PORT": "3500", "DAPR_GRPC_PORT": "50001", "APP_PROTOCOL": "http"} {
		if got, ok := envValue(app, name); !ok || got != want {
			t.Errorf("app env %s = %q, want %q", name, got, want)
		}
	}
	if p.Labels["dapr.io/sidecar-injected"] != "true" || p.Labels["dapr.io/app-id"] != "orders" || p.Labels["dapr.io/metrics-enabled"] != "true" {
		t.Errorf("labels = %v", p.Labels)
	}
	if sc := d.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("securityContext = %+v", sc)
	}
}

func TestPodsLeftAlone(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "alone")
	if err := e.Client.Create(c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controlPlaneNS}}); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	existing := pod(ns, "has-daprd", map[string]string{"dapr.io/enabled": "true"})
	existing.Spec.Containers = append(existing.Spec.Containers, corev1.Container{Name: "daprd", Image: "custom/daprd"})
	for _, p := range []*corev1.Pod{
		pod(ns, "plain", nil),
		pod(ns, "disabled", map[string]string{"dapr.io/enabled": "false", "dapr.io/app-port": "abc"}),
		pod(controlPlaneNS, "operator-like", map[string]string{"dapr.io/enabled": "true"}),
		existing,
	} {
		want := len(p.Spec.Containers)
		if err := e.Client.Create(c, p); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if len(p.Spec.Containers) != want || len(p.Spec.InitContainers) != 0 || p.Labels["dapr.io/sidecar-injected"] != "" {
			t.Errorf("%s/%s was changed: %v", p.Namespace, p.Name, p.Spec.Containers)
		}
	}
}

func TestMalformedAnnotationDeniesPod(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "deny")
	p := pod(ns, "bad", map[string]string{"dapr.io/enabled": "true", "dapr.io/app-port": "abc", "dapr.io/sidecar-cpu-limit": "lots"})
	err := e.Client.Create(c, p)
	if err == nil {
		t.Fatal("created; want a denial")
	}
	for _, want := range []string{"dapr.io/app-port", `"abc"`, "dapr.io/sidecar-cpu-limit", `"lots"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("denial %q does not mention %s", err.Error(), want)
		}
	}
}

func TestNativeSidecar(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "native")
	p := pod(ns, "native", map[string]string{"dapr.io/enabled": "true", "dapr.io/enable-native-sidecar": "true"})
	if err := e.Client.Create(c, p); err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Containers) != 1 || len(p.Spec.InitContainers) != 1 || p.Spec.InitContainers[0].Name != "daprd" {
		t.Fatalf("containers %v, initContainers %v", p.Spec.Containers, p.Spec.InitContainers)
	}
	if rp := p.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
		t.Errorf("restartPolicy = %v, want Always", rp)
	}
	if app, _ := argValue(p.Spec.InitContainers[0].Args, "--app-id"); app != "native" {
		t.Errorf("app-id defaults to the pod name, got %q", app)
	}
}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

// A requester outside the allow-list gets its pod without a sidecar, and a warning
// that says why; a workload controller on the list gets the sidecar.
func TestRequesterAllowList(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "requester")
	for _, sa := range []string{"system:serviceaccount:" + ns + ":builder", "system:serviceaccount:kube-system:replicaset-controller"} {
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "test-admin-"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: sa}},
		}
		if err := e.Client.Create(c, crb); err != nil {
			t.Fatal(err)
		}
	}
	as := func(user string, w *warnings) client.Client {
		cfg := rest.CopyConfig(e.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		cfg.WarningHandlerWithContext = w
		cl, err := client.New(cfg, client.Options{Scheme: e.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}

	w := &warnings{}
	p := pod(ns, "by-builder", map[string]string{"dapr.io/enabled": "true"})
	if err := as("system:serviceaccount:"+ns+":builder", w).Create(c, p); err != nil {
		t.Fatal(err)
	}
	if container(p, "daprd") != nil {
		t.Error("a requester outside the allow-list got a sidecar")
	}
	if len(w.msgs) != 1 || !strings.Contains(w.msgs[0], "builder") || !strings.Contains(w.msgs[0], "not injected") {
		t.Errorf("warnings = %q, want one that names the requester", w.msgs)
	}

	p = pod(ns, "by-controller", map[string]string{"dapr.io/enabled": "true"})
	if err := as("system:serviceaccount:kube-system:replicaset-controller", &warnings{}).Create(c, p); err != nil {
		t.Fatal(err)
	}
	if container(p, "daprd") == nil {
		t.Error("the replicaset controller's pod got no sidecar")
	}
}

// The seed's Deployments, as a user writes them: their pod templates, created as the
// ReplicaSet controller creates pods, get sidecars that carry their annotations.
func TestSeedDeploymentsGetSidecars(t *testing.T) {
	e, c := env(t), ctx(t)
	ns := e.Namespace(t, "seed")
	cases := []struct {
		name, file string
		noAppID    bool
		want       map[string]string
	}{
		{"node", "node.yaml", false, map[string]string{"--app-id": "nodeapp", "--app-port": "3000", "--enable-api-logging": "true"}},
		{"python", "python.yaml", false, map[string]string{"--app-id": "pythonapp", "--enable-api-logging": "true"}},
		// Without dapr.io/app-id the pod's generated name gives the Deployment's name,
		// the same app id its app Service <app-id>-dapr is named after.
		{"node without app-id", "node.yaml", true, map[string]string{"--app-id": "nodeapp", "--app-port": "3000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dep := readDeployment(t, "../../examples/hello-kubernetes/deploy/"+tc.file)
			if tc.noAppID {
				delete(dep.Spec.Template.Annotations, "dapr.io/app-id")
			}
			p := &corev1.Pod{
				ObjectMeta: *dep.Spec.Template.ObjectMeta.DeepCopy(),
				Spec:       *dep.Spec.Template.Spec.DeepCopy(),
			}
			p.Namespace, p.GenerateName = ns, dep.Name+"-5d9f8c7b6-"
			p.Labels["pod-template-hash"] = "5d9f8c7b6"
			if err := e.Client.Create(c, p); err != nil {
				t.Fatal(err)
			}
			d := container(p, "daprd")
			if d == nil {
				t.Fatal("no daprd")
			}
			for flag, want := range tc.want {
				if got, ok := argValue(d.Args, flag); !ok || got != want {
					t.Errorf("%s = %q, want %q (args %v)", flag, got, want, d.Args)
				}
			}
			if _, ok := argValue(d.Args, "--app-port"); ok && tc.want["--app-port"] == "" {
				t.Errorf("--app-port passed for an app without a port: %v", d.Args)
			}
			app := &p.Spec.Containers[0]
			if v, _ := envValue(app, "DAPR_HTTP_PORT"); v != "3500" {
				t.Errorf("app DAPR_HTTP_PORT = %q", v)
			}
			if !slices.ContainsFunc(app.Env, func(e corev1.EnvVar) bool { return e.Name == "DAPR_GRPC_PORT" }) {
				t.Error("app has no DAPR_GRPC_PORT")
			}
		})
	}
}

func readDeployment(t *testing.T, path string) *appsv1.Deployment {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var dep appsv1.Deployment
		if err := dec.Decode(&dep); err != nil {
			t.Fatalf("%s: no Deployment: %v", path, err)
		}
		if dep.Kind == "Deployment" {
			return &dep
		}
	}
}
