package internal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
)

// echoBlock answers every call with its own body, streamed back as it arrives.
type echoBlock struct {
	got chan *invoke.Call
}

func (e *echoBlock) Invoke(context.Context, *invoke.Request) (*invoke.Response, error) {
	return nil, nil
}

func (e *echoBlock) Serve(_ context.Context, call *invoke.Call) (*invoke.Response, error) {
	e.got <- call
	if call.Method == "deny" {
		return nil, apierrors.New(apierrors.InvokePermissionDenied, "access control policy has denied access")
	}
	body := io.NopCloser(bytes.NewReader(nil))
	if call.Body != nil {
		body = io.NopCloser(call.Body)
	}
	return &invoke.Response{Status: 207, Header: http.Header{"X-Echo": {"1"}}, Body: body, ContentLength: call.ContentLength}, nil
}

func (e *echoBlock) ProxyOutbound(context.Context, string, metadata.MD) (grpc.ClientConnInterface, metadata.MD, error) {
	return nil, nil, errors.New("no proxy")
}

func (e *echoBlock) ProxyInbound(context.Context, string, metadata.MD) (grpc.ClientConnInterface, metadata.MD, error) {
	return nil, nil, errors.New("no proxy")
}

func TestCallStreamsBothWays(t *testing.T) {
	block := &echoBlock{got: make(chan *invoke.Call, 4)}
	srv := NewServer(block, logr.Discard())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	client := NewClient()
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, tc := range []struct {
		name   string
		size   int
		length int64
	}{
		{"small, one frame", 1000, 1000},
		{"large, known length", 5*ChunkSize + 17, 5*ChunkSize + 17},
		{"large, unknown length", 3*ChunkSize + 5, -1},
		{"empty", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("0123456789"), tc.size/10+1)[:tc.size]
			resp, err := client.Call(ctx, ln.Addr().String(), &invoke.Call{
				Caller: invoke.Caller{AppID: "a", Namespace: "ns", TrustDomain: "td"}, TargetAppID: "b",
				Verb: "PUT", Method: "m/x", RawQuery: "q=1", Header: http.Header{"X-In": {"1", "2"}},
				Traceparent: "tp", Body: bytes.NewReader(body), ContentLength: tc.length,
			})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(got, body) || resp.Status != 207 || resp.Header.Get("X-Echo") != "1" {
				t.Fatalf("echo: %d %v, %d bytes, %v", resp.Status, resp.Header, len(got), err)
			}
			c := <-block.got
			if c.Caller != (invoke.Caller{AppID: "a", Namespace: "ns", TrustDomain: "td"}) || c.TargetAppID != "b" ||
				c.Verb != "PUT" || c.Method != "m/x" || c.RawQuery != "q=1" || len(c.Header.Values("X-In")) != 2 || c.Traceparent != "tp" {
				t.Errorf("server saw %+v", c)
			}
		})
	}

	_, err = client.Call(ctx, ln.Addr().String(), &invoke.Call{Method: "deny"})
	<-block.got
	st, _ := status.FromError(err)
	if st.Code() != codes.PermissionDenied {
		t.Fatalf("denied: %v", err)
	}
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if reason != "ERR_PERMISSION_DENIED" {
		t.Errorf("reason %q", reason)
	}
}
