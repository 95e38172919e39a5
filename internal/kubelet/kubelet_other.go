//go:build !linux

package kubelet

import (
	"context"
	"errors"
	"net"

	"k8s.io/apimachinery/pkg/labels"
)

var errNotLinux = errors.New("the local kubelet needs Linux network namespaces")

// Kubelet runs pods as local processes; only on Linux.
type Kubelet struct{}

func New(Options) (*Kubelet, error)          { return nil, errNotLinux }
func (*Kubelet) Start(context.Context) error { return errNotLinux }
func (*Kubelet) Stop(context.Context) error  { return nil }
func (*Kubelet) PodNetwork() string          { return "" }
func (*Kubelet) PodNetns(string, string) string {
	return ""
}
func (*Kubelet) PortForward(string, labels.Selector, int, string) (net.Addr, error) {
	return nil, errNotLinux
}
