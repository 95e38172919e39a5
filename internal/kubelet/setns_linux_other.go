//go:build linux && !amd64 && !386

package kubelet

import "syscall"

const sysSetns = syscall.SYS_SETNS
