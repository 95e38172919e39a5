package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	hellokubernetes "github.com/outrigger-dev/outrigger/examples/hello-kubernetes"
	helloworld "github.com/outrigger-dev/outrigger/examples/hello-world"
	"github.com/outrigger-dev/outrigger/internal/kubelet"
	"github.com/outrigger-dev/outrigger/internal/localcp"
	"github.com/outrigger-dev/outrigger/sentry"
)

// The seed's sample images, which the demo's kubelet runs as the local sample apps.
const (
	nodeAppImage   = "ghcr.io/outrigger-dev/samples/hello-k8s-node:latest"
	pythonAppImage = "ghcr.io/outrigger-dev/samples/hello-k8s-python:latest"
)

// demoNamespace is where the seed's walkthrough runs, as in the seed.
const demoNamespace = "default"

// replicaSetController is whom the demo's pods are created as: Kubernetes' ReplicaSet
// controller, which the injector trusts by default.
const replicaSetController = "system:serviceaccount:kube-system:replicaset-controller"

// demoHostPorts are the loopback services of the machine that pods reach on their own
// loopback: Redis, PostgreSQL, NATS, RabbitMQ, Mosquitto and MariaDB.
var demoHostPorts = []int{6379, 5432, 4222, 5672, 1883, 3306}

type demoOptions struct {
	enabled    bool
	port       int
	dir        string
	stateStore string
	// sentryPort is where the certificate authority listens on the host's loopback.
	sentryPort int
	// hurry ends when the user insists on stopping: pods are killed at once.
	hurry context.Context
}

// logFile is where the control plane's and the operator's logs go during the demo.
func (o demoOptions) logFile() string { return filepath.Join(o.dir, "control-plane.log") }

// prepareDir empties what an earlier demo left in the demo directory and opens the log.
func (o demoOptions) prepareDir() (*os.File, error) {
	for _, sub := range []string{"pods", "images"} {
		if err := os.RemoveAll(filepath.Join(o.dir, sub)); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, err
	}
	return os.Create(o.logFile())
}

func (o *demoOptions) bindFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.enabled, "demo", false, "also run the seed's hello-kubernetes walkthrough: apply its resources and run the injected pods as local processes (Linux, root)")
	f.IntVar(&o.port, "demo-port", 3500, "host port forwarded to nodeapp's sidecar HTTP API (0 picks a free one; a busy 3500 does too)")
	f.StringVar(&o.dir, "demo-dir", filepath.Join(os.TempDir(), "outrigger-dev", "demo"), "where the demo keeps the pods' files and container logs")
	f.StringVar(&o.stateStore, "demo-state-store", "auto", `the statestore Component: "redis" (localhost:6379), "sqlite", or "auto" (redis when Redis answers on 127.0.0.1:6379)`)
}

// demoPreflight fails before anything starts when the machine cannot run the demo.
func demoPreflight(o demoOptions) error {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, `it gives each pod a network namespace, which needs root: make demo runs it with sudo, or run sudo env PATH="$PATH" KUBEBUILDER_ASSETS="$(hack/setup-envtest.sh | tail -1)" bin/outrigger dev --demo`)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		problems = append(problems, "it needs iproute2's ip command (apt-get install iproute2)")
	}
	for _, tool := range []string{"node", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			problems = append(problems, fmt.Sprintf("the sample apps need %s on PATH", tool))
		}
	}
	switch o.stateStore {
	case "auto", "redis", "sqlite":
	default:
		problems = append(problems, fmt.Sprintf("--demo-state-store %q: use auto, redis or sqlite", o.stateStore))
	}
	if len(problems) > 0 {
		return fmt.Errorf("outrigger dev --demo cannot run here:\n  - %s", strings.Join(problems, "\n  - "))
	}
	return nil
}

// demo replays the seed's hello-kubernetes walkthrough on the local control plane.
type demo struct {
	opts       demoOptions
	out        io.Writer
	cfg        *rest.Config
	c          client.Client
	scheme     *runtime.Scheme
	kubeconfig string
	kubelet    *kubelet.Kubelet
	workloads  *workloads
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "==> "+format+"\n", args...)
}

