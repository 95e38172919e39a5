package kubelet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Restart back-off, as the kubelet's CrashLoopBackOff but shorter.
const (
	initialBackoff = time.Second
	maxBackoff     = 30 * time.Second
	// A container that ran this long without exiting starts its back-off afresh.
	backoffReset = time.Minute
)

// podRuntime is one pod the kubelet runs.
type podRuntime struct {
	k      *Kubelet
	log    logr.Logger
	key    string
	name   string
	uid    types.UID
	net    *podNet
	dir    string
	relays relays
	creds  *saCredentials
	// tokens are the projected service-account tokens of its volumes, with when to
	// renew each first.
	tokens  []projectedToken
	renewAt []time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	pod        *corev1.Pod // as started, with the pod IP
	started    metav1.Time
	containers []*containerRuntime
	initDone   bool
	failed     string // why the pod failed for good
	stopping   bool
	conditions map[corev1.PodConditionType]corev1.PodCondition
	lastPatch  []byte
}

// containerRuntime is one container, across its restarts.
type containerRuntime struct {
	spec    corev1.Container
	init    bool
	sidecar bool // an init container with restartPolicy Always

	// Under the pod's mutex.
	state     corev1.ContainerState
	lastState corev1.ContainerState
	// lastTerminated is the last exit, which a back-off's waiting state hides.
	lastTerminated corev1.ContainerState
	restarts       int32
	ready          bool
	everRan        bool
	succeeded      bool
	cmd            *exec.Cmd
	exited         chan struct{}
	runningCh      chan struct{} // closed the first time the container runs
}

func newPodRuntime(k *Kubelet, pod *corev1.Pod, pn *podNet, log logr.Logger) *podRuntime {
	p := pod.DeepCopy()
	p.Status.PodIP = pn.ip
	p.Status.PodIPs = []corev1.PodIP{{IP: pn.ip}}
	p.Status.HostIP = k.net.gateway()
	p.Status.HostIPs = []corev1.HostIP{{IP: k.net.gateway()}}
	rt := &podRuntime{
		k: k, log: log, key: pod.Namespace + "/" + pod.Name, name: pod.Name, uid: pod.UID, net: pn,
		dir:        filepath.Join(k.opts.RootDir, "pods", podDirName(pod)),
		pod:        p,
		started:    metav1.Now(),
		conditions: map[corev1.PodConditionType]corev1.PodCondition{},
	}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	for _, c := range p.Spec.InitContainers {
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		rt.containers = append(rt.containers, &containerRuntime{spec: c, init: true, sidecar: sidecar, state: waiting, runningCh: make(chan struct{})})
	}
	for _, c := range p.Spec.Containers {
		rt.containers = append(rt.containers, &containerRuntime{spec: c, state: waiting, runningCh: make(chan struct{})})
	}
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	return rt
}

func (rt *podRuntime) isStopping() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.stopping
}

// changed asks for the pod's status to be reported.
func (rt *podRuntime) changed() { rt.k.queue.Add(rt.key) }

// start runs the init containers in order (a sidecar init container only until it
// runs), then the containers, as the kubelet does.
func (rt *podRuntime) start() {
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		if rt.creds != nil {
			rt.wg.Add(1)
			go func() { defer rt.wg.Done(); rt.renewToken() }()
		}
		rt.mu.Lock()
		pod := rt.pod
		rt.mu.Unlock()
		for i, t := range rt.tokens {
			rt.wg.Add(1)
			go func() {
				defer rt.wg.Done()
				rt.renewLoop("Renew the token of volume "+t.volume, rt.renewAt[i], func() (time.Time, error) {
					return issueProjectedToken(rt.ctx, rt.k.cs, pod, t, rt.volumeDir(t.volume))
				})
			}()
		}
		for _, c := range rt.containers {
			if !c.init {
				continue
			}
			if c.sidecar {
				rt.wg.Add(1)
				go func() { defer rt.wg.Done(); rt.supervise(c) }()
				select {
				case <-c.runningCh:
				case <-rt.ctx.Done():
					return
				}
				continue
			}
			rt.supervise(c)
			rt.mu.Lock()
			ok := c.succeeded
			rt.mu.Unlock()
			if !ok {
				return
			}
		}
		rt.mu.Lock()
		rt.initDone = true
		rt.mu.Unlock()
		rt.changed()
		for _, c := range rt.containers {
			if !c.init {
				rt.wg.Add(1)
				go func() { defer rt.wg.Done(); rt.supervise(c) }()
			}
		}
	}()
}

