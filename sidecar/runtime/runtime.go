package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"k8s.io/client-go/rest"

	"github.com/outrigger-dev/outrigger/internal/memtrim"
	"github.com/outrigger-dev/outrigger/internal/version"
	"github.com/outrigger-dev/outrigger/sidecar/api"
	grpcapi "github.com/outrigger-dev/outrigger/sidecar/api/grpc"
	httpapi "github.com/outrigger-dev/outrigger/sidecar/api/http"
	pubsubblock "github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub"
	stateblock "github.com/outrigger-dev/outrigger/sidecar/blocks/state"
	"github.com/outrigger-dev/outrigger/sidecar/compstore"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution"
	"github.com/outrigger-dev/outrigger/sidecar/report"
	"github.com/outrigger-dev/outrigger/sidecar/resources"
)

// Runtime is one running sidecar.
type Runtime struct {
	cfg Config
	log logr.Logger

	components *compstore.Store
	pubsub     *pubsubblock.Block
	// ingressCount counts delivered messages by outcome, for /metrics.
	ingressCount *prometheus.CounterVec
	blocks       api.Blocks
	invocation   *invocation
	// source is where the resources come from, and configSource the --config file;
	// live holds what of them changes while the sidecar runs (reload.go).
	source       resources.Source
	configSource resources.Source
	// restConfig reaches the API server in Kubernetes mode; reporter tells the operator
	// which components loaded (nil in standalone mode).
	restConfig *rest.Config
	reporter   *report.Reporter
	live       live

	loaded   atomic.Bool // components are loaded
	appReady atomic.Bool // the app's port answers (or the app has none)

	extMu    sync.Mutex
	extended map[string]string

	shutdownOnce sync.Once
	shutdown     chan struct{}

	// Ready is closed once every listener is bound; tests and `outrigger run` wait on it.
	Ready chan struct{}
	// Register fills the component store's registries; it defaults to every built-in
	// implementation, and tests add their own.
	Register func(*compstore.Store)
	// Resolver finds other apps' sidecars; nil picks by --mode: the self-hosted
	// registry in standalone mode, the <app-id>-dapr Services in Kubernetes.
	Resolver nameresolution.Resolver
	// RegistryDir is the self-hosted registry; empty is selfhosted.Dir().
	RegistryDir string
	// AppHealthTicks, when set, triggers the app health probes instead of a ticker of
	// --app-health-probe-interval (tests).
	AppHealthTicks <-chan time.Time
	// RestConfig reaches the API server in Kubernetes mode; nil finds it as kubectl
	// does (KUBECONFIG, then in-cluster credentials).
	RestConfig *rest.Config
	// DisableHotReload turns off the watch of the resources paths and the --config
	// file in standalone mode (tests); changes then apply after a restart.
	DisableHotReload bool
	// ReloadDebounce is how long a change to the resources must be quiet before it
	// applies; zero is resources.DefaultDebounce.
	ReloadDebounce time.Duration
	// Addrs are the bound addresses by name ("http", "grpc", "public", "metrics").
	addrsMu sync.Mutex
	addrs   map[string]net.Addr
}

// New prepares a sidecar; Run starts it.
func New(cfg Config, log logr.Logger) *Runtime {
	return &Runtime{
		cfg:      cfg,
		log:      log,
		extended: map[string]string{},
		shutdown: make(chan struct{}),
		Ready:    make(chan struct{}),
		addrs:    map[string]net.Addr{},
	}
}

