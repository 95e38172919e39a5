package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// hostsKey is the queue's key for "rewrite every pod's hosts file".
const hostsKey = "\x00hosts"

// workers bounds how many pods are started, stopped or reported at once.
const workers = 4

// Kubelet runs the pods bound to one node as local processes. See the package comment.
type Kubelet struct {
	opts    Options
	log     logr.Logger
	cs      kubernetes.Interface
	server  string
	apiPort int
	caData  []byte
	console *console

	podFactory informers.SharedInformerFactory
	svcFactory informers.SharedInformerFactory
	podLister  corelisters.PodLister
	svcLister  corelisters.ServiceLister
	queue      workqueue.TypedRateLimitingInterface[string]
	net        *network
	forwards   relays

	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup

	mu      sync.Mutex
	running map[string]*podRuntime // by namespace/name
	stopped bool
	// groups are the process groups of every container started, checked at Stop.
	groups map[int]bool
}

func (k *Kubelet) track(pgid int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.groups == nil {
		k.groups = map[int]bool{}
	}
	k.groups[pgid] = true
}

// New checks the options; Start does the work.
func New(opts Options) (*Kubelet, error) {
	opts.defaults()
	if opts.Config == nil {
		return nil, errors.New("kubelet: no API server configuration")
	}
	if opts.RootDir == "" {
		return nil, errors.New("kubelet: no root directory")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the local kubelet gives each pod a network namespace, which needs root")
	}
	u, err := url.Parse(opts.Config.Host)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("kubelet: API server address %q: not a URL", opts.Config.Host)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return nil, fmt.Errorf("kubelet: API server address %q has no port", opts.Config.Host)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return nil, fmt.Errorf("kubelet: the API server must listen on loopback, not %s", h)
	}
	caData := opts.Config.CAData
	if len(caData) == 0 && opts.Config.CAFile != "" {
		if caData, err = os.ReadFile(opts.Config.CAFile); err != nil {
			return nil, fmt.Errorf("kubelet: read the API server's CA: %w", err)
		}
	}
	cs, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, err
	}
	return &Kubelet{
		opts:    opts,
		log:     opts.Log,
		cs:      cs,
		server:  "https://" + net.JoinHostPort("127.0.0.1", u.Port()),
		apiPort: port,
		caData:  caData,
		console: &console{out: opts.Output, color: opts.Color},
		running: map[string]*podRuntime{},
	}, nil
}

// Start creates the pod network, removing what a crashed earlier run left, and starts
// watching the node's pods. It returns once the watches have synced.
func (k *Kubelet) Start(ctx context.Context) error {
	if err := os.MkdirAll(k.opts.RootDir, 0o755); err != nil {
		return err
	}
	n, err := openNetwork(ctx, k.log.WithName("network"))
	if err != nil {
		return err
	}
	k.net = n
	k.ctx, k.cancel = context.WithCancel(context.Background())
	k.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())

	k.podFactory = informers.NewSharedInformerFactoryWithOptions(k.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.opts.NodeName).String()
	}))
	k.svcFactory = informers.NewSharedInformerFactory(k.cs, 0)
	podInf := k.podFactory.Core().V1().Pods()
	svcInf := k.svcFactory.Core().V1().Services()
	k.podLister, k.svcLister = podInf.Lister(), svcInf.Lister()
	onPod := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			k.queue.Add(key)
		}
		k.queue.Add(hostsKey)
	}
	onService := func(any) { k.queue.Add(hostsKey) }
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(_, obj any) { onPod(obj) }, DeleteFunc: onPod,
	}); err != nil {
		_ = k.Stop(context.Background())
		return err
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onService, UpdateFunc: func(_, obj any) { onService(obj) }, DeleteFunc: onService,
	}); err != nil {
		_ = k.Stop(context.Background())
		return err
	}
	k.podFactory.Start(k.ctx.Done())
	k.svcFactory.Start(k.ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), podInf.Informer().HasSynced, svcInf.Informer().HasSynced) {
		_ = k.Stop(context.Background())
		return errors.New("kubelet: the watches of pods and services did not sync")
	}
	for range workers {
		k.workers.Add(1)
		go func() {
			defer k.workers.Done()
			for k.next() {
			}
		}()
	}
	k.log.Info("Local kubelet started", "node", k.opts.NodeName, "bridge", k.net.Bridge(), "podNetwork", k.net.gateway()+"/24")
	return nil
}

// PodNetwork is the pods' subnet, reachable from the host through the bridge.
func (k *Kubelet) PodNetwork() string { return k.net.gateway() + "/24" }