// supervise runs a container and restarts it as the pod's restartPolicy says. It
// returns when the pod stops, or when the container is done for good.
func (rt *podRuntime) supervise(c *containerRuntime) {
	backoff := initialBackoff
	for {
		began := time.Now()
		code, err := rt.runOnce(c)
		if rt.ctx.Err() != nil || rt.isStopping() {
			return
		}
		var restart bool
		switch {
		case err != nil:
			restart = true // could not start: try again, as the kubelet does
			rt.log.Error(err, "Start container", "container", c.spec.Name)
		case c.sidecar:
			restart = true
		case c.init:
			if code == 0 {
				rt.mu.Lock()
				c.succeeded = true
				rt.mu.Unlock()
				rt.changed()
				return
			}
			restart = rt.pod.Spec.RestartPolicy != corev1.RestartPolicyNever
		default:
			switch rt.pod.Spec.RestartPolicy {
			case corev1.RestartPolicyNever:
				restart = false
			case corev1.RestartPolicyOnFailure:
				restart = code != 0
			default:
				restart = true
			}
		}
		if !restart {
			if c.init {
				rt.mu.Lock()
				rt.failed = fmt.Sprintf("init container %s exited with %d", c.spec.Name, code)
				rt.mu.Unlock()
				rt.changed()
			}
			return
		}
		if time.Since(began) > backoffReset {
			backoff = initialBackoff
		}
		if err == nil {
			rt.mu.Lock()
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason: "CrashLoopBackOff", Message: fmt.Sprintf("back-off %s restarting failed container %s", backoff, c.spec.Name),
			}}
			rt.mu.Unlock()
			rt.changed()
		}
		select {
		case <-rt.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
		if err == nil {
			rt.mu.Lock()
			c.restarts++
			rt.mu.Unlock()
		}
	}
}

// runOnce starts the container's process in the pod's network namespace and waits
// for it to exit. err is set when it could not start.
func (rt *podRuntime) runOnce(c *containerRuntime) (exitCode int, err error) {
	k := rt.k
	waiting := func(reason string, err error) (int, error) {
		rt.mu.Lock()
		c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}}
		rt.mu.Unlock()
		rt.changed()
		return 0, fmt.Errorf("container %s: %s: %w", c.spec.Name, reason, err)
	}
	img, ok := k.opts.Images[c.spec.Image]
	if !ok {
		return waiting("ErrImagePull", fmt.Errorf("the local kubelet has no command for image %q", c.spec.Image))
	}
	rt.mu.Lock()
	pod, creds := rt.pod.DeepCopy(), rt.creds
	rt.mu.Unlock()
	env, err := containerEnv(rt.ctx, pod, &c.spec, k)
	if err != nil {
		return waiting("CreateContainerConfigError", err)
	}
	argv := commandLine(img, &c.spec, env)
	if len(argv) == 0 {
		return waiting("CreateContainerConfigError", errors.New("no command: the image has no entrypoint and the container no command"))
	}
	var extra []string
	if creds != nil && getsToken(pod, &c.spec) {
		// The stand-in for the service-account token mount (see saCredentials).
		extra = append(extra, "KUBECONFIG="+creds.kubeconfig)
	}
	extra = append(extra, volumeTokenEnv(&c.spec, rt.tokens, rt.volumeDir)...)
	logFile, err := os.OpenFile(filepath.Join(rt.dir, c.spec.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return waiting("RunContainerError", err)
	}
	defer logFile.Close()
	out := &lineWriter{console: k.console, pod: rt.name, name: c.spec.Name, file: logFile}
	defer out.Flush()

	cmd := exec.Command(k.net.ipTool, append([]string{"netns", "exec", rt.net.netns}, argv...)...)
	cmd.Env = processEnv(img, env, extra...)
	cmd.Dir = "/"
	if img.WorkingDir != "" {
		cmd.Dir = img.WorkingDir
	}
	if c.spec.WorkingDir != "" {
		cmd.Dir = c.spec.WorkingDir
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that stopping it reaches whatever it started; and
	// killed with the kubelet's process, so that a crash leaves nothing running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second

	rt.mu.Lock()
	if rt.stopping {
		rt.mu.Unlock()
		return 0, errors.New("the pod is stopping")
	}
	if err := cmd.Start(); err != nil {
		rt.mu.Unlock()
		return waiting("RunContainerError", err)
	}
	exited := make(chan struct{})
	c.cmd, c.exited = cmd, exited
	k.track(cmd.Process.Pid)
	if c.state.Terminated != nil {
		c.lastState = c.state
	} else if c.everRan {
		c.lastState = c.lastTerminated
	}
	startedAt := metav1.Now()
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
	c.ready = c.spec.ReadinessProbe == nil
	if !c.everRan {
		c.everRan = true
		close(c.runningCh)
	}
	rt.mu.Unlock()
	rt.log.V(1).Info("Started container", "container", c.spec.Name, "pid", cmd.Process.Pid, "command", argv)
	rt.changed()

	probeCtx, stopProbe := context.WithCancel(rt.ctx)
	if c.spec.ReadinessProbe != nil {
		go rt.probeReadiness(probeCtx, c)
	}
	waitErr := cmd.Wait()
	stopProbe()
	close(exited)

	code := 0
	if waitErr != nil {
		code = -1
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			} else {
				code = ee.ExitCode()
			}
		}
	}
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	rt.mu.Lock()
	c.cmd = nil
	c.ready = false
	c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: reason, StartedAt: startedAt, FinishedAt: metav1.Now(),
		ContainerID: containerID(cmd),
	}}
	c.lastTerminated = c.state
	stopping := rt.stopping
	rt.mu.Unlock()
	if !stopping {
		rt.log.Info("Container exited", "container", c.spec.Name, "exitCode", code)
	}
	rt.changed()
	return code, nil
}

