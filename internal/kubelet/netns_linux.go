package kubelet

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// netnsDir is where `ip netns add` pins the namespaces it creates.
const netnsDir = "/run/netns"

// inNetns runs fn on an OS thread that has joined the named network namespace. A
// socket belongs to the namespace it was created in, so a listener or connection made
// in fn lives in the pod's namespace while the rest of the process stays in the host's.
func inNetns(name string, fn func() error) error {
	target, err := os.Open(filepath.Join(netnsDir, name))
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer target.Close()

	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer self.Close()
	if err := setns(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", name, err)
	}
	ferr := fn()
	if err := setns(self); err != nil {
		// The thread stays locked, so it ends with this goroutine rather than serve
		// others from the wrong namespace.
		return fmt.Errorf("leave network namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func setns(f *os.File) error {
	if _, _, errno := syscall.RawSyscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0); errno != 0 {
		return errno
	}
	return nil
}

// listenIn opens a TCP listener inside a network namespace.
func listenIn(netns, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNetns(netns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// dialIn connects from inside a network namespace, as a process of the pod would.
func dialIn(netns, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(netns, func() (err error) {
		// The socket is created, and the connection started, on this thread.
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	return c, err
}
