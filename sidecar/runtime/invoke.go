package runtime

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/internal/spiffe"
	"github.com/outrigger-dev/outrigger/sidecar/api"
	grpcapi "github.com/outrigger-dev/outrigger/sidecar/api/grpc"
	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/kubernetes"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/selfhosted"
	"github.com/outrigger-dev/outrigger/sidecar/resources"
	"github.com/outrigger-dev/outrigger/sidecar/security"
)

// invocation is what service invocation needs at run time: the block, its clients and
// the app health check.
type invocation struct {
	block    *invoke.Block
	remote   grpcapi.InternalClient
	mtls     *security.Provider // nil without --enable-mtls
	sentry   *security.Sentry
	appConn  *grpc.ClientConn
	health   *appchannel.Health
	registry string // the self-hosted registry directory; empty when not registered
}

func (iv *invocation) close() {
	if iv.remote != nil {
		_ = iv.remote.Close()
	}
	if iv.mtls != nil {
		iv.mtls.Close()
	}
	if iv.sentry != nil {
		_ = iv.sentry.Close()
	}
	if iv.appConn != nil {
		_ = iv.appConn.Close()
	}
}

// loadConfiguration reads the Configuration named by --config. In standalone mode it
// is a file, read like any manifest; in Kubernetes mode it names a Configuration of the
// namespace, which the resources source has read and watches.
func (r *Runtime) loadConfiguration(set *resources.Set) (*daprv1alpha1.Configuration, error) {
	if r.cfg.ConfigPath == "" {
		return nil, nil
	}
	if r.cfg.Mode == ModeKubernetes {
		for _, c := range set.Configurations {
			if c.Object.Name == r.cfg.ConfigPath {
				r.live.configs = []*daprv1alpha1.Configuration{c.Object}
				return c.Object, nil
			}
		}
		return nil, fmt.Errorf("--config %s: there is no Configuration %q in namespace %s (dapr.io/config names one)", r.cfg.ConfigPath, r.cfg.ConfigPath, r.cfg.Namespace)
	}
	src := &resources.Dir{Paths: []string{r.cfg.ConfigPath}, AppID: r.cfg.AppID, Log: r.log.WithName("config"), Debounce: r.ReloadDebounce}
	set, err := src.Load(context.Background())
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", r.cfg.ConfigPath, err)
	}
	switch len(set.Configurations) {
	case 1:
		// Watched from here on (reload.go).
		r.configSource = src
		r.live.configs = []*daprv1alpha1.Configuration{set.Configurations[0].Object}
		return set.Configurations[0].Object, nil
	case 0:
		return nil, fmt.Errorf("--config %s: the file holds no Configuration", r.cfg.ConfigPath)
	default:
		return nil, fmt.Errorf("--config %s: the file holds %d Configurations; keep one", r.cfg.ConfigPath, len(set.Configurations))
	}
}