// Run loads the components, serves the APIs and blocks until ctx ends or a shutdown is
// requested, then shuts down gracefully: listeners stop accepting, in-flight calls get
// up to the grace period to finish, and components are closed last.
func (r *Runtime) Run(ctx context.Context) error {
	start := time.Now()
	if err := r.openSource(); err != nil {
		return err
	}
	defer r.closeSource()
	set, err := r.loadResources(ctx)
	if err != nil {
		return err
	}
	r.components = compstore.New(r.cfg.AppID, r.cfg.Namespace, r.log.WithName("components"))
	r.components.PodName = r.cfg.PodName
	r.useBuiltinSecretStore(set)
	if r.Register == nil {
		r.Register = registerComponents
	}
	r.Register(r.components)
	r.registerBuiltinSecretStore()
	loadErr := r.components.Load(ctx, set)
	r.reportLoad(set, loadErr)
	if loadErr != nil {
		r.closeComponents()
		return loadErr
	}
	if err := r.live.initResiliency(set, r.log.WithName("resiliency")); err != nil {
		r.closeComponents()
		return err
	}
	iv, err := r.setUpInvocation(ctx, set)
	if err != nil {
		r.closeComponents()
		return err
	}
	defer iv.close()
	r.invocation = iv
	ps := r.setUpPubsub(set, iv)
	r.pubsub = ps
	r.blocks = api.Blocks{
		State:  &stateblock.Block{AppID: r.cfg.AppID, Namespace: r.cfg.Namespace, Stores: r.components, Runner: &r.live.policies},
		Invoke: iv.block,
		Pubsub: ps,
	}

	opts := api.Options{APIToken: r.cfg.APIToken, EnableAPILogging: r.cfg.EnableAPILogging, MaxBodySize: r.cfg.MaxBodySize}
	apiLog := r.log.WithName("api")
	httpSrv := &http.Server{Handler: httpapi.New(r, r.blocks, opts, apiLog), ReadHeaderTimeout: 10 * time.Second}
	publicSrv := &http.Server{Handler: httpapi.ServePublic(r), ReadHeaderTimeout: 10 * time.Second}
	grpcSrv := grpcapi.New(r, r.blocks, opts, apiLog)
	internalSrv := grpcapi.NewInternalServer(iv.block, r.log.WithName("internal"), iv.mtls)

	var servers []func(context.Context)
	var serveErrs = make(chan error, 8)
	stopAll := func() {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.GracefulShutdown)
		defer cancel()
		var wg sync.WaitGroup
		for _, stop := range servers {
			wg.Add(1)
			go func() { defer wg.Done(); stop(ctx) }()
		}
		wg.Wait()
	}

	httpLns, err := r.listenAll("http", r.cfg.HTTPPort)
	if err != nil {
		return r.abort(err)
	}
	for _, ln := range httpLns {
		go func() { serveErrs <- ignoreClosed(httpSrv.Serve(ln)) }()
	}
	servers = append(servers, func(ctx context.Context) { _ = httpSrv.Shutdown(ctx) })

	grpcLns, err := r.listenAll("grpc", r.cfg.GRPCPort)
	if err != nil {
		stopAll()
		return r.abort(err)
	}
	for _, ln := range grpcLns {
		go func() { serveErrs <- ignoreClosed(grpcSrv.Serve(ln)) }()
	}
	servers = append(servers, func(ctx context.Context) { stopGRPC(ctx, grpcSrv) })

	// Other sidecars call this one on the internal port: every interface in Kubernetes,
	// the listen addresses (loopback by default) in standalone mode, where the registry
	// resolves apps to 127.0.0.1.
	internalAddrs := r.cfg.ListenAddresses
	if r.cfg.Mode == ModeKubernetes {
		internalAddrs = []string{""}
	}
	internalLns, err := r.listenOn("internal", internalAddrs, r.cfg.InternalGRPCPort)
	if err != nil {
		stopAll()
		return r.abort(err)
	}
	for _, ln := range internalLns {
		go func() { serveErrs <- ignoreClosed(internalSrv.Serve(ln)) }()
	}
	servers = append(servers, func(ctx context.Context) { stopGRPC(ctx, internalSrv) })

	// The public port answers probes from the kubelet: every interface.
	publicLn, err := r.listen("public", "", r.cfg.PublicPort)
	if err != nil {
		stopAll()
		return r.abort(err)
	}
	go func() { serveErrs <- ignoreClosed(publicSrv.Serve(publicLn)) }()
	servers = append(servers, func(ctx context.Context) { _ = publicSrv.Shutdown(ctx) })

	if r.cfg.EnableMetrics {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), r.ingressCount)
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.Handle("/", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if r.cfg.EnableProfiling {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		metricsSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		ln, err := r.listen("metrics", "", r.cfg.MetricsPort)
		if err != nil {
			stopAll()
			return r.abort(err)
		}
		go func() { serveErrs <- ignoreClosed(metricsSrv.Serve(ln)) }()
		servers = append(servers, func(ctx context.Context) { _ = metricsSrv.Shutdown(ctx) })
	}

	if r.cfg.Mode == ModeStandalone {
		r.register(iv)
		defer r.unregister(iv)
	}
	// Outbound health passes from here: `outrigger run` relies on the registry entry
	// being written by then.
	r.loaded.Store(true)

	appCtx, stopApp := context.WithCancel(ctx)
	defer stopApp()
	stopReload := r.startHotReload(appCtx)
	defer stopReload()
	stopSecrets := r.followSecrets(appCtx)
	defer stopSecrets()
	appUp := make(chan struct{})
	go r.waitForApp(appCtx, appUp)
	go r.runAppHealth(appCtx, iv, appUp)
	go r.startPubsub(appCtx, ps, appUp)
	go r.releaseStartupMemory(appCtx, appUp)
	close(r.Ready)
	r.log.Info("Sidecar is up", "httpPort", r.cfg.HTTPPort, "grpcPort", r.cfg.GRPCPort,
		"components", len(r.components.Components()), "failed", len(r.components.Failed()), "startup", time.Since(start).String())

	var serveErr error
	select {
	case <-ctx.Done():
		r.log.Info("Shutting down: signal received")
		if d := r.cfg.BlockShutdownDuration; d > 0 {
			r.log.Info("Holding shutdown", "duration", d.String())
			select {
			case <-time.After(d):
			case <-r.shutdown:
			}
		}
	case <-r.shutdown:
		r.log.Info("Shutting down: requested through the API")
	case serveErr = <-serveErrs:
		r.log.Error(serveErr, "A server failed; shutting down")
	}
	// Leave the registry first, so that no new call is routed here while the servers
	// drain the calls in flight.
	if r.cfg.Mode == ModeStandalone {
		r.unregister(iv)
	}
	stopApp()
	// No change may reach the components once they close.
	stopReload()
	stopSecrets()
	stopAll()
	r.stopPubsub(ps)
	r.closeComponents()
	r.log.Info("Sidecar stopped")
	return serveErr
}

