package kubelet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// Names of what the network of kubelet instance k creates. Every name starts with a
// prefix of its own, so that a later run of the same instance finds and removes what a
// crashed one left behind, and never touches another instance's.
const (
	lockDir      = "/run/outrigger"
	etcNetnsDir  = "/etc/netns"
	maxInstances = 200
	// podSubnetPrefix + k + ".0/24" is instance k's pod network; .1 is the bridge.
	podSubnetPrefix = "10.244."
)

func bridgeName(k int) string         { return "outrigger" + strconv.Itoa(k) }
func netnsPrefix(k int) string        { return "outrigger" + strconv.Itoa(k) + "-" }
func vethPrefix(k int) string         { return "or" + strconv.Itoa(k) + "v" }
func podNetnsName(k, host int) string { return netnsPrefix(k) + strconv.Itoa(host) }
func podVethName(k, host int) string  { return vethPrefix(k) + strconv.Itoa(host) }

// network is one kubelet's bridge and the namespaces of its pods.
type network struct {
	ipTool   string
	instance int
	lock     *os.File
	log      logr.Logger

	mu   sync.Mutex
	used map[int]bool // host parts of the pod IPs in use
}

// podNet is a pod's network namespace.
type podNet struct {
	netns string
	veth  string
	ip    string
	host  int
}

// openNetwork takes the first free instance number (a lock file held for the life of
// the process, so that a crash frees it), removes what an earlier run of that instance
// left behind, and creates the bridge.
func openNetwork(ctx context.Context, log logr.Logger) (*network, error) {
	ipTool, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("the local kubelet needs iproute2's ip: %w", err)
	}
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, err
	}
	n := &network{ipTool: ipTool, log: log, used: map[int]bool{}}
	for k := range maxInstances {
		f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("kubelet-%d.lock", k)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			continue
		}
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		n.instance, n.lock = k, f
		break
	}
	if n.lock == nil {
		return nil, fmt.Errorf("all %d local kubelet instances are in use (locks in %s)", maxInstances, lockDir)
	}
	n.removeLeftovers(ctx, true)
	br := bridgeName(n.instance)
	if err := n.ip(ctx, "link", "add", br, "type", "bridge"); err != nil {
		n.Close(ctx)
		return nil, err
	}
	if err := n.ip(ctx, "addr", "add", n.gateway()+"/24", "dev", br); err != nil {
		n.Close(ctx)
		return nil, err
	}
	if err := n.ip(ctx, "link", "set", br, "up"); err != nil {
		n.Close(ctx)
		return nil, err
	}
	return n, nil
}

// gateway is the bridge's address, the host as the pods see it.
func (n *network) gateway() string { return fmt.Sprintf("%s%d.1", podSubnetPrefix, n.instance) }

// Bridge is the host's interface towards the pods.
func (n *network) Bridge() string { return bridgeName(n.instance) }

func (n *network) ip(ctx context.Context, args ...string) error {
	_, err := n.ipOutput(ctx, args...)
	return err
}

