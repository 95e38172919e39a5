// Package internal is the internal gRPC service that sidecars call each other on
// (port 50002): the server, which hands calls to the invoke block, and the client,
// which the invoke block uses to reach other sidecars. The protocol is Outrigger's own
// (proto/outrigger/internal/v1). Code outside sidecar/api reaches it through
// sidecar/api/grpc (NewInternalServer, NewInternalClient).
package internal

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/internal/spiffe"
	internalv1 "github.com/outrigger-dev/outrigger/sidecar/api/internal/v1"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
)

// ChunkSize is the most body bytes one frame carries: with the frame's own encoding, a
// message just under 32 KiB, the largest size gRPC's buffer pool serves without taking
// a 1 MiB buffer.
const ChunkSize = 32<<10 - 64

// Flow-control windows of both ends. Fixed windows (which turn off gRPC's bandwidth
// estimation, whose windows grow to many megabytes) bound what a slow reader lets
// accumulate per call, so a large body costs a sidecar about one window, not its size.
const (
	streamWindow = 256 << 10
	connWindow   = 4 << 20
)

// MTLS secures the internal channel (sidecar/security's Provider): this sidecar's
// identity, the TLS of both ends, and the identity a caller's certificate proves.
type MTLS interface {
	ID() spiffe.ID
	ServerTLS() *tls.Config
	ClientTLS(expected spiffe.ID) *tls.Config
	PeerID(ctx context.Context) (spiffe.ID, error)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

func keepaliveServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 8 * time.Second, PermitWithoutStream: true}),
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
	}
}

func toProtoHeaders(h http.Header) []*internalv1.Header {
	out := make([]*internalv1.Header, 0, len(h))
	for k, v := range h {
		out = append(out, &internalv1.Header{Name: k, Values: v})
	}
	return out
}

func fromProtoHeaders(hs []*internalv1.Header) http.Header {
	out := make(http.Header, len(hs))
	for _, h := range hs {
		k := http.CanonicalHeaderKey(h.GetName())
		out[k] = append(out[k], h.GetValues()...)
	}
	return out
}

// trailerHeader, among the headers of a call's first frame, announces the names of the
// trailers that may follow the body; it is taken out again on arrival.
const trailerHeader = "Trailer"

// toProtoHeadersAnnouncing is toProtoHeaders(h), plus the announcement of trailer's
// names when it has any.
func toProtoHeadersAnnouncing(h, trailer http.Header) []*internalv1.Header {
	out := toProtoHeaders(h)
	if len(trailer) > 0 {
		names := make([]string, 0, len(trailer))
		for k := range trailer {
			names = append(names, k)
		}
		out = append(out, &internalv1.Header{Name: trailerHeader, Values: names})
	}
	return out
}

// announcedTrailer removes the announcement from h, and returns the trailers it names
// with nil values, or nil when there is none.
func announcedTrailer(h http.Header) http.Header {
	names, ok := h[trailerHeader]
	if !ok {
		return nil
	}
	delete(h, trailerHeader)
	t := make(http.Header, len(names))
	for _, n := range names {
		t[http.CanonicalHeaderKey(n)] = nil
	}
	return appchannel.ValidTrailer(t)
}

// mergeTrailers adds the trailers of a frame to t (in place when t is not nil) and
// returns it.
func mergeTrailers(t http.Header, hs []*internalv1.Header) http.Header {
	if len(hs) == 0 {
		return t
	}
	return appchannel.MergeTrailer(t, fromProtoHeaders(hs))
}

// protoTrailers are the trailers of t that have values, for the last frame; nil when
// there are none, and then no frame is sent for them.
func protoTrailers(t http.Header) []*internalv1.Header {
	var out []*internalv1.Header
	for k, v := range t {
		if len(v) > 0 {
			out = append(out, &internalv1.Header{Name: k, Values: v})
		}
	}
	return out
}

// atEnd reads on a body whose known length was read whole, so that the trailers that
// follow it arrive; it reports whether the body ended there.
func atEnd(r io.Reader) bool {
	var b [1]byte
	_, err := io.ReadFull(r, b[:])
	return errors.Is(err, io.EOF)
}

const errorDomain = "dapr.io"

// toStatus renders a block's error as a status whose ErrorInfo reason is the Dapr
// error code; the calling sidecar reads the code back from the status.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ae *apierrors.Error
	if !errors.As(err, &ae) {
		return status.Error(codes.Internal, err.Error())
	}
	code := ae.Code.GRPC
	if code == codes.OK {
		code = codes.Internal
	}
	st := status.New(code, ae.Message)
	if withInfo, dErr := st.WithDetails(&errdetails.ErrorInfo{Reason: ae.Code.Name, Domain: errorDomain}); dErr == nil {
		st = withInfo
	}
	return st.Err()
}
