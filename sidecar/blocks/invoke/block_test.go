package invoke

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/static"
)

type fakeRemote struct {
	addr string
	call *Call
	err  error
}

func (f *fakeRemote) Call(_ context.Context, addr string, call *Call) (*Response, error) {
	f.addr, f.call = addr, call
	if f.err != nil {
		return nil, f.err
	}
	return &Response{Status: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2}, nil
}

func (f *fakeRemote) Conn(string, string, string) (grpc.ClientConnInterface, error) {
	return nil, errors.New("no conn")
}

type fakeApp struct{ req *appchannel.Request }

func (f *fakeApp) Do(_ context.Context, req *appchannel.Request) (*appchannel.Response, error) {
	f.req = req
	return &appchannel.Response{Status: 201, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), ContentLength: 0}, nil
}

func TestInvokeRemoteCarriesIdentityAndTrace(t *testing.T) {
	remote := &fakeRemote{}
	b := &Block{AppID: "a", Namespace: "default", Resolver: static.Resolver{"b": "10.0.0.1:50002"}, Remote: remote}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	resp, err := b.Invoke(context.Background(), &Request{Target: "b", Verb: "POST", Method: "m", RawQuery: "q=1",
		Header:        http.Header{"Traceparent": {tp}, "Dapr-Caller-App-Id": {"forged"}, "Dapr-Api-Token": {"t"}, "Connection": {"close"}, "X-A": {"1"}},
		ContentLength: -1})
	if err != nil {
		t.Fatal(err)
	}
	c := remote.call
	if remote.addr != "10.0.0.1:50002" || c.Caller != (Caller{AppID: "a", Namespace: "default", TrustDomain: "public"}) ||
		c.TargetAppID != "b" || c.TargetNamespace != "default" || c.Verb != "POST" || c.Method != "m" || c.RawQuery != "q=1" {
		t.Errorf("call %+v", c)
	}
	for _, k := range []string{"Dapr-Caller-App-Id", "Dapr-Api-Token", "Connection"} {
		if _, ok := c.Header[k]; ok {
			t.Errorf("%s travelled: %v", k, c.Header)
		}
	}
	if !strings.HasPrefix(c.Traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || c.Traceparent == tp {
		t.Errorf("traceparent %q", c.Traceparent)
	}
	if resp.Header.Get("traceparent") != c.Traceparent {
		t.Errorf("response traceparent %q, sent %q", resp.Header.Get("traceparent"), c.Traceparent)
	}
}

var serveACL = daprv1alpha1.AccessControlSpec{
	DefaultAction: "deny",
	Policies: []daprv1alpha1.AppPolicySpec{{
		AppID: "a", DefaultAction: "deny", TrustDomain: "public", Namespace: "default",
		Operations: []daprv1alpha1.AppOperationAction{{Name: "/ok", HTTPVerb: []string{"GET"}, Action: "allow"}},
	}},
}

func TestServe(t *testing.T) {
	acl, err := ParseACL(&serveACL, true)
	if err != nil {
		t.Fatal(err)
	}
	app := &fakeApp{}
	b := &Block{AppID: "b", Namespace: "default", App: app, ACL: acl}
	call := &Call{Caller: Caller{AppID: "a", Namespace: "default"}, TargetAppID: "b", Verb: "GET", Method: "ok",
		Header: http.Header{"Dapr-Caller-App-Id": {"forged"}}}
	if _, err := b.Serve(context.Background(), call); err != nil {
		t.Fatal(err)
	}
	if app.req.Header.Get("dapr-caller-app-id") != "a" || app.req.Header.Get("dapr-callee-app-id") != "b" ||
		len(app.req.Header.Get("traceparent")) != 55 {
		t.Errorf("app got %v", app.req.Header)
	}
	call.Method = "secret"
	_, err = b.Serve(context.Background(), call)
	if e := apierrors.As(err); e.Code != apierrors.InvokePermissionDenied {
		t.Errorf("denied call: %v", err)
	}
	call.TargetAppID = "c"
	if _, err := b.Serve(context.Background(), call); err == nil {
		t.Error("a call for another app was served")
	}
}

func TestInvokeErrors(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code apierrors.Code
		msg  string
	}{
		{"remote denial", status.Error(codes.PermissionDenied, "access control policy has denied access"),
			apierrors.InvokePermissionDenied, "failed to invoke, id: b, err: access control policy has denied access"},
		{"remote failure", status.Error(codes.Internal, "error invoking app channel: refused"),
			apierrors.DirectInvoke, "failed to invoke, id: b, err: error invoking app channel: refused"},
		{"local error", apierrors.New(apierrors.DirectInvoke, "app channel is not initialized"),
			apierrors.DirectInvoke, "failed to invoke, id: b, err: app channel is not initialized"},
		{"plain error", errors.New("boom"), apierrors.DirectInvoke, "failed to invoke, id: b, err: boom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := apierrors.As(invokeError("b", tc.err))
			if e.Code != tc.code || e.Message != tc.msg {
				t.Errorf("got %v %q", e.Code, e.Message)
			}
		})
	}
}

func TestProxyOutbound(t *testing.T) {
	b := &Block{AppID: "a", Namespace: "default", Resolver: static.Resolver{}, Remote: &fakeRemote{}}
	if _, _, err := b.ProxyOutbound(context.Background(), "/s/M", metadata.MD{}); apierrors.As(err).Code != apierrors.DirectInvokeNoAppID {
		t.Errorf("no app id: %v", err)
	}
	if _, _, err := b.ProxyOutbound(context.Background(), "/s/M", metadata.Pairs("dapr-app-id", "nobody")); err == nil ||
		!strings.Contains(err.Error(), "failed to invoke, id: nobody") {
		t.Errorf("unknown app: %v", err)
	}
	// The app's own id needs a gRPC app.
	if _, _, err := b.ProxyOutbound(context.Background(), "/s/M", metadata.Pairs("dapr-app-id", "a")); err == nil {
		t.Error("proxied to an HTTP app")
	}
}

func TestTraceparent(t *testing.T) {
	for _, h := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		if _, ok := parseTraceparent(h); ok {
			t.Errorf("%q accepted", h)
		}
	}
	sc, ok := parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
	if !ok || sc.String() != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("future version: %v %v", sc, ok)
	}
	child := childSpan("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if child.traceID != sc.traceID || child.spanID == sc.spanID || child.flags != 1 {
		t.Errorf("child %v", child)
	}
	if n := childSpan(""); n.traceID == ([16]byte{}) || n.flags != 0 {
		t.Errorf("new trace %v", n)
	}
}