func (n *network) ipOutput(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, n.ipTool, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// addPod creates a network namespace wired to the bridge, with loopback up and the
// files that `ip netns exec` mounts over /etc.
func (n *network) addPod(ctx context.Context, namespace string) (*podNet, error) {
	n.mu.Lock()
	host := 0
	for h := 2; h < 255; h++ {
		if !n.used[h] {
			host = h
			n.used[h] = true
			break
		}
	}
	n.mu.Unlock()
	if host == 0 {
		return nil, errors.New("the pod network is full (253 pods)")
	}
	p := &podNet{
		netns: podNetnsName(n.instance, host),
		veth:  podVethName(n.instance, host),
		ip:    fmt.Sprintf("%s%d.%d", podSubnetPrefix, n.instance, host),
		host:  host,
	}
	steps := [][]string{
		{"netns", "add", p.netns},
		{"link", "add", p.veth, "type", "veth", "peer", "name", "eth0", "netns", p.netns},
		{"link", "set", p.veth, "master", n.Bridge()},
		{"link", "set", p.veth, "up"},
		{"-n", p.netns, "link", "set", "lo", "up"},
		{"-n", p.netns, "addr", "add", p.ip + "/24", "dev", "eth0"},
		{"-n", p.netns, "link", "set", "eth0", "up"},
		{"-n", p.netns, "route", "add", "default", "via", n.gateway()},
	}
	for _, s := range steps {
		if err := n.ip(ctx, s...); err != nil {
			n.removePod(ctx, p)
			return nil, err
		}
	}
	dir := filepath.Join(etcNetnsDir, p.netns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.removePod(ctx, p)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), renderResolvConf(namespace, "cluster.local"), 0o644); err != nil {
		n.removePod(ctx, p)
		return nil, err
	}
	return p, nil
}

// writeHosts rewrites the pod's hosts file in place: `ip netns exec` bind-mounts the
// file itself, so a process that is running sees only writes to the same inode.
func (n *network) writeHosts(p *podNet, content []byte) error {
	path := filepath.Join(etcNetnsDir, p.netns, "hosts")
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(content, 0); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Truncate(int64(len(content))); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// removePod kills whatever still runs in the namespace, then removes it, its veth and
// its files.
func (n *network) removePod(ctx context.Context, p *podNet) {
	n.removeNetns(ctx, p.netns)
	if n.linkExists(ctx, p.veth) {
		if err := n.ip(ctx, "link", "del", p.veth); err != nil {
			n.log.V(1).Info("Remove veth", "veth", p.veth, "error", err.Error())
		}
	}
	n.mu.Lock()
	delete(n.used, p.host)
	n.mu.Unlock()
}

func (n *network) removeNetns(ctx context.Context, name string) {
	if out, err := n.ipOutput(ctx, "netns", "pids", name); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		if err := n.ip(ctx, "netns", "del", name); err != nil {
			n.log.Error(err, "Remove network namespace", "netns", name)
		}
	}
	_ = os.RemoveAll(filepath.Join(etcNetnsDir, name))
}

func (n *network) linkExists(ctx context.Context, name string) bool {
	return n.ip(ctx, "link", "show", "dev", name) == nil
}

// removeLeftovers removes what a crashed run of this instance left: processes in its
// namespaces, the namespaces, veths, the bridge and the /etc/netns files.
func (n *network) removeLeftovers(ctx context.Context, leftover bool) {
	prefix := netnsPrefix(n.instance)
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				if leftover {
					n.log.Info("Removing a network namespace left by an earlier run", "netns", e.Name())
				}
				n.removeNetns(ctx, e.Name())
			}
		}
	}
	if entries, err := os.ReadDir(etcNetnsDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				_ = os.RemoveAll(filepath.Join(etcNetnsDir, e.Name()))
			}
		}
	}
	if out, err := n.ipOutput(ctx, "-o", "link", "show"); err == nil {
		vp := vethPrefix(n.instance)
		for _, line := range strings.Split(string(out), "\n") {
			// "12: or0v2@if3: <...> ..."
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
			if strings.HasPrefix(name, vp) {
				_ = n.ip(ctx, "link", "del", name)
			}
		}
	}
	if n.linkExists(ctx, bridgeName(n.instance)) {
		if leftover {
			n.log.Info("Removing a bridge left by an earlier run", "bridge", bridgeName(n.instance))
		}
		_ = n.ip(ctx, "link", "del", bridgeName(n.instance))
	}
}

// Close removes the bridge and everything of this instance, then frees the instance.
func (n *network) Close(ctx context.Context) {
	n.removeLeftovers(ctx, false)
	_ = os.Remove(etcNetnsDir) // only when empty
	if n.lock != nil {
		_ = n.lock.Close()
		n.lock = nil
	}
}
