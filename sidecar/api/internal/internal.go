// Package internal is the internal gRPC service that sidecars call each other on
// (port 50002): the server, which hands calls to the invoke block, and the client,
// which the invoke block uses to reach other sidecars. The protocol is Outrigger's own
// (proto/outrigger/internal/v1). Code outside sidecar/api reaches it through
// sidecar/api/grpc (NewInternalServer, NewInternalClient).
package internal

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	internalv1 "github.com/outrigger-dev/outrigger/sidecar/api/internal/v1"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
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
