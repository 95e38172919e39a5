package internal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/sidecar/api/internal/proxy"
	internalv1 "github.com/outrigger-dev/outrigger/sidecar/api/internal/v1"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
)

// NewServer returns the internal gRPC server: the Invocation service, and gRPC
// proxying of any other service to the local app. With mtls (nil for none) it takes
// only callers with a certificate under the trust anchors, and their identity from it.
func NewServer(block invoke.API, log logr.Logger, mtls MTLS) *grpc.Server {
	s := &server{block: block, log: log, mtls: mtls}
	director := block.ProxyInbound
	opts := keepaliveServerOptions()
	if mtls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(mtls.ServerTLS())))
		director = s.provenProxyInbound
	}
	opts = append(opts,
		grpc.ForceServerCodecV2(proxy.Codec()),
		grpc.UnknownServiceHandler(proxy.Handler(director, toStatus)),
	)
	srv := grpc.NewServer(opts...)
	internalv1.RegisterInvocationServer(srv, s)
	return srv
}

type server struct {
	internalv1.UnimplementedInvocationServer
	block invoke.API
	log   logr.Logger
	mtls  MTLS
}

// provenCaller is the caller that the peer's certificate proves. A calling sidecar
// states its app's identity too; one that states another identity than its
// certificate's is refused rather than corrected, since only a sidecar that is not
// Outrigger's or Dapr's (or a forged one) would.
func (s *server) provenCaller(ctx context.Context, claimed invoke.Caller) (invoke.Caller, error) {
	id, err := s.mtls.PeerID(ctx)
	if err != nil {
		return invoke.Caller{}, status.Error(codes.Unauthenticated, err.Error())
	}
	if (claimed.AppID != "" && claimed.AppID != id.AppID) || (claimed.Namespace != "" && claimed.Namespace != id.Namespace) ||
		(claimed.TrustDomain != "" && claimed.TrustDomain != id.TrustDomain) {
		return invoke.Caller{}, apierrors.New(apierrors.InvokePermissionDenied,
			"the caller's certificate names %s, but the call claims app %q in namespace %q of trust domain %q",
			id, claimed.AppID, claimed.Namespace, claimed.TrustDomain)
	}
	return invoke.Caller{AppID: id.AppID, Namespace: id.Namespace, TrustDomain: id.TrustDomain}, nil
}

// provenProxyInbound is the block's ProxyInbound with the caller's identity in md
// checked against, and replaced by, the certificate's.
func (s *server) provenProxyInbound(ctx context.Context, fullMethod string, md metadata.MD) (grpc.ClientConnInterface, metadata.MD, error) {
	first := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	caller, err := s.provenCaller(ctx, invoke.Caller{AppID: first(invoke.HeaderCallerAppID),
		Namespace: first(invoke.HeaderCallerNamespace), TrustDomain: first(invoke.HeaderCallerTrustDomain)})
	if err != nil {
		return nil, nil, err
	}
	md = md.Copy()
	md.Set(invoke.HeaderCallerAppID, caller.AppID)
	md.Set(invoke.HeaderCallerNamespace, caller.Namespace)
	md.Set(invoke.HeaderCallerTrustDomain, caller.TrustDomain)
	return s.block.ProxyInbound(ctx, fullMethod, md)
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
	header := fromProtoHeaders(h.GetHeaders())
	trailer := announcedTrailer(header)
	if trailer == nil && h.GetContentLength() < 0 {
		// A body of unknown length may end with trailers it did not announce.
		trailer = http.Header{}
	}
	caller := invoke.Caller{AppID: h.GetCallerAppId(), Namespace: h.GetCallerNamespace(), TrustDomain: h.GetCallerTrustDomain()}
	if s.mtls != nil {
		if caller, err = s.provenCaller(stream.Context(), caller); err != nil {
			return toStatus(err)
		}
	}
	call := &invoke.Call{
		Caller:          caller,
		TargetAppID:     h.GetTargetAppId(),
		TargetNamespace: h.GetTargetNamespace(),
		Verb:            h.GetMethod(),
		Method:          h.GetPath(),
		RawQuery:        h.GetRawQuery(),
		Header:          header,
		Traceparent:     h.GetTraceparent(),
		Tracestate:      h.GetTracestate(),
		ContentLength:   h.GetContentLength(),
	}
	if call.ContentLength != 0 {
		// The first frame has the trailers when it is the only one (a small body).
		call.Trailer = mergeTrailers(trailer, first.GetTrailers())
		call.Body = &requestBody{stream: stream, pending: first.GetBody(), remaining: call.ContentLength, trailer: call.Trailer}
	}
	resp, err := s.block.Serve(stream.Context(), call)
	if err != nil {
		return toStatus(err)
	}
	defer resp.Body.Close()

	out := &internalv1.CallResponse{Header: &internalv1.ResponseHeader{
		Status:        int32(resp.Status),
		Headers:       toProtoHeadersAnnouncing(resp.Header, resp.Trailer),
		ContentLength: resp.ContentLength,
	}}
	buf := getBuf()
	defer putBuf(buf)
	// A small body of known length travels with the header, in one frame.
	if resp.ContentLength > 0 && resp.ContentLength <= ChunkSize {
		n, err := io.ReadFull(resp.Body, (*buf)[:resp.ContentLength])
		// A short body passes as it is; none at all is also a HEAD answer's length.
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return status.Errorf(codes.Internal, "read the app's response: %v", err)
		}
		out.Body = (*buf)[:n]
		// Announced trailers follow the body: read on to its end to have them. (Reading
		// on only then keeps an answer of known length from waiting for the app's
		// end of stream, which an HTTP/2 app may send long after the last byte.)
		if err == nil && resp.Trailer != nil && atEnd(resp.Body) {
			out.Trailers = protoTrailers(resp.Trailer)
		}
		return stream.Send(out)
	}
	if err := stream.Send(out); err != nil {
		return err
	}
	if err := sendBody(resp.Body, *buf, func(b []byte) error {
		return stream.Send(&internalv1.CallResponse{Body: b})
	}); err != nil {
		return err
	}
	// The app's trailers are known once its body has ended; only they cost a frame.
	if ts := protoTrailers(resp.Trailer); ts != nil {
		return stream.Send(&internalv1.CallResponse{Trailers: ts})
	}
	return nil
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
// that the app channel pulls the body at the app's pace. The trailers of the last frame
// go into trailer, before Read returns io.EOF.
type requestBody struct {
	stream    grpc.BidiStreamingServer[internalv1.CallRequest, internalv1.CallResponse]
	pending   []byte
	remaining int64 // -1 when unknown
	eof       bool
	// trailer is the call's Trailer, filled in place; nil when none can come, and
	// then the body ends with its known length, without waiting for the stream's end.
	trailer http.Header
}

func (b *requestBody) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.eof || (b.remaining == 0 && b.trailer == nil) {
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
		if b.trailer != nil {
			mergeTrailers(b.trailer, msg.GetTrailers())
		}
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
