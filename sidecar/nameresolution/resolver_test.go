package nameresolution_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/nameresolution"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/kubernetes"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/selfhosted"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/static"
)

func TestResolvers(t *testing.T) {
	dir := t.TempDir()
	if err := selfhosted.Write(dir, selfhosted.Entry{AppID: "nodeapp", InternalGRPCPort: 41234, SidecarPID: os.Getpid(), Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := selfhosted.Write(dir, selfhosted.Entry{AppID: "ghost", InternalGRPCPort: 41235, SidecarPID: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		r        nameresolution.Resolver
		app, ns  string
		want     string
		notFound bool
	}{
		{name: "selfhosted", r: &selfhosted.Resolver{Dir: dir}, app: "nodeapp", ns: "default", want: "127.0.0.1:41234"},
		{name: "selfhosted stale", r: &selfhosted.Resolver{Dir: dir}, app: "ghost", notFound: true},
		{name: "selfhosted unknown", r: &selfhosted.Resolver{Dir: dir}, app: "nobody", notFound: true},
		{name: "kubernetes", r: kubernetes.Resolver{}, app: "nodeapp", ns: "shop", want: "nodeapp-dapr.shop.svc.cluster.local:50002"},
		{name: "kubernetes domain and port", r: kubernetes.Resolver{ClusterDomain: "corp.example", Port: 6000}, app: "a", ns: "b", want: "a-dapr.b.svc.corp.example:6000"},
		{name: "static", r: static.Resolver{"a": "h:1", "a.other": "h:2"}, app: "a", ns: "default", want: "h:1"},
		{name: "static namespaced", r: static.Resolver{"a": "h:1", "a.other": "h:2"}, app: "a", ns: "other", want: "h:2"},
		{name: "static unknown", r: static.Resolver{}, app: "a", notFound: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.Resolve(context.Background(), tc.app, tc.ns)
			if tc.notFound {
				if !errors.Is(err, nameresolution.ErrNotFound) {
					t.Fatalf("got %q, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSelfHostedCache(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1000, 0)
	r := &selfhosted.Resolver{Dir: dir, TTL: time.Second, Now: func() time.Time { return now }}
	write := func(port int) {
		if err := selfhosted.Write(dir, selfhosted.Entry{AppID: "a", InternalGRPCPort: port, SidecarPID: os.Getpid()}); err != nil {
			t.Fatal(err)
		}
	}
	resolve := func() string {
		addr, err := r.Resolve(context.Background(), "a", "")
		if err != nil {
			t.Fatal(err)
		}
		return addr
	}
	write(1111)
	if got := resolve(); got != "127.0.0.1:1111" {
		t.Fatal(got)
	}
	write(2222)
	if got := resolve(); got != "127.0.0.1:1111" {
		t.Errorf("within the TTL: %s", got)
	}
	now = now.Add(time.Second)
	if got := resolve(); got != "127.0.0.1:2222" {
		t.Errorf("after the TTL: %s", got)
	}
	write(3333)
	r.Forget("a", "")
	if got := resolve(); got != "127.0.0.1:3333" {
		t.Errorf("after Forget: %s", got)
	}
}
