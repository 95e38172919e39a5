package internal

import (
	"errors"
	"fmt"
	"io"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/sidecar/api/internal/proxy"
	internalv1 "github.com/outrigger-dev/outrigger/sidecar/api/internal/v1"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
)

// NewServer returns the internal gRPC server: the Invocation service, and gRPC
// proxying of any other service to the local app.
func NewServer(block invoke.API, log logr.Logger) *grpc.Server {
	opts := append(keepaliveServerOptions(),
		grpc.ForceServerCodecV2(proxy.Codec()),
		grpc.UnknownServiceHandler(proxy.Handler(block.ProxyInbound, toStatus)),
	)
	srv := grpc.NewServer(opts...)
	internalv1.RegisterInvocationServer(srv, &server{block: block, log: log})
	return srv
}

type server struct {
	internalv1.UnimplementedInvocationServer
	block invoke.API
	log   logr.Logger
}

func (s *server) Call(stream grpc.BidiStreamingServer[internalv1.CallRequest, internalv1.CallResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return status.Error(codes.InvalidArgument, "the first frame of a call must carry the request header")
	}
	call := &invoke.Call{
		Caller:          invoke.Caller{AppID: h.GetCallerAppId(), Namespace: h.GetCallerNamespace(), TrustDomain: h.GetCallerTrustDomain()},
		TargetAppID:     h.GetTargetAppId(),
		TargetNamespace: h.GetTargetNamespace(),
		Verb:            h.GetMethod(),
		Method:          h.GetPath(),
		RawQuery:        h.GetRawQuery(),
		Header:          fromProtoHeaders(h.GetHeaders()),
		Traceparent:     h.GetTraceparent(),
		Tracestate:      h.GetTracestate(),
		ContentLength:   h.GetContentLength(),
	}
	if call.ContentLength != 0 {
		call.Body = &requestBody{stream: stream, pending: first.GetBody(), remaining: call.ContentLength}
	}
	resp, err := s.block.Serve(stream.Context(), call)
	if err != nil {
		return toStatus(err)
	}
	defer resp.Body.Close()

	out := &internalv1.CallResponse{Header: &internalv1.ResponseHeader{
		Status:        int32(resp.Status),
		Headers:       toProtoHeaders(resp.Header),
		ContentLength: resp.ContentLength,
	}}
	buf := getBuf()
	defer putBuf(buf)
	// A small body of known length travels with the header, in one frame.
	if resp.ContentLength > 0 && resp.ContentLength <= ChunkSize {
		n, err := io.ReadFull(resp.Body, (*buf)[:resp.ContentLength])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return status.Errorf(codes.Internal, "read the app's response: %v", err)
		}
		out.Body = (*buf)[:n]
		return stream.Send(out)
	}
	if err := stream.Send(out); err != nil {
		return err
	}
	return sendBody(resp.Body, *buf, func(b []byte) error {
		return stream.Send(&internalv1.CallResponse{Body: b})
	})
}

// sendBody sends r in chunks of buf until it ends.
func sendBody(r io.Reader, buf []byte, send func([]byte) error) error {
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if sErr := send(buf[:n]); sErr != nil {
				return sErr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "read the body: %v", err)
		}
	}
}

// requestBody reads the request body from the stream's frames as they are needed, so
// that the app channel pulls the body at the app's pace.
type requestBody struct {
	stream    grpc.BidiStreamingServer[internalv1.CallRequest, internalv1.CallResponse]
	pending   []byte
	remaining int64 // -1 when unknown
	eof       bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.eof || b.remaining == 0 {
			return 0, io.EOF
		}
		msg, err := b.stream.Recv()
		if errors.Is(err, io.EOF) {
			b.eof = true
			if b.remaining > 0 {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, io.EOF
		}
		if err != nil {
			return 0, fmt.Errorf("receive the request body: %w", err)
		}
		if msg.GetHeader() != nil {
			return 0, errors.New("a request header in the middle of the body")
		}
		b.pending = msg.GetBody()
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	if b.remaining > 0 {
		b.remaining -= int64(n)
		if b.remaining < 0 {
			return n, errors.New("the request body is longer than its content length")
		}
	}
	return n, nil
}
