package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/outrigger-dev/outrigger/controllers"
	"github.com/outrigger-dev/outrigger/internal/metricsauth"
	"github.com/outrigger-dev/outrigger/internal/scheme"
	"github.com/outrigger-dev/outrigger/internal/version"
	"github.com/outrigger-dev/outrigger/sentry"
	"github.com/outrigger-dev/outrigger/sidecar/components/builtin"
	"github.com/outrigger-dev/outrigger/webhooks/certs"
	"github.com/outrigger-dev/outrigger/webhooks/injector"
	"github.com/outrigger-dev/outrigger/webhooks/validation"
)

// Certificate providers for the webhook server.
const (
	certProviderSelf        = "self"
	certProviderCertManager = "cert-manager"
)

type operatorOptions struct {
	metricsAddr           string
	metricsSecure         bool
	probeAddr             string
	leaderElect           bool
	leaderElectionID      string
	enableHTTP2           bool
	webhookPort           int
	webhookCertDir        string
	certProvider          string
	namespace             string
	webhookSecretName     string
	webhookServiceName    string
	mutatingWebhookName   string
	validatingWebhookName string
	certCheckInterval     time.Duration
	enableMTLS            bool
	sentryPort            int
	injector              injectorOptions
}

// injectorOptions are the operator-wide settings of the sidecar injector.
type injectorOptions struct {
	sidecarImage           string
	allowedServiceAccounts []string
	logAsJSON              bool
	nativeSidecar          bool
}

func (o *injectorOptions) bindFlags(f *pflag.FlagSet) {
	defImage := os.Getenv("SIDECAR_IMAGE")
	if defImage == "" {
		defImage = "ghcr.io/outrigger-dev/outrigger:" + version.Get().Version
	}
	f.StringVar(&o.sidecarImage, "sidecar-image", defImage, "image of the injected daprd container (defaults to $SIDECAR_IMAGE); dapr.io/sidecar-image overrides it per pod")
	f.StringSliceVar(&o.allowedServiceAccounts, "allowed-service-accounts", injector.DefaultAllowedServiceAccounts,
		"namespace:name of the service accounts whose pods are injected, besides system:masters; empty allows every requester")
	f.BoolVar(&o.logAsJSON, "sidecar-log-as-json", false, "default of dapr.io/log-as-json")
	f.BoolVar(&o.nativeSidecar, "enable-native-sidecar", false, "default of dapr.io/enable-native-sidecar")
}

func (o injectorOptions) handler(namespace string) *injector.Handler {
	return &injector.Handler{
		Defaults:               injector.Defaults{Image: o.sidecarImage, LogAsJSON: o.logAsJSON, EnableNativeSidecar: o.nativeSidecar},
		ControlPlaneNamespace:  namespace,
		AllowedServiceAccounts: o.allowedServiceAccounts,
	}
}

