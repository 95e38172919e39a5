package internal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	internalv1 "github.com/outrigger-dev/outrigger/sidecar/api/internal/v1"
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

// serve serves srv until the test ends, and returns its address and a client, with a
// deadline for the test's calls.
func serve(t *testing.T, srv *grpc.Server) (string, *Client, context.Context) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	client := NewClient(nil)
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ln.Addr().String(), client, ctx
}

func TestCallStreamsBothWays(t *testing.T) {
	block := &echoBlock{got: make(chan *invoke.Call, 4)}
	addr, client, ctx := serve(t, NewServer(block, logr.Discard(), nil))

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
			resp, err := client.Call(ctx, addr, &invoke.Call{
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

	_, err := client.Call(ctx, addr, &invoke.Call{Method: "deny"})
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

// onEOF is a body that calls f just before it ends.
type onEOF struct {
	r io.Reader
	f func()
}

func (o *onEOF) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	if errors.Is(err, io.EOF) {
		o.f()
	}
	return n, err
}

// trailerEcho answers with the call's body, announcing the call's trailers as its own
// and sending them once the body has ended.
type trailerEcho struct {
	echoBlock
	seen chan http.Header
}

func (e *trailerEcho) Serve(_ context.Context, call *invoke.Call) (*invoke.Response, error) {
	resp := &invoke.Response{Status: http.StatusOK, Header: http.Header{}, ContentLength: call.ContentLength, Trailer: call.Trailer.Clone()}
	resp.Body = io.NopCloser(&onEOF{r: call.Body, f: func() {
		resp.Trailer = call.Trailer.Clone()
		select {
		case e.seen <- resp.Trailer:
		default:
		}
	}})
	return resp, nil
}

// frameCounter counts the frames a server receives and sends.
type frameCounter struct {
	grpc.ServerStream
	recv, sent *atomic.Int32
}

func (f *frameCounter) RecvMsg(m any) error {
	err := f.ServerStream.RecvMsg(m)
	if err == nil {
		f.recv.Add(1)
	}
	return err
}

func (f *frameCounter) SendMsg(m any) error {
	f.sent.Add(1)
	return f.ServerStream.SendMsg(m)
}

// Trailers cross the internal hop both ways, in the single frame of a small body or
// in a frame of their own after a larger one; a call without trailers costs no frame.
func TestCallCarriesTrailers(t *testing.T) {
	block := &trailerEcho{seen: make(chan http.Header, 1)}
	var recv, sent atomic.Int32
	srv := grpc.NewServer(append(keepaliveServerOptions(), grpc.StreamInterceptor(
		func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(s, &frameCounter{ServerStream: ss, recv: &recv, sent: &sent})
		}))...)
	internalv1.RegisterInvocationServer(srv, &server{block: block, log: logr.Discard()})
	addr, client, ctx := serve(t, srv)

	// call sends size bytes with the trailer X-Sum when withTrailer, announced when
	// announce, and returns the frames each way.
	call := func(t *testing.T, size int, length int64, withTrailer, announce bool) (int32, int32) {
		t.Helper()
		recv.Store(0)
		sent.Store(0)
		select {
		case <-block.seen:
		default:
		}
		body := bytes.Repeat([]byte("x"), size)
		c := &invoke.Call{Verb: "POST", Method: "m", Header: http.Header{}, Body: bytes.NewReader(body), ContentLength: length}
		if withTrailer {
			c.Trailer = http.Header{}
			if announce {
				c.Trailer["X-Sum"] = nil
			}
			c.Body = &onEOF{r: c.Body, f: func() { c.Trailer.Set("X-Sum", "s1") }}
		}
		resp, err := client.Call(ctx, addr, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := resp.Trailer["X-Sum"]; ok != announce {
			t.Errorf("announced response trailers %v", resp.Trailer)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
		if withTrailer {
			var seen http.Header
			select {
			case seen = <-block.seen:
			case <-ctx.Done():
				t.Fatal("the server's body did not end")
			}
			if seen.Get("X-Sum") != "s1" || resp.Trailer.Get("X-Sum") != "s1" {
				t.Errorf("trailers: the server saw %v, the client got %v; want X-Sum s1", seen, resp.Trailer)
			}
		} else if len(resp.Trailer) != 0 {
			t.Errorf("trailers %v without any sent", resp.Trailer)
		}
		return recv.Load(), sent.Load()
	}
	for _, tc := range []struct {
		name   string
		size   int
		length int64
		extra  int32 // frames each way that trailers add
	}{
		{"small, one frame", 1000, 1000, 0},
		{"large, known length", 3*ChunkSize + 7, 3*ChunkSize + 7, 1},
		{"unknown length", 2000, -1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv0, sent0 := call(t, tc.size, tc.length, false, false)
			if tc.length > 0 && tc.length <= ChunkSize && (recv0 != 1 || sent0 != 1) {
				t.Errorf("a small call took %d frames in, %d out", recv0, sent0)
			}
			for _, announce := range []bool{true, false} {
				if !announce && tc.length >= 0 {
					continue // only a body of unknown length may bring trailers it did not announce
				}
				recv, sent := call(t, tc.size, tc.length, true, announce)
				if recv != recv0+tc.extra || sent != sent0+tc.extra {
					t.Errorf("announce %v: %d frames in, %d out; without trailers %d, %d", announce, recv, sent, recv0, sent0)
				}
			}
		})
	}
}