// setUpInvocation builds the app channel, the app health check and the invoke block.
func (r *Runtime) setUpInvocation(ctx context.Context, set *resources.Set) (*invocation, error) {
	conf, err := r.loadConfiguration(set)
	if err != nil {
		return nil, err
	}
	iv := &invocation{}
	block := &invoke.Block{
		AppID:       r.cfg.AppID,
		Namespace:   r.cfg.Namespace,
		AppProtocol: r.cfg.AppProtocol,
		AppToken:    r.cfg.AppAPIToken,
		Runner:      &r.live.policies,
		Secrets:     r.components.SecretStores(),
		HostAddress: hostAddress(),
	}
	block.HostName, _ = os.Hostname()
	if conf != nil && conf.Spec.AccessControl != nil {
		block.TrustDomain = conf.Spec.AccessControl.TrustDomain
		if block.ACL, err = invoke.ParseACL(conf.Spec.AccessControl, !appchannel.IsGRPC(r.cfg.AppProtocol)); err != nil {
			return nil, fmt.Errorf("--config %s: %w", r.cfg.ConfigPath, err)
		}
	}
	r.live.init(set)
	block.Endpoints = &r.live.endpointSet

	if r.cfg.AppPort > 0 {
		var probe appchannel.Probe
		if appchannel.IsGRPC(r.cfg.AppProtocol) {
			if iv.appConn, err = appchannel.DialGRPC(r.cfg.AppProtocol, r.cfg.AppChannelAddress, r.cfg.AppPort); err != nil {
				return nil, err
			}
			block.AppGRPC = iv.appConn
			probe = appchannel.GRPCProbe(iv.appConn)
		} else {
			base := appchannel.BaseURL(r.cfg.AppProtocol, r.cfg.AppChannelAddress, r.cfg.AppPort)
			probe = appchannel.HTTPProbe(appchannel.NewClient(r.cfg.AppProtocol), base, r.cfg.AppHealthCheckPath)
			opts := appchannel.Options{BaseURL: base, Protocol: r.cfg.AppProtocol, Token: r.cfg.AppAPIToken,
				MaxConcurrency: r.cfg.AppMaxConcurrency}
			if r.cfg.EnableAppHealthCheck {
				// Set below; the channel reads it per call.
				opts.Healthy = func() bool { return iv.health.Healthy() }
			}
			if block.App, err = appchannel.New(opts); err != nil {
				iv.close()
				return nil, err
			}
		}
		if r.cfg.EnableAppHealthCheck {
			iv.health, err = appchannel.NewHealth(appchannel.HealthOptions{
				Probe:     probe,
				Interval:  r.cfg.AppHealthProbeInterval,
				Timeout:   r.cfg.AppHealthProbeTimeout,
				Threshold: r.cfg.AppHealthThreshold,
				Ticks:     r.AppHealthTicks,
				OnChange:  r.appHealthChanged,
			})
			if err != nil {
				iv.close()
				return nil, err
			}
		}
	}

	block.Resolver = r.Resolver
	if block.Resolver == nil {
		if block.Resolver, err = r.defaultResolver(); err != nil {
			iv.close()
			return nil, err
		}
	}
	if r.cfg.EnableMTLS {
		if err := r.setUpMTLS(ctx, iv, block.TrustDomain); err != nil {
			iv.close()
			return nil, err
		}
	}
	iv.remote = grpcapi.NewInternalClient(iv.mtls)
	block.Remote = iv.remote
	iv.block = block
	return iv, nil
}

// mtlsStartTimeout bounds the wait for the first certificate at start.
const mtlsStartTimeout = 30 * time.Second

