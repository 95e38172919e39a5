package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/outrigger-dev/outrigger/internal/localcp"
	"github.com/outrigger-dev/outrigger/internal/scheme"
)

// devControlPlaneNamespace stands for the operator's namespace on the local control
// plane, where nothing runs as a pod: its pods are not injected.
const devControlPlaneNamespace = "outrigger-system"

func newDevCommand() *cobra.Command {
	var (
		kubeconfigPath string
		inj            injectorOptions
	)
	zapOpts := zap.Options{Development: true}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local control plane (etcd and kube-apiserver) with the CRDs, webhooks and the operator",
		Long: `dev starts etcd and kube-apiserver on loopback from the envtest binaries that
hack/setup-envtest.sh builds, installs the dapr.io CRDs and the webhook configurations,
and runs the operator against them until Ctrl-C. It writes a kubeconfig for kubectl.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
			return runDev(ctrl.SetupSignalHandler(), cmd, kubeconfigPath, inj)
		},
	}
	cmd.Flags().StringVar(&kubeconfigPath, "kubeconfig-out", filepath.Join(os.TempDir(), "outrigger-dev", "kubeconfig"),
		"where to write the kubeconfig of the local control plane")
	inj.bindFlags(cmd.Flags())
	gofs := flag.NewFlagSet("zap", flag.ExitOnError)
	zapOpts.BindFlags(gofs)
	cmd.Flags().AddGoFlagSet(gofs)
	return cmd
}

func runDev(ctx context.Context, cmd *cobra.Command, kubeconfigPath string, inj injectorOptions) error {
	env, err := localcp.New(scheme.New())
	if err != nil {
		return err
	}
	restCfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start local control plane: %w", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "stop local control plane: %v\n", err)
		}
	}()
	if err := os.MkdirAll(filepath.Dir(kubeconfigPath), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfigPath, env.KubeConfig, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}

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
	if err := setupOperator(mgr, inj.handler(devControlPlaneNamespace)); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Local control plane is up at %s\n  export KUBECONFIG=%s\n  kubectl apply -k config/samples\nPress Ctrl-C to stop.\n",
		restCfg.Host, kubeconfigPath)
	return mgr.Start(ctx)
}