// runDemo runs until ctx ends, then stops the pods and removes their network.
func runDemo(ctx context.Context, out io.Writer, cfg *rest.Config, scheme *runtime.Scheme, kubeconfigPath, sidecarImage string, o demoOptions) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	d := &demo{opts: o, out: out, cfg: cfg, c: c, scheme: scheme, kubeconfig: kubeconfigPath}
	if d.workloads, err = newWorkloads(d); err != nil {
		return err
	}

	images, err := d.images(sidecarImage)
	if err != nil {
		return err
	}
	sentryService := sentry.ServiceName + "." + devControlPlaneNamespace + ".svc"
	kl, err := kubelet.New(kubelet.Options{
		Config:    cfg,
		Images:    images,
		RootDir:   o.dir,
		HostPorts: demoHostPorts,
		// The certificate authority's Service, as the injector names it, is the
		// authority's host port on each pod's loopback.
		LoopbackNames: []string{sentryService, sentryService + ".cluster.local"},
		Relays:        []kubelet.Relay{{PodPort: 443, HostPort: o.sentryPort}},
		Output:        out,
		Color:         isTerminal(out),
		Log:           zap.New(zap.ConsoleEncoder(), zap.WriteTo(out), zap.StacktraceLevel(zapcore.PanicLevel)).WithName("kubelet"),
	})
	if err != nil {
		return err
	}
	if err := kl.Start(ctx); err != nil {
		return fmt.Errorf("start the local kubelet: %w", err)
	}
	d.kubelet = kl
	defer func() {
		d.say("Stopping the pods (Ctrl-C again to kill them at once)")
		hurry := o.hurry
		if hurry == nil {
			hurry = context.Background()
		}
		stopCtx, cancel := context.WithTimeout(hurry, time.Minute)
		defer cancel()
		if err := kl.Stop(stopCtx); err != nil {
			d.say("Stopped, but: %v", err)
			return
		}
		d.say("Stopped: no pod process is left, and the pods' network namespaces and the bridge are gone")
	}()
	d.say("Local kubelet: node %s, pods on %s", kubelet.DefaultNodeName, kl.PodNetwork())

	if err := d.applySeed(ctx); err != nil {
		return err
	}
	fwd, err := d.forward()
	if err != nil {
		return err
	}
	go d.workloads.run(ctx)
	d.waitReady(ctx)
	d.hint(fwd)
	<-ctx.Done()
	return nil
}

// images maps the images of the injected pods to local commands: the sidecar image to
// this binary, the seed's app images to the sample apps, unpacked under the demo dir.
func (d *demo) images(sidecarImage string) (map[string]kubelet.Image, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(d.opts.dir, "images")
	unpack := func(name string, content []byte) (string, string, error) {
		idir := filepath.Join(dir, name)
		if err := os.MkdirAll(idir, 0o755); err != nil {
			return "", "", err
		}
		file := filepath.Join(idir, "app")
		if err := os.WriteFile(file, content, 0o644); err != nil {
			return "", "", err
		}
		return idir, file, nil
	}
	nodeDir, nodeApp, err := unpack("hello-k8s-node", helloworld.NodeApp)
	if err != nil {
		return nil, err
	}
	pyDir, pyApp, err := unpack("hello-k8s-python", helloworld.PythonApp)
	if err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, err
	}
	python, err := pythonExecutable()
	if err != nil {
		return nil, err
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	if lang := os.Getenv("LANG"); lang != "" {
		env = append(env, "LANG="+lang)
	}
	return map[string]kubelet.Image{
		// The image's entrypoint is the outrigger binary; the injected container's args
		// start with the subcommand.
		sidecarImage:   {Entrypoint: []string{self}, Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}},
		nodeAppImage:   {Entrypoint: []string{node, nodeApp}, WorkingDir: nodeDir, Env: env},
		pythonAppImage: {Entrypoint: []string{python, pyApp}, WorkingDir: pyDir, Env: env},
	}, nil
}

// pythonExecutable finds the interpreter itself, so that a version manager's shim (which
// needs its own environment) is not in the way.
func pythonExecutable() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return "", fmt.Errorf("run python3: %w", err)
	}
	if p := strings.TrimSpace(string(out)); p != "" {
		return p, nil
	}
	return exec.LookPath("python3")
}

// applySeed applies the state store and the seed's manifests, then creates the
// Deployments' pods (see workloads).
func (d *demo) applySeed(ctx context.Context) error {
	if err := d.ensureServiceAccount(ctx, demoNamespace, "default"); err != nil {
		return err
	}
	store, why, err := d.stateStore()
	if err != nil {
		return err
	}
	if err := d.apply(ctx, store); err != nil {
		return fmt.Errorf("apply the statestore Component: %w", err)
	}
	d.say("statestore: %s (%s)", store.Object["spec"].(map[string]any)["type"], why)

	for _, file := range []string{"deploy/node.yaml", "deploy/python.yaml"} {
		objs, err := readManifests(hellokubernetes.Deploy, file)
		if err != nil {
			return err
		}
		for _, u := range objs {
			u.SetNamespace(demoNamespace)
			if err := d.apply(ctx, u); err != nil {
				return fmt.Errorf("apply %s %s from examples/hello-kubernetes/%s: %w", u.GetKind(), u.GetName(), file, err)
			}
			d.say("Applied %s/%s", strings.ToLower(u.GetKind()), u.GetName())
		}
	}
	return d.workloads.reconcileAll(ctx)
}