func containerID(cmd *exec.Cmd) string {
	if cmd == nil || cmd.Process == nil {
		return ""
	}
	return "process://" + strconv.Itoa(cmd.Process.Pid)
}

// stop sends SIGTERM to every container's process group, and SIGKILL to what is left
// after the grace period (the pod's, capped by max). Regular containers stop before
// sidecar init containers, as in Kubernetes. When ctx ends first, what is left gets
// SIGKILL at once. It reports false when another call got there first, after that call
// has finished.
func (rt *podRuntime) stop(ctx context.Context, maxGrace time.Duration) bool {
	rt.mu.Lock()
	if rt.stopping {
		rt.mu.Unlock()
		rt.wg.Wait()
		return false
	}
	rt.stopping = true
	grace := maxGrace
	if g := rt.pod.Spec.TerminationGracePeriodSeconds; g != nil && time.Duration(*g)*time.Second < grace {
		grace = time.Duration(*g) * time.Second
	}
	if dt := rt.pod.DeletionGracePeriodSeconds; dt != nil && time.Duration(*dt)*time.Second < grace {
		grace = time.Duration(*dt) * time.Second
	}
	rt.mu.Unlock()
	rt.log.Info("Stopping pod", "gracePeriod", grace.String())

	deadline := time.Now().Add(grace)
	rt.stopGroup(ctx, func(c *containerRuntime) bool { return !c.init }, deadline)
	rt.stopGroup(ctx, func(c *containerRuntime) bool { return c.init }, deadline)
	rt.cancel()
	rt.wg.Wait()
	return true
}

func (rt *podRuntime) stopGroup(ctx context.Context, which func(*containerRuntime) bool, deadline time.Time) {
	rt.mu.Lock()
	type proc struct {
		pid    int
		exited chan struct{}
	}
	var procs []proc
	for _, c := range rt.containers {
		if which(c) && c.cmd != nil && c.cmd.Process != nil {
			procs = append(procs, proc{c.cmd.Process.Pid, c.exited})
		}
	}
	rt.mu.Unlock()
	for _, p := range procs {
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-ctx.Done():
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			<-p.exited
		case <-time.After(time.Until(deadline)):
			rt.log.Info("Container did not stop in time; killing it", "pid", p.pid)
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			<-p.exited
		}
		// Whatever it started and left behind in its group goes too.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
}