func (k *Kubelet) next() bool {
	key, quit := k.queue.Get()
	if quit {
		return false
	}
	defer k.queue.Done(key)
	if err := k.sync(key); err != nil {
		if k.ctx.Err() == nil {
			k.log.Error(err, "Sync pod", "pod", key)
		}
		k.queue.AddRateLimited(key)
		return true
	}
	k.queue.Forget(key)
	return true
}

func (k *Kubelet) sync(key string) error {
	ctx := k.ctx
	if key == hostsKey {
		return k.refreshHosts()
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := k.podLister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		pod, err = nil, nil
	}
	if err != nil {
		return err
	}
	k.mu.Lock()
	rt := k.running[key]
	stopped := k.stopped
	k.mu.Unlock()
	if stopped {
		return nil
	}

	switch {
	case rt != nil && (pod == nil || pod.UID != rt.uid):
		// Gone, or replaced by a pod of the same name: stop the old one; the key comes
		// back once it has stopped.
		go k.stopPod(context.Background(), rt, false)
		return nil
	case pod == nil:
		return nil
	case pod.DeletionTimestamp != nil:
		if rt == nil {
			return k.finishDeletion(ctx, pod)
		}
		go k.stopPod(context.Background(), rt, true)
		return nil
	case rt == nil:
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return nil
		}
		if rt, err = k.startPod(ctx, pod); err != nil {
			return err
		}
	}
	return rt.patchStatus(ctx)
}

// finishDeletion is the kubelet's last word on a pod in graceful deletion: its
// containers have stopped, so the object can go.
func (k *Kubelet) finishDeletion(ctx context.Context, pod *corev1.Pod) error {
	zero := int64(0)
	err := k.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// refreshHosts plays cluster DNS: every pod's hosts file lists the headless Services.
func (k *Kubelet) refreshHosts() error {
	svcs, err := k.svcLister.List(labels.Everything())
	if err != nil {
		return err
	}
	pods, err := k.podLister.List(labels.Everything())
	if err != nil {
		return err
	}
	entries := serviceEntries(svcs, pods, k.opts.ClusterDomain)
	k.mu.Lock()
	rts := make([]*podRuntime, 0, len(k.running))
	for _, rt := range k.running {
		rts = append(rts, rt)
	}
	k.mu.Unlock()
	var errs []error
	for _, rt := range rts {
		if rt.isStopping() {
			continue
		}
		if err := k.net.writeHosts(rt.net, renderHosts(rt.name, rt.net.ip, k.opts.LoopbackNames, entries)); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: hosts file: %w", rt.key, err))
		}
	}
	return errors.Join(errs...)
}

// startPod gives the pod its network and credentials and starts its containers.
func (k *Kubelet) startPod(ctx context.Context, pod *corev1.Pod) (*podRuntime, error) {
	key := pod.Namespace + "/" + pod.Name
	log := k.log.WithValues("pod", key)
	pn, err := k.net.addPod(ctx, pod.Namespace)
	if err != nil {
		return nil, fmt.Errorf("pod %s: network: %w", key, err)
	}
	rt := newPodRuntime(k, pod, pn, log)
	fail := func(err error) (*podRuntime, error) {
		rt.relays.Close()
		k.net.removePod(context.Background(), pn)
		return nil, fmt.Errorf("pod %s: %w", key, err)
	}

	// The host's loopback services, on the pod's loopback.
	for _, r := range podRelays(k.apiPort, k.opts.HostPorts, k.opts.Relays) {
		target := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.HostPort))
		for _, addr := range []string{"127.0.0.1", "::1"} {
			ln, err := listenIn(pn.netns, net.JoinHostPort(addr, strconv.Itoa(r.PodPort)))
			if err != nil {
				if addr == "127.0.0.1" {
					return fail(fmt.Errorf("relay host port %d into the pod's port %d: %w", r.HostPort, r.PodPort, err))
				}
				log.V(1).Info("No IPv6 relay in the pod", "port", r.PodPort, "error", err.Error())
				continue
			}
			rt.relays.serve(ln, func() (net.Conn, error) { return net.DialTimeout("tcp", target, 5*time.Second) })
		}
	}
	if err := k.net.writeHosts(pn, renderHosts(pod.Name, pn.ip, k.opts.LoopbackNames, nil)); err != nil {
		return fail(err)
	}
	if needsToken(pod) {
		creds, err := issueToken(ctx, k.cs, pod, k.server, k.caData, filepath.Join(rt.dir, "serviceaccount"))
		if err != nil {
			return fail(err)
		}
		rt.creds = creds
	}
	for _, t := range projectedTokens(pod) {
		at, err := issueProjectedToken(ctx, k.cs, pod, t, rt.volumeDir(t.volume))
		if err != nil {
			return fail(err)
		}
		rt.tokens, rt.renewAt = append(rt.tokens, t), append(rt.renewAt, at)
	}
	if err := os.MkdirAll(rt.dir, 0o755); err != nil {
		return fail(err)
	}

	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return fail(errors.New("the kubelet is stopping"))
	}
	k.running[key] = rt
	k.mu.Unlock()
	log.Info("Starting pod", "podIP", pn.ip, "netns", pn.netns)
	rt.start()
	k.queue.Add(hostsKey)
	return rt, nil
}

