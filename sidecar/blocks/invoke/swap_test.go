package invoke

import (
	"context"
	"net/http"
	"sync"
	"testing"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/static"
)

func TestSetAccessControlReplacesTheACLAndTrustDomain(t *testing.T) {
	deny, err := ParseACL(&serveACL, true)
	if err != nil {
		t.Fatal(err)
	}
	app := &fakeApp{}
	b := &Block{AppID: "b", Namespace: "default", App: app}
	call := func() error {
		_, err := b.Serve(context.Background(), &Call{Caller: Caller{AppID: "a", Namespace: "default"}, TargetAppID: "b",
			Verb: "GET", Method: "secret", Header: http.Header{}})
		return err
	}
	if err := call(); err != nil {
		t.Fatalf("no ACL: %v", err)
	}
	b.SetAccessControl("", deny)
	if e := apierrors.As(call()); e == nil || e.Code != apierrors.InvokePermissionDenied {
		t.Errorf("after the ACL was set: %v", e)
	}
	b.SetAccessControl("example.org", nil)
	if err := call(); err != nil {
		t.Errorf("after the ACL was removed: %v", err)
	}

	remote := &fakeRemote{}
	b.Resolver, b.Remote = static.Resolver{"c": "10.0.0.1:50002"}, remote
	if _, err := b.Invoke(context.Background(), &Request{Target: "c", Verb: "GET", Method: "m", Header: http.Header{}}); err != nil {
		t.Fatal(err)
	}
	if remote.call.Caller.TrustDomain != "example.org" {
		t.Errorf("caller trust domain %q, want the one set", remote.call.Caller.TrustDomain)
	}
}

func TestSwappableEndpoints(t *testing.T) {
	var e SwappableEndpoints
	if _, ok := e.HTTPEndpoint("x"); ok {
		t.Error("the zero value holds an endpoint")
	}
	one := &daprv1alpha1.HTTPEndpoint{}
	one.Name = "x"
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 1000 {
			e.HTTPEndpoint("x")
		}
	}()
	e.Store(StaticEndpoints{"x": one})
	wg.Wait()
	if got, ok := e.HTTPEndpoint("x"); !ok || got != one {
		t.Errorf("after Store: %v %v", got, ok)
	}
	e.Store(StaticEndpoints{})
	if _, ok := e.HTTPEndpoint("x"); ok {
		t.Error("a removed endpoint is still found")
	}
}
