package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/outrigger-dev/outrigger/internal/localcp"
	"github.com/outrigger-dev/outrigger/internal/scheme"
	"github.com/outrigger-dev/outrigger/sentry"
)

// devControlPlaneNamespace stands for the operator's namespace on the local control
// plane, where nothing runs as a pod: its pods are not injected. The certificate
// authority keeps its trust bundle there.
const devControlPlaneNamespace = "outrigger-system"

func newDevCommand() *cobra.Command {
	var (
		kubeconfigPath string
		empty          bool
		inj            injectorOptions
		demo           demoOptions
	)
	zapOpts := zap.Options{Development: true}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local control plane (etcd and kube-apiserver) with the CRDs, webhooks and the operator",
		Long: `dev starts etcd and kube-apiserver on loopback from the envtest binaries that
hack/setup-envtest.sh builds, installs the dapr.io CRDs and the webhook configurations,
and runs the operator against them until Ctrl-C. It writes a kubeconfig for kubectl.

With --demo it also replays the seed's hello-kubernetes walkthrough: it applies the
statestore Component and the nodeapp and pythonapp Deployments, creates their pods
through the API server (so the webhook injects daprd), and plays the kubelet, running
each container as a local process in a network namespace of its pod, with exactly the
command, args and environment of the injected pod spec. This needs Linux and root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, hurry := devSignals(cmd.ErrOrStderr())
			if empty {
				if demo.enabled {
					return errors.New("--empty and --demo exclude each other: the demo needs the CRDs and the operator")
				}
				ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
				return runEmptyControlPlane(ctx, cmd, kubeconfigPath)
			}
			if !demo.enabled {
				ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
				return runDev(ctx, cmd, kubeconfigPath, inj, demo)
			}
			if err := demoPreflight(demo); err != nil {
				return err
			}
			// The demo's console shows the pods; the control plane's and the operator's
			// logs go to a file.
			logFile, err := demo.prepareDir()
			if err != nil {
				return err
			}
			defer logFile.Close()
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts), zap.WriteTo(logFile)))
			demo.hurry = hurry
			return runDev(ctx, cmd, kubeconfigPath, inj, demo)
		},
	}
	cmd.Flags().StringVar(&kubeconfigPath, "kubeconfig-out", filepath.Join(os.TempDir(), "outrigger-dev", "kubeconfig"),
		"where to write the kubeconfig of the local control plane")
	cmd.Flags().BoolVar(&empty, "empty", false,
		"start the control plane with nothing installed and no operator, to try an install path (dist/install.yaml, the bundle)")
	inj.bindFlags(cmd.Flags())
	demo.bindFlags(cmd.Flags())
	gofs := flag.NewFlagSet("zap", flag.ExitOnError)
	zapOpts.BindFlags(gofs)
	cmd.Flags().AddGoFlagSet(gofs)
	return cmd
}

func runDev(ctx context.Context, cmd *cobra.Command, kubeconfigPath string, inj injectorOptions, demo demoOptions) error {
	env, err := localcp.New(scheme.New())
	if err != nil {
		return err
	}
	restCfg, stop, err := startControlPlane(cmd, env, kubeconfigPath)
	if err != nil {
		return err
	}
	defer stop()

	wh := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir,
		}),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	sentryAddr, err := devCertificateAuthority(ctx, restCfg, mgr)
	if err != nil {
		return err
	}
	handler := inj.handler(devControlPlaneNamespace)
	handler.MTLS = mtlsSource(mgr, devControlPlaneNamespace)
	if err := setupOperator(mgr, handler); err != nil {
		return err
	}
	if demo.enabled {
		demo.sentryPort = sentryAddr.Port
		return runWithDemo(ctx, cmd, mgr, restCfg, kubeconfigPath, inj.sidecarImage, demo)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Local control plane is up at %s\n  export KUBECONFIG=%s\n  kubectl apply -k config/samples\nPress Ctrl-C to stop.\n",
		restCfg.Host, kubeconfigPath)
	return mgr.Start(ctx)
}

// runWithDemo runs the operator and, once its webhooks serve, the demo; both stop with
// ctx, and the demo also when the operator stops.
func runWithDemo(ctx context.Context, cmd *cobra.Command, mgr ctrl.Manager, restCfg *rest.Config, kubeconfigPath, sidecarImage string, demo demoOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mgrErr error
	mgrStopped := make(chan struct{})
	go func() {
		mgrErr = mgr.Start(ctx)
		cancel()
		close(mgrStopped)
	}()
	err := waitWebhooks(ctx, mgr, mgrStopped)
	if err == nil {
		// Until the authority publishes its roots the injector refuses pods.
		err = waitTrustBundle(ctx, mgr.GetAPIReader(), mgrStopped)
	}
	if err == nil {
		fmt.Fprintf(cmd.OutOrStdout(), "==> Local control plane is up at %s with the operator (export KUBECONFIG=%s)\n", restCfg.Host, kubeconfigPath)
		err = runDemo(ctx, cmd.OutOrStdout(), restCfg, mgr.GetScheme(), kubeconfigPath, sidecarImage, demo)
	}
	cancel()
	<-mgrStopped
	if err == nil && mgrErr != nil {
		err = fmt.Errorf("operator: %w", mgrErr)
	}
	return err
}

// waitWebhooks returns once the webhook server answers: until then the API server
// rejects the dapr.io resources the demo applies.
func waitWebhooks(ctx context.Context, mgr ctrl.Manager, mgrStopped <-chan struct{}) error {
	check := mgr.GetWebhookServer().StartedChecker()
	return waitOperator(ctx, mgrStopped, "its webhooks served", func(ctx context.Context) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		return check(req) == nil
	})
}

// waitOperator polls done for up to a minute, and fails when the operator stops first.
func waitOperator(ctx context.Context, mgrStopped <-chan struct{}, what string, done func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for !done(ctx) {
		select {
		case <-mgrStopped:
			return fmt.Errorf("the operator stopped before %s", what)
		case <-ctx.Done():
			return fmt.Errorf("waiting until %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// devCertificateAuthority runs the certificate authority (Dapr's Sentry) in the dev
// control plane's namespace, as `operator --enable-mtls` does, on a free loopback port
// instead of behind a Service: the local kubelet relays the Service's port to it.
func devCertificateAuthority(ctx context.Context, restCfg *rest.Config, mgr ctrl.Manager) (*net.TCPAddr, error) {
	c, err := client.New(restCfg, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return nil, err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: devControlPlaneNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s for the trust bundle: %w", devControlPlaneNamespace, err)
	}
	ca, err := sentryServer(restCfg, mgr, devControlPlaneNamespace, 0)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the certificate authority: %w", err)
	}
	if err := mgr.Add(&listeningCA{Server: ca, lis: lis}); err != nil {
		_ = lis.Close()
		return nil, err
	}
	return lis.Addr().(*net.TCPAddr), nil
}

// listeningCA serves the certificate authority on a listener opened beforehand, so
// that its port is known before the manager starts.
type listeningCA struct {
	*sentry.Server
	lis net.Listener
}

func (c *listeningCA) Start(ctx context.Context) error { return c.Serve(ctx, c.lis) }

// waitTrustBundle returns once the certificate authority has published its roots.
func waitTrustBundle(ctx context.Context, r client.Reader, mgrStopped <-chan struct{}) error {
	return waitOperator(ctx, mgrStopped, "the certificate authority published its roots", func(ctx context.Context) bool {
		cm := &corev1.ConfigMap{}
		err := r.Get(ctx, client.ObjectKey{Namespace: devControlPlaneNamespace, Name: sentry.TrustBundleName}, cm)
		return err == nil && strings.TrimSpace(cm.Data["ca.crt"]) != ""
	})
}

// devSignals: the first SIGINT or SIGTERM ends ctx, for a graceful stop; the second
// ends hurry, so that what is still running is killed at once (and cleaned up); the
// third exits on the spot.
func devSignals(stderr io.Writer) (ctx, hurry context.Context) {
	ctx, stop := context.WithCancel(context.Background())
	hurry, rush := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 3)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ch
		stop()
		<-ch
		fmt.Fprintln(stderr, "Stopping now: killing what still runs (once more exits at once and may leave processes behind)")
		rush()
		<-ch
		os.Exit(1)
	}()
	return ctx, hurry
}

// giveToSudoUser hands files to the user who ran sudo (make demo does), who runs
// kubectl with the kubeconfig.
func giveToSudoUser(paths ...string) {
	uid, err1 := strconv.Atoi(os.Getenv("SUDO_UID"))
	gid, err2 := strconv.Atoi(os.Getenv("SUDO_GID"))
	if err1 != nil || err2 != nil || os.Geteuid() != 0 {
		return
	}
	for _, p := range paths {
		_ = os.Chown(p, uid, gid)
	}
}

// recordControlPlane notes the etcd and kube-apiserver processes this process started,
// so that the next `outrigger dev` stops them if this one dies without stopping them
// (they are not children that die with it). Linux only: it reads /proc.
func recordControlPlane(pidFile string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	var lines []string
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 || fields[1] != self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil {
			continue
		}
		if name := filepath.Base(string(bytes.SplitN(cmdline, []byte{0}, 2)[0])); name == "etcd" || name == "kube-apiserver" {
			lines = append(lines, pid+" "+base64.StdEncoding.EncodeToString(cmdline))
		}
	}
	_ = os.WriteFile(pidFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// killLeftoverControlPlane kills the processes an earlier `outrigger dev` recorded, if
// each still runs the very command line recorded, and removes their temporary
// directories.
func killLeftoverControlPlane(pidFile string, stderr io.Writer) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		pid, enc, ok := strings.Cut(line, " ")
		want, err := base64.StdEncoding.DecodeString(enc)
		n, err2 := strconv.Atoi(pid)
		if !ok || err != nil || err2 != nil {
			continue
		}
		have, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil || !bytes.Equal(have, want) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(want), "\x00"), "\x00")
		fmt.Fprintf(stderr, "Stopping %s (pid %d), left running by an earlier outrigger dev\n", filepath.Base(args[0]), n)
		if p, err := os.FindProcess(n); err == nil {
			_ = p.Kill()
		}
		for _, a := range args {
			for _, flag := range []string{"--data-dir=", "--cert-dir="} {
				if dir, ok := strings.CutPrefix(a, flag); ok && strings.HasPrefix(dir, os.TempDir()) {
					_ = os.RemoveAll(dir)
				}
			}
		}
	}
	_ = os.Remove(pidFile)
}

// runEmptyControlPlane runs etcd and kube-apiserver with nothing installed, until ctx
// ends: the place to try `kubectl apply --server-side -f dist/install.yaml`, which
// conflicts with the CRDs and webhooks the operator's own dev mode installs.
func runEmptyControlPlane(ctx context.Context, cmd *cobra.Command, kubeconfigPath string) error {
	env, err := localcp.New(scheme.New())
	if err != nil {
		return err
	}
	env.CRDs = nil
	env.ErrorIfCRDPathMissing = false
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{}
	restCfg, stop, err := startControlPlane(cmd, env, kubeconfigPath)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(cmd.OutOrStdout(), "Empty local control plane is up at %s\n  export KUBECONFIG=%s\n  kubectl apply --server-side -f dist/install.yaml\nPress Ctrl-C to stop.\n",
		restCfg.Host, kubeconfigPath)
	<-ctx.Done()
	return nil
}

// startControlPlane starts env, after stopping one a killed run left behind, and writes
// its kubeconfig; stop stops it and forgets its processes.
func startControlPlane(cmd *cobra.Command, env *envtest.Environment, kubeconfigPath string) (*rest.Config, func(), error) {
	pidFile := filepath.Join(filepath.Dir(kubeconfigPath), "control-plane.pids")
	killLeftoverControlPlane(pidFile, cmd.ErrOrStderr())
	restCfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("start local control plane: %w", err)
	}
	recordControlPlane(pidFile)
	stop := func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "stop local control plane: %v\n", err)
		}
		_ = os.Remove(pidFile)
	}
	if err := os.MkdirAll(filepath.Dir(kubeconfigPath), 0o700); err != nil {
		stop()
		return nil, nil, err
	}
	if err := os.WriteFile(kubeconfigPath, env.KubeConfig, 0o600); err != nil {
		stop()
		return nil, nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	giveToSudoUser(filepath.Dir(kubeconfigPath), kubeconfigPath)
	return restCfg, stop, nil
}