// setUpMTLS gets this sidecar's certificate, for its identity in trustDomain (the
// Configuration's; Dapr's default when empty), from the certificate authority.
func (r *Runtime) setUpMTLS(ctx context.Context, iv *invocation, trustDomain string) error {
	if trustDomain == "" {
		trustDomain = spiffe.DefaultTrustDomain
	}
	if _, err := os.Stat(r.cfg.SentryTokenFile); err != nil {
		return fmt.Errorf("--enable-mtls needs the token for the certificate authority at %s (DAPR_SENTRY_TOKEN_FILE names another file): %w", r.cfg.SentryTokenFile, err)
	}
	anchors, err := security.ParseTrustAnchors(r.cfg.TrustAnchors)
	if err != nil {
		return fmt.Errorf("DAPR_TRUST_ANCHORS: %w", err)
	}
	iv.sentry = &security.Sentry{Address: r.cfg.SentryAddress, Anchors: anchors, TokenFile: r.cfg.SentryTokenFile,
		ControlPlaneNamespace: r.cfg.ControlPlaneNamespace, ControlPlaneTrustDomain: r.cfg.ControlPlaneTrustDomain}
	iv.mtls, err = security.New(security.Options{
		ID:      spiffe.ID{TrustDomain: trustDomain, Namespace: r.cfg.Namespace, AppID: r.cfg.AppID},
		Anchors: anchors,
		Issuer:  iv.sentry,
		Log:     r.log.WithName("security"),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, mtlsStartTimeout)
	defer cancel()
	if err := iv.mtls.Start(ctx); err != nil {
		iv.mtls = nil
		return err
	}
	return nil
}

func (r *Runtime) defaultResolver() (nameresolution.Resolver, error) {
	if r.cfg.Mode == ModeKubernetes {
		return kubernetes.Resolver{}, nil
	}
	dir, err := r.registryDir()
	if err != nil {
		return nil, err
	}
	return &selfhosted.Resolver{Dir: dir}, nil
}

func (r *Runtime) registryDir() (string, error) {
	if r.RegistryDir != "" {
		return r.RegistryDir, nil
	}
	return selfhosted.Dir()
}

func (r *Runtime) appHealthChanged(healthy bool, err error) {
	if healthy {
		r.log.Info("App entered a healthy state")
		return
	}
	reason := "no successful probe yet"
	if err != nil {
		reason = err.Error()
	}
	r.log.Info("App entered an unhealthy state", "reason", reason)
}

// register records this sidecar in the self-hosted registry, with the ports it bound,
// so that other sidecars resolve it and `outrigger list` shows it. `outrigger run`
// passes its pid and the app's command in the environment; an entry it already wrote
// for this sidecar keeps the app's pid.
func (r *Runtime) register(iv *invocation) {
	dir, err := r.registryDir()
	if err != nil {
		r.log.Error(err, "Could not find the registry directory; other sidecars will not find this app")
		return
	}
	e := selfhosted.Entry{
		AppID:            r.cfg.AppID,
		HTTPPort:         r.boundPort("http"),
		GRPCPort:         r.boundPort("grpc"),
		InternalGRPCPort: r.boundPort("internal"),
		AppPort:          r.cfg.AppPort,
		SidecarPID:       os.Getpid(),
		RunPID:           r.cfg.RunPID,
		Command:          r.cfg.AppCommand,
		Started:          time.Now(),
	}
	if have, err := selfhosted.Lookup(dir, e.AppID); err == nil && have.SidecarPID == e.SidecarPID {
		e.AppPID = have.AppPID
		if e.RunPID == 0 {
			e.RunPID, e.Command = have.RunPID, have.Command
		}
	}
	if err := selfhosted.Write(dir, e); err != nil {
		r.log.Error(err, "Could not record this sidecar in the registry; other sidecars will not find this app", "registry", dir)
		return
	}
	iv.registry = dir
}

func (r *Runtime) unregister(iv *invocation) {
	if iv.registry == "" {
		return
	}
	if err := selfhosted.Remove(iv.registry, r.cfg.AppID, os.Getpid()); err != nil {
		r.log.Error(err, "Could not remove this sidecar from the registry", "registry", iv.registry)
	}
}

func (r *Runtime) boundPort(name string) int {
	if a, ok := r.Addr(name).(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// appHealthMetadata is the health section of the metadata, when the check is on.
func (r *Runtime) appHealthMetadata() *api.AppHealth {
	if !r.cfg.EnableAppHealthCheck || r.cfg.AppPort == 0 {
		return nil
	}
	h := &api.AppHealth{
		HealthCheckPath:     r.cfg.AppHealthCheckPath,
		HealthProbeInterval: r.cfg.AppHealthProbeInterval.String(),
		HealthProbeTimeout:  r.cfg.AppHealthProbeTimeout.String(),
		HealthThreshold:     r.cfg.AppHealthThreshold,
	}
	if appchannel.IsGRPC(r.cfg.AppProtocol) {
		h.HealthCheckPath = ""
	}
	if iv := r.invocation; iv != nil && iv.health != nil {
		h.Status = iv.health.Status()
	}
	return h
}

// runAppHealth starts the app health check once the app's port answers.
func (r *Runtime) runAppHealth(ctx context.Context, iv *invocation, appUp <-chan struct{}) {
	if iv.health == nil {
		return
	}
	select {
	case <-appUp:
	case <-ctx.Done():
		return
	}
	iv.health.Run(ctx)
}

// hostAddress is the address other hosts see this sidecar at, as Dapr finds it:
// DAPR_HOST_IP when set, else the first non-loopback IPv4 address of an interface.
func hostAddress() string {
	if ip := os.Getenv("DAPR_HOST_IP"); ip != "" {
		return ip
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}