// stateStore is the seed's statestore Component, pointed at what this machine has: the
// Redis on its loopback (which the pods reach on theirs), else a SQLite file.
func (d *demo) stateStore() (*unstructured.Unstructured, string, error) {
	objs, err := readManifests(hellokubernetes.Deploy, "deploy/redis.yaml")
	if err != nil {
		return nil, "", err
	}
	if len(objs) != 1 {
		return nil, "", fmt.Errorf("examples/hello-kubernetes/deploy/redis.yaml: want one Component, have %d objects", len(objs))
	}
	u := objs[0]
	u.SetNamespace(demoNamespace)
	// The seed's Redis runs in the cluster with a password; the local one on loopback
	// without, so the Component keeps its name and type and changes its metadata.
	delete(u.Object, "auth")
	useRedis := d.opts.stateStore == "redis"
	why := "--demo-state-store redis"
	if d.opts.stateStore == "auto" {
		useRedis = redisAnswers("127.0.0.1:6379")
		if useRedis {
			why = "Redis answers on 127.0.0.1:6379; pods reach it as localhost:6379"
		} else {
			why = "no Redis answers on 127.0.0.1:6379"
		}
	}
	spec := u.Object["spec"].(map[string]any)
	if useRedis {
		spec["metadata"] = []any{map[string]any{"name": "redisHost", "value": "localhost:6379"}}
	} else {
		db := filepath.Join(d.opts.dir, "state.db")
		spec["type"] = "state.sqlite"
		spec["metadata"] = []any{map[string]any{"name": "connectionString", "value": db}}
		if d.opts.stateStore == "sqlite" {
			why = "--demo-state-store sqlite"
		}
		why += "; the file is " + db
	}
	// Written out so that the user can edit it and kubectl apply it again.
	if data, err := yaml.Marshal(u.Object); err == nil {
		_ = os.WriteFile(filepath.Join(d.opts.dir, "statestore.yaml"), data, 0o644)
	}
	return u, why, nil
}

// redisAnswers sends PING and expects PONG.
func redisAnswers(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "+PONG")
}

func readManifests(fsys fs.FS, name string) ([]*unstructured.Unstructured, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func (d *demo) apply(ctx context.Context, u *unstructured.Unstructured) error {
	// As `kubectl apply -f` would have left it, so that the user's own kubectl apply of
	// these objects later merges without a warning.
	last, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann["kubectl.kubernetes.io/last-applied-configuration"] = string(last) + "\n"
	u.SetAnnotations(ann)
	return d.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("outrigger-demo"), client.ForceOwnership)
}

// ensureServiceAccount plays the service-account controller, which the local control
// plane does not run: pods need their account to exist.
func (d *demo) ensureServiceAccount(ctx context.Context, namespace, name string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := d.c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
	}
	return nil
}

// forward exposes nodeapp's sidecar HTTP API on the host, as `kubectl port-forward`
// would: the API listens on the pod's loopback only.
func (d *demo) forward() (net.Addr, error) {
	sel := labels.SelectorFromSet(labels.Set{"dapr.io/app-id": "nodeapp"})
	addr, err := d.kubelet.PortForward(demoNamespace, sel, 3500, net.JoinHostPort("127.0.0.1", strconv.Itoa(d.opts.port)))
	if err != nil && d.opts.port == 3500 {
		addr, err = d.kubelet.PortForward(demoNamespace, sel, 3500, "127.0.0.1:0")
	}
	if err != nil {
		return nil, fmt.Errorf("forward a host port to nodeapp's sidecar: %w", err)
	}
	return addr, nil
}

// waitReady reports each pod once it is Ready, for up to two minutes.
func (d *demo) waitReady(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	reported := map[string]bool{}
	for {
		var pods corev1.PodList
		if err := d.c.List(ctx, &pods, client.InNamespace(demoNamespace)); err == nil {
			all := len(pods.Items) > 0
			for _, p := range pods.Items {
				if !podReady(&p) {
					all = false
					continue
				}
				if !reported[p.Name] {
					reported[p.Name] = true
					d.say("Pod %s is Ready: IP %s, network namespace %s", p.Name, p.Status.PodIP, d.kubelet.PodNetns(p.Namespace, p.Name))
				}
			}
			if all {
				return
			}
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				d.say("Not every pod is Ready after two minutes; see the logs above and kubectl get pods")
			}
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (d *demo) hint(fwd net.Addr) {
	kubectl := "kubectl"
	if dir, err := localcp.AssetsDir(); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "kubectl")); err == nil {
			kubectl = filepath.Join(dir, "kubectl")
		}
	}
	port := fwd.(*net.TCPAddr).Port
	fmt.Fprintf(d.out, `
==> The seed's hello-kubernetes walkthrough is running. In another terminal:

      curl localhost:%d/v1.0/invoke/nodeapp/method/order

    returns the latest order (localhost:%d is nodeapp's sidecar, forwarded as kubectl
    port-forward would). The cluster:

      export KUBECONFIG=%s
      %s get pods,deployments,services,components -o wide

    Container output is below and in %s; the control plane's
    and the operator's logs are in %s. Ctrl-C stops everything.

`, port, port, d.kubeconfig, kubectl, filepath.Join(d.opts.dir, "pods"), d.opts.logFile())
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