// closeComponents closes the components within the grace period: a store call that
// never returns must not hold the process up for ever.
func (r *Runtime) closeComponents() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.GracefulShutdown)
	defer cancel()
	if err := r.components.Close(ctx); err != nil {
		r.log.Error(err, "Closing the components")
	}
}

func (r *Runtime) abort(err error) error {
	r.closeComponents()
	return err
}

// listenAll binds the port on every listen address; an address family the host lacks
// (no IPv6 loopback) is skipped as long as one address binds.
func (r *Runtime) listenAll(name string, port int) ([]net.Listener, error) {
	return r.listenOn(name, r.cfg.ListenAddresses, port)
}

func (r *Runtime) listenOn(name string, addrs []string, port int) ([]net.Listener, error) {
	var lns []net.Listener
	var errs []error
	for _, addr := range addrs {
		ln, err := r.listen(name, addr, port)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 {
		return nil, errors.Join(errs...)
	}
	for _, err := range errs {
		r.log.V(1).Info("Skipped a listen address", "server", name, "reason", err.Error())
	}
	return lns, nil
}

func (r *Runtime) listen(name, host string, port int) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("%s API: listen on %s: %w", name, net.JoinHostPort(host, strconv.Itoa(port)), err)
	}
	r.addrsMu.Lock()
	if _, ok := r.addrs[name]; !ok {
		r.addrs[name] = ln.Addr()
	}
	r.addrsMu.Unlock()
	return ln, nil
}

