package internal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
	internalv1 "github.com/outrigger-dev/outrigger/sidecar/api/internal/v1"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
)

// Client calls other sidecars' internal servers, keeping one connection per address
// (per address and expected identity with mTLS).
type Client struct {
	mtls   MTLS
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

var _ invoke.Remote = (*Client)(nil)

// NewClient returns a client without connections; they are made on first use. With
// mtls (nil for none), each connection verifies that the sidecar at the other end is
// the target app's.
func NewClient(mtls MTLS) *Client { return &Client{mtls: mtls, conns: map[string]*grpc.ClientConn{}} }

// Conn returns the connection to the sidecar of appID in namespace at addr.
func (c *Client) Conn(addr, appID, namespace string) (grpc.ClientConnInterface, error) {
	return c.conn(addr, appID, namespace)
}

func (c *Client) conn(addr, appID, namespace string) (*grpc.ClientConn, error) {
	key := addr
	var expected spiffe.ID
	if c.mtls != nil {
		// The target is in this sidecar's trust domain, and in its namespace unless the
		// call named one (app.namespace).
		own := c.mtls.ID()
		if namespace == "" {
			namespace = own.Namespace
		}
		expected = spiffe.ID{TrustDomain: own.TrustDomain, Namespace: namespace, AppID: appID}
		key = addr + " " + expected.String()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("the internal client is closed")
	}
	if conn, ok := c.conns[key]; ok {
		return conn, nil
	}
	// Without mTLS the internal port is trusted, like Dapr's without mTLS.
	creds := insecure.NewCredentials()
	if c.mtls != nil {
		creds = credentials.NewTLS(c.mtls.ClientTLS(expected))
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to the sidecar at %s: %w", addr, err)
	}
	c.conns[key] = conn
	return conn, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for key, conn := range c.conns {
		errs = append(errs, conn.Close())
		delete(c.conns, key)
	}
	return errors.Join(errs...)
}

// Call sends call to the sidecar at addr. The request body streams from a goroutine
// while the response is read; the returned body must be closed, which ends the call.
func (c *Client) Call(ctx context.Context, addr string, call *invoke.Call) (*invoke.Response, error) {
	conn, err := c.conn(addr, call.TargetAppID, call.TargetNamespace)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := internalv1.NewInvocationClient(conn).Call(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	first := &internalv1.CallRequest{Header: &internalv1.RequestHeader{
		Method:            call.Verb,
		Path:              call.Method,
		RawQuery:          call.RawQuery,
		Headers:           toProtoHeadersAnnouncing(call.Header, call.Trailer),
		CallerAppId:       call.Caller.AppID,
		CallerNamespace:   call.Caller.Namespace,
		CallerTrustDomain: call.Caller.TrustDomain,
		TargetAppId:       call.TargetAppID,
		TargetNamespace:   call.TargetNamespace,
		Traceparent:       call.Traceparent,
		Tracestate:        call.Tracestate,
		ContentLength:     call.ContentLength,
	}}
	body := call.Body
	if call.ContentLength == 0 {
		body = nil
	}
	// A small body of known length travels with the header, in one frame.
	if body != nil && call.ContentLength > 0 && call.ContentLength <= ChunkSize {
		buf := getBuf()
		n, err := io.ReadFull(body, (*buf)[:call.ContentLength])
		if err != nil {
			putBuf(buf)
			cancel()
			return nil, fmt.Errorf("read the request body: %w", err)
		}
		first.Body = (*buf)[:n]
		// Trailers follow the body: read on to its end, and they go in this frame too.
		if call.Trailer != nil && atEnd(body) {
			first.Trailers = protoTrailers(call.Trailer)
		}
		body = nil
		defer putBuf(buf) // Send has encoded the frame by the time this runs
	}
	sendDone := make(chan struct{})
	if err := stream.Send(first); err != nil && !errors.Is(err, io.EOF) {
		cancel()
		return nil, err
	}
	if body == nil {
		_ = stream.CloseSend()
		close(sendDone)
	} else {
		go func() {
			defer close(sendDone)
			buf := getBuf()
			defer putBuf(buf)
			err := sendBody(body, *buf, func(b []byte) error {
				return stream.Send(&internalv1.CallRequest{Body: b})
			})
			// The caller's trailers are known once its body has ended; only they cost a
			// frame.
			if ts := protoTrailers(call.Trailer); err == nil && ts != nil {
				err = stream.Send(&internalv1.CallRequest{Trailers: ts})
			}
			switch {
			case err == nil:
				_ = stream.CloseSend()
			case errors.Is(err, io.EOF):
				// The target answered without reading the rest; its answer stands.
			default:
				// The caller's body broke: abort the call, so the app does not take a
				// truncated body for a whole one.
				cancel()
			}
		}()
	}

	msg, err := stream.Recv()
	if err != nil {
		cancel()
		<-sendDone
		return nil, err
	}
	h := msg.GetHeader()
	if h == nil {
		cancel()
		<-sendDone
		return nil, errors.New("the target sidecar's first frame has no response header")
	}
	header := fromProtoHeaders(h.GetHeaders())
	resp := &invoke.Response{
		Status:        int(h.GetStatus()),
		Header:        header,
		ContentLength: h.GetContentLength(),
		Trailer:       mergeTrailers(announcedTrailer(header), msg.GetTrailers()),
	}
	resp.Body = &responseBody{stream: stream, pending: msg.GetBody(), resp: resp, cancel: cancel, sendDone: sendDone}
	return resp, nil
}

// responseBody reads the response frames as they are needed; the trailers of the last
// frame go into resp.Trailer before Read returns io.EOF.
type responseBody struct {
	stream   grpc.BidiStreamingClient[internalv1.CallRequest, internalv1.CallResponse]
	pending  []byte
	resp     *invoke.Response
	err      error
	cancel   context.CancelFunc
	sendDone chan struct{}
	once     sync.Once
}

func (b *responseBody) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		msg, err := b.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				b.err = io.EOF
			} else {
				b.err = fmt.Errorf("receive the response body: %w", err)
			}
			continue
		}
		b.pending = msg.GetBody()
		b.resp.Trailer = mergeTrailers(b.resp.Trailer, msg.GetTrailers())
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// Close ends the call and waits for the request body's sender, so that the caller's
// body is not read after Close returns.
func (b *responseBody) Close() error {
	b.once.Do(func() {
		b.cancel()
		<-b.sendDone
	})
	return nil
}
