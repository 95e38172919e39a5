package kubelet

// sysSetns is setns(2); the frozen syscall package does not name it on amd64.
const sysSetns = 308
