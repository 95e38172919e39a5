package kubelet

// sysSetns is setns(2); the frozen syscall package does not name it on 386.
const sysSetns = 346