// renewToken renews the service-account token at 80% of its life, as the kubelet
// renews projected tokens.
func (rt *podRuntime) renewToken() {
	rt.mu.Lock()
	at, dir := rt.creds.renewAt(), rt.creds.dir
	pod := rt.pod
	rt.mu.Unlock()
	rt.renewLoop("Renew the service-account token", at, func() (time.Time, error) {
		creds, err := issueToken(rt.ctx, rt.k.cs, pod, rt.k.server, rt.k.caData, dir)
		if err != nil {
			return time.Time{}, err
		}
		rt.mu.Lock()
		rt.creds = creds
		rt.mu.Unlock()
		return creds.renewAt(), nil
	})
}

// renewLoop calls renew at at, and then when it says, until the pod stops; a failed
// renewal is tried again 10s later.
func (rt *podRuntime) renewLoop(what string, at time.Time, renew func() (time.Time, error)) {
	for {
		select {
		case <-rt.ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		next, err := renew()
		if err != nil {
			if rt.ctx.Err() == nil {
				rt.log.Error(err, what)
			}
			next = time.Now().Add(10 * time.Second)
		}
		at = next
	}
}

// volumeDir holds the files of one of the pod's volumes.
func (rt *podRuntime) volumeDir(volume string) string {
	return filepath.Join(rt.dir, "volumes", volume)
}

// status is the pod's status as the kubelet reports it.
func (rt *podRuntime) status() corev1.PodStatus {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	st := corev1.PodStatus{
		PodIP:     rt.pod.Status.PodIP,
		PodIPs:    rt.pod.Status.PodIPs,
		HostIP:    rt.pod.Status.HostIP,
		HostIPs:   rt.pod.Status.HostIPs,
		StartTime: &rt.started,
	}
	allStarted, allReady := true, true
	for _, c := range rt.containers {
		cs := corev1.ContainerStatus{
			Name:                 c.spec.Name,
			Image:                c.spec.Image,
			ImageID:              c.spec.Image,
			State:                c.state,
			LastTerminationState: c.lastState,
			Ready:                c.ready,
			RestartCount:         c.restarts,
			Started:              new(c.state.Running != nil),
		}
		switch {
		case c.state.Running != nil:
			cs.ContainerID = containerID(c.cmd)
		case c.state.Terminated != nil:
			cs.ContainerID = c.state.Terminated.ContainerID
		}
		if c.init {
			if !c.sidecar {
				cs.Ready = c.succeeded
			}
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			if c.sidecar && !c.ready {
				allReady = false
			}
			continue
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if c.state.Running == nil {
			allStarted = false
		}
		if !c.ready {
			allReady = false
		}
	}
	switch {
	case rt.failed != "":
		st.Phase, st.Reason, st.Message = corev1.PodFailed, "InitContainerFailed", rt.failed
	case rt.initDone && allStarted:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	ready := rt.initDone && allReady && allStarted
	rt.setCondition(corev1.PodScheduled, true)
	rt.setCondition(corev1.PodReadyToStartContainers, true)
	rt.setCondition(corev1.PodInitialized, rt.initDone)
	rt.setCondition(corev1.ContainersReady, ready)
	rt.setCondition(corev1.PodReady, ready)
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady, corev1.PodScheduled} {
		st.Conditions = append(st.Conditions, rt.conditions[t])
	}
	return st
}

// setCondition keeps the transition time of a condition that did not change.
func (rt *podRuntime) setCondition(t corev1.PodConditionType, ok bool) {
	s := corev1.ConditionFalse
	if ok {
		s = corev1.ConditionTrue
	}
	if c, found := rt.conditions[t]; found && c.Status == s {
		return
	}
	rt.conditions[t] = corev1.PodCondition{Type: t, Status: s, LastTransitionTime: metav1.Now()}
}

// patchStatus reports the status when it changed since the last report.
func (rt *podRuntime) patchStatus(ctx context.Context) error {
	if rt.isStopping() {
		return nil
	}
	body, err := json.Marshal(map[string]any{"status": rt.status()})
	if err != nil {
		return err
	}
	rt.mu.Lock()
	same := string(body) == string(rt.lastPatch)
	rt.mu.Unlock()
	if same {
		return nil
	}
	_, err = rt.k.cs.CoreV1().Pods(rt.pod.Namespace).Patch(ctx, rt.name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("report status: %w", err)
	}
	rt.mu.Lock()
	rt.lastPatch = body
	rt.mu.Unlock()
	return nil
}