// stopPod stops the containers, frees the network and, for a pod in graceful deletion,
// deletes the object.
func (k *Kubelet) stopPod(ctx context.Context, rt *podRuntime, deleteAfter bool) {
	if !rt.stop(ctx, k.opts.MaxGracePeriod) {
		return // another call is stopping it
	}
	rt.relays.Close()
	k.net.removePod(context.Background(), rt.net)
	k.mu.Lock()
	if k.running[rt.key] == rt {
		delete(k.running, rt.key)
	}
	stopped := k.stopped
	k.mu.Unlock()
	rt.log.Info("Stopped pod")
	if stopped {
		return
	}
	if deleteAfter {
		if err := k.finishDeletion(k.ctx, rt.pod); err != nil {
			rt.log.Error(err, "Delete pod")
		}
	}
	k.queue.Add(rt.key)
	k.queue.Add(hostsKey)
}

// Stop stops every pod (SIGTERM, then SIGKILL after the grace period, or at once when
// ctx ends), removes the network and stops watching. The pods stay in the API server.
// It fails when a process of a container is still there afterwards.
func (k *Kubelet) Stop(ctx context.Context) error {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return nil
	}
	k.stopped = true
	rts := make([]*podRuntime, 0, len(k.running))
	for _, rt := range k.running {
		rts = append(rts, rt)
	}
	k.mu.Unlock()

	k.forwards.Close()
	var wg sync.WaitGroup
	for _, rt := range rts {
		wg.Go(func() { k.stopPod(ctx, rt, false) })
	}
	wg.Wait()
	if k.cancel != nil {
		k.cancel()
	}
	if k.queue != nil {
		k.queue.ShutDown()
	}
	k.workers.Wait()
	if k.podFactory != nil {
		k.podFactory.Shutdown()
		k.svcFactory.Shutdown()
	}
	if k.net != nil {
		k.net.Close(context.Background())
	}
	return k.leftovers()
}

// leftovers reports the container process groups that still have a member.
func (k *Kubelet) leftovers() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var left []string
	for pgid := range k.groups {
		if err := syscall.Kill(-pgid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			left = append(left, strconv.Itoa(pgid))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("processes of the container process groups %s were still running after the pods stopped; killed them", strings.Join(left, ", "))
	}
	return nil
}

// PortForward listens on addr of the host and joins each connection to port on the
// loopback of a running pod of namespace that selector matches, chosen per connection,
// as `kubectl port-forward` does. It stops with the kubelet.
func (k *Kubelet) PortForward(namespace string, selector labels.Selector, port int, addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	k.forwards.serve(ln, func() (net.Conn, error) {
		rt := k.pick(namespace, selector)
		if rt == nil {
			return nil, fmt.Errorf("no running pod in %s matches %s", namespace, selector)
		}
		return dialIn(rt.net.netns, target)
	})
	return ln.Addr(), nil
}

func (k *Kubelet) pick(namespace string, selector labels.Selector) *podRuntime {
	k.mu.Lock()
	defer k.mu.Unlock()
	var best *podRuntime
	for _, rt := range k.running {
		if rt.pod.Namespace != namespace || rt.isStopping() || !selector.Matches(labels.Set(rt.pod.Labels)) {
			continue
		}
		if best == nil || rt.key < best.key {
			best = rt
		}
	}
	return best
}

// PodNetns names the network namespace of a running pod, for `ip netns exec`.
func (k *Kubelet) PodNetns(namespace, name string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rt := k.running[namespace+"/"+name]; rt != nil {
		return rt.net.netns
	}
	return ""
}

// Secret and ConfigMap make the kubelet the ValueSource of env.
func (k *Kubelet) Secret(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	s, err := k.cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return s.Data, nil
}

func (k *Kubelet) ConfigMap(ctx context.Context, namespace, name string) (map[string]string, error) {
	cm, err := k.cs.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return cm.Data, nil
}

func podDirName(pod *corev1.Pod) string {
	return strings.Join([]string{pod.Namespace, pod.Name, string(pod.UID)}, "_")
}
