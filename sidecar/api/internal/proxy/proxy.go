// Package proxy forwards gRPC calls it does not know as raw frames: the sidecar's gRPC
// proxying (a call with dapr-app-id metadata for a service other than Dapr's). It
// serves the app's side on the API port and the remote side on the internal port.
package proxy

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	// Registers the proto codec that Codec falls back to.
	_ "google.golang.org/grpc/encoding/proto"
)

// frame is one message of a proxied call, kept as its wire bytes.
type frame struct{ payload []byte }

// codec passes frames through as bytes and encodes everything else as protobuf, so
// that one server serves both its own services and proxied calls. Its name is
// "proto", the content subtype every gRPC client sends.
type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.payload)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frame); ok {
		f.payload = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (codec) Name() string { return "proto" }

// Codec is the server codec of a server that proxies: grpc.ForceServerCodecV2(Codec()).
func Codec() encoding.CodecV2 { return codec{proto: encoding.GetCodecV2("proto")} }

// Director picks where a call goes and the metadata to send with it. Its errors are
// returned to the caller through toStatus.
type Director func(ctx context.Context, fullMethod string, md metadata.MD) (grpc.ClientConnInterface, metadata.MD, error)

var streamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// Handler returns the grpc.UnknownServiceHandler that forwards every call the
// director accepts, streaming both ways; toStatus renders the director's errors.
func Handler(director Director, toStatus func(error) error) grpc.StreamHandler {
	return func(_ any, ss grpc.ServerStream) error {
		fullMethod, ok := grpc.MethodFromServerStream(ss)
		if !ok {
			return status.Error(codes.Internal, "proxy: no method in the stream")
		}
		md, _ := metadata.FromIncomingContext(ss.Context())
		conn, out, err := director(ss.Context(), fullMethod, md)
		if err != nil {
			return toStatus(err)
		}
		out = out.Copy()
		for k := range out {
			if len(k) > 0 && k[0] == ':' {
				delete(out, k)
			}
		}
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		cs, err := conn.NewStream(metadata.NewOutgoingContext(ctx, out), streamDesc, fullMethod,
			grpc.ForceCodecV2(Codec()))
		if err != nil {
			return err
		}

		// Caller to target, until the caller half-closes. When the target ends the call
		// first, SendMsg fails and its status comes through RecvMsg below; when the
		// caller's side breaks, the call to the target is cancelled.
		go func() {
			for {
				f := &frame{}
				if err := ss.RecvMsg(f); err != nil {
					if errors.Is(err, io.EOF) {
						_ = cs.CloseSend()
					} else {
						cancel()
					}
					return
				}
				if err := cs.SendMsg(f); err != nil {
					return
				}
			}
		}()

		// Target to caller, until the target ends the call.
		sentHeader := false
		for {
			f := &frame{}
			err := cs.RecvMsg(f)
			if !sentHeader {
				if h, hErr := cs.Header(); hErr == nil && len(h) > 0 {
					_ = ss.SetHeader(h)
				}
				sentHeader = true
			}
			if err != nil {
				ss.SetTrailer(cs.Trailer())
				if errors.Is(err, io.EOF) {
					return nil
				}
				if _, ok := status.FromError(err); ok {
					return err
				}
				return status.Error(codes.Unavailable, err.Error())
			}
			if err := ss.SendMsg(f); err != nil {
				return err
			}
		}
	}
}