func newOperatorCommand() *cobra.Command {
	o := operatorOptions{}
	zapOpts := zap.Options{}
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the operator: CRD controllers, the sidecar injector and the validating and conversion webhooks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
			return runOperator(ctrl.SetupSignalHandler(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", `address of the metrics endpoint; "0" disables it`)
	f.BoolVar(&o.metricsSecure, "metrics-secure", true, "serve metrics over HTTPS, authenticated and authorised through the API server")
	f.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of the healthz and readyz endpoints")
	f.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader so that only one replica runs the controllers")
	f.StringVar(&o.leaderElectionID, "leader-election-id", "operator.outrigger.dapr.io", "name of the leader election Lease")
	f.BoolVar(&o.enableHTTP2, "enable-http2", false, "serve webhooks and metrics over HTTP/2 (off by default: CVE-2023-44487)")
	f.IntVar(&o.webhookPort, "webhook-port", 9443, "port of the webhook server")
	f.StringVar(&o.webhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory holding tls.crt and tls.key of the webhook server")
	f.StringVar(&o.certProvider, "cert-provider", certProviderSelf, `who issues the webhook certificate: "self" (the operator's own CA) or "cert-manager" (files mounted in --webhook-cert-dir)`)
	f.StringVar(&o.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "namespace the operator runs in (defaults to $POD_NAMESPACE)")
	f.StringVar(&o.webhookSecretName, "webhook-secret-name", "outrigger-webhook-server-cert", "Secret that holds the self-issued CA and serving certificate")
	f.StringVar(&o.webhookServiceName, "webhook-service-name", "outrigger-webhook-service", "Service in front of the webhook server")
	f.StringVar(&o.mutatingWebhookName, "mutating-webhook-configuration", "outrigger-mutating-webhook-configuration", "MutatingWebhookConfiguration whose caBundle the self-issued CA keeps")
	f.StringVar(&o.validatingWebhookName, "validating-webhook-configuration", "outrigger-validating-webhook-configuration", "ValidatingWebhookConfiguration whose caBundle the self-issued CA keeps")
	o.injector.bindFlags(f)
	f.DurationVar(&o.certCheckInterval, "cert-check-interval", time.Hour, "how often the self-issued certificate is checked for renewal")
	f.BoolVar(&o.enableMTLS, "enable-mtls", false, "run the certificate authority (Dapr's Sentry) that signs the sidecars' mTLS certificates; keeps the trust bundle in Secret and ConfigMap "+sentry.TrustBundleName)
	f.IntVar(&o.sentryPort, "sentry-port", sentry.DefaultPort, "port of the certificate authority (Service "+sentry.ServiceName+" maps 443 to it)")
	gofs := flag.NewFlagSet("zap", flag.ExitOnError)
	zapOpts.BindFlags(gofs)
	f.AddGoFlagSet(gofs)
	return cmd
}

func runOperator(ctx context.Context, o operatorOptions) error {
	log := ctrl.Log.WithName("setup")
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load Kubernetes client configuration: %w", err)
	}
	scheme := scheme.New()

	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.metricsSecure, TLSOpts: tlsOpts}
	if o.metricsSecure {
		metricsOpts.FilterProvider = metricsauth.FilterProvider
	}

	switch o.certProvider {
	case certProviderSelf:
		if o.namespace == "" {
			return errors.New("--cert-provider=self needs --namespace or $POD_NAMESPACE to keep its certificate Secret")
		}
		direct, err := client.New(restCfg, client.Options{Scheme: scheme})
		if err != nil {
			return fmt.Errorf("create API client: %w", err)
		}
		cm := selfCertManager(direct, o)
		// The webhook server reads its files when it starts, so they must exist first.
		if err := cm.Ensure(ctx); err != nil {
			return fmt.Errorf("bootstrap webhook certificate: %w", err)
		}
		defer log.Info("Stopped")
		return startManager(ctx, restCfg, scheme, o, metricsOpts, tlsOpts, cm)
	case certProviderCertManager:
		return startManager(ctx, restCfg, scheme, o, metricsOpts, tlsOpts, nil)
	default:
		return fmt.Errorf("unknown --cert-provider %q: use %q or %q", o.certProvider, certProviderSelf, certProviderCertManager)
	}
}

func selfCertManager(c client.Client, o operatorOptions) *certs.Manager {
	return &certs.Manager{
		Client:      c,
		Namespace:   o.namespace,
		SecretName:  o.webhookSecretName,
		ServiceName: o.webhookServiceName,
		CertDir:     o.webhookCertDir,
		Interval:    o.certCheckInterval,
		Targets: certs.Targets{
			MutatingWebhookConfigurations:   []string{o.mutatingWebhookName},
			ValidatingWebhookConfigurations: []string{o.validatingWebhookName},
			ConversionCRDs:                  []string{"subscriptions.dapr.io"},
		},
	}
}

func startManager(ctx context.Context, restCfg *rest.Config, scheme *runtime.Scheme, o operatorOptions,
	metricsOpts metricsserver.Options, tlsOpts []func(*tls.Config), cm *certs.Manager) error {
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              o.leaderElectionID,
		LeaderElectionReleaseOnCancel: true,
		WebhookServer: webhook.NewServer(webhook.Options{
			Port:    o.webhookPort,
			CertDir: o.webhookCertDir,
			TLSOpts: tlsOpts,
		}),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if cm != nil {
		if err := mgr.Add(cm); err != nil {
			return err
		}
	}
	if o.enableMTLS {
		if o.namespace == "" {
			return errors.New("--enable-mtls needs --namespace or $POD_NAMESPACE to keep its trust bundle")
		}
		ca, err := sentryServer(restCfg, mgr, o.namespace, o.sentryPort)
		if err != nil {
			return err
		}
		if err := mgr.Add(ca); err != nil {
			return err
		}
	}
	inj := o.injector.handler(o.namespace)
	if o.enableMTLS {
		inj.MTLS = mtlsSource(mgr, o.namespace)
	}
	if err := setupOperator(mgr, inj); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("Starting operator", "version", version.Get().Version,
		"certProvider", o.certProvider, "leaderElect", o.leaderElect, "mtls", o.enableMTLS)
	return mgr.Start(ctx)
}

// sentryServer is the certificate authority of the control plane in namespace; it runs
// on every replica. `operator` and `dev` share it.
func sentryServer(restCfg *rest.Config, mgr ctrl.Manager, namespace string, port int) (*sentry.Server, error) {
	// The bundle is read and written before the manager's cache runs.
	direct, err := client.New(restCfg, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return nil, fmt.Errorf("create API client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("create API clientset: %w", err)
	}
	return sentry.NewKubernetes(namespace, direct, mgr.GetAPIReader(), cs.AuthenticationV1(), port), nil
}

// mtlsSource has every injected sidecar get its certificate from the authority of the
// control plane in namespace, through its Service; the anchors are read uncached, for
// each pod, as the authority publishes them.
func mtlsSource(mgr ctrl.Manager, namespace string) *injector.MTLSSource {
	return &injector.MTLSSource{
		SentryAddress:         sentry.ServiceName + "." + namespace + ".svc:443",
		ControlPlaneNamespace: namespace,
		TrustAnchors:          injector.TrustAnchorsFromConfigMap(mgr.GetAPIReader(), namespace, sentry.TrustBundleName),
		// Dapr's daprsystem Configuration can turn mTLS off; a duration in it that does
		// not parse does not matter here.
		Enabled: func(ctx context.Context) (bool, error) {
			s, err := sentry.SystemSettings(ctx, mgr.GetAPIReader(), namespace)
			if err != nil && !errors.Is(err, sentry.ErrBadSetting) {
				return false, err
			}
			return s.Enabled, nil
		},
	}
}

// setupOperator registers everything the operator serves on a manager; `operator` and
// `dev` share it.
func setupOperator(mgr ctrl.Manager, inj *injector.Handler) error {
	// The validating webhook warns about Component types no sidecar can load.
	builtin.RegisterDefaults()
	if err := controllers.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up controllers: %w", err)
	}
	if err := validation.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up webhooks: %w", err)
	}
	if err := injector.SetupWithManager(mgr, inj); err != nil {
		return fmt.Errorf("set up sidecar injector: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("readyz", mgr.GetWebhookServer().StartedChecker())
}