// Addr returns where a server ("http", "grpc", "internal", "public", "metrics")
// listens, once Ready.
func (r *Runtime) Addr(name string) net.Addr {
	r.addrsMu.Lock()
	defer r.addrsMu.Unlock()
	return r.addrs[name]
}

// waitForApp marks the app channel up once the app's port accepts a connection, and
// then closes up.
func (r *Runtime) waitForApp(ctx context.Context, up chan<- struct{}) {
	if r.cfg.AppPort == 0 {
		r.appReady.Store(true)
		close(up)
		return
	}
	addr := net.JoinHostPort(r.cfg.AppChannelAddress, strconv.Itoa(r.cfg.AppPort))
	d := net.Dialer{Timeout: time.Second}
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.Close()
			r.appReady.Store(true)
			r.log.Info("App channel is up", "address", addr)
			close(up)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startupSettle is how long after the app is up the sidecar waits before it gives
// back its start-up memory: long enough for the subscriptions and the first health
// checks, which run once the app is up, to have touched what they need.
const startupSettle = time.Second

// releaseStartupMemory gives back, once start-up is over, the heap that start-up
// freed and the pages of the binary that only start-up touched (internal/memtrim).
// OUTRIGGER_MEMTRIM=off keeps them, to measure the difference.
func (r *Runtime) releaseStartupMemory(ctx context.Context, appUp <-chan struct{}) {
	if os.Getenv("OUTRIGGER_MEMTRIM") == "off" {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-appUp:
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(startupSettle):
	}
	advised, err := memtrim.Release()
	if err != nil {
		r.log.Error(err, "Could not give back the start-up memory")
		return
	}
	r.log.Info("Gave back the start-up memory", "imageMB", advised>>20)
}

func stopGRPC(ctx context.Context, s *grpc.Server) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
	}
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// The api.Runtime methods, for the transports.

func (r *Runtime) Metadata() api.Metadata {
	r.extMu.Lock()
	ext := make(map[string]string, len(r.extended))
	for k, v := range r.extended {
		ext[k] = v
	}
	r.extMu.Unlock()
	return api.Metadata{
		ID:               r.cfg.AppID,
		RuntimeVersion:   version.Get().Version,
		Components:       r.components.Components(),
		FailedComponents: r.components.Failed(),
		HTTPEndpoints:    r.live.endpointNames(),
		Subscriptions:    r.subscriptions(),
		Extended:         ext,
		AppConnectionProperties: api.AppConnectionProperties{
			Port:           r.cfg.AppPort,
			Protocol:       r.cfg.AppProtocol,
			ChannelAddress: r.cfg.AppChannelAddress,
			MaxConcurrency: max(r.cfg.AppMaxConcurrency, 0),
			Health:         r.appHealthMetadata(),
		},
	}
}

func (r *Runtime) SetExtendedMetadata(key, value string) {
	r.extMu.Lock()
	defer r.extMu.Unlock()
	r.extended[key] = value
}

func (r *Runtime) Healthy() error {
	if err := r.OutboundHealthy(); err != nil {
		return err
	}
	if !r.appReady.Load() {
		return fmt.Errorf("app channel to %s:%d is not up yet", r.cfg.AppChannelAddress, r.cfg.AppPort)
	}
	return nil
}

func (r *Runtime) OutboundHealthy() error {
	if !r.loaded.Load() {
		return errors.New("components are not loaded yet")
	}
	return nil
}

func (r *Runtime) Shutdown() {
	r.shutdownOnce.Do(func() { close(r.shutdown) })
}
