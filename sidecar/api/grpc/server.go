// Package grpc is the sidecar's gRPC API: the service dapr.proto.runtime.v1.Dapr from
// Dapr 1.14's generated packages. Like the HTTP API it only decodes, calls a building
// block and encodes; errors are rendered from *apierrors.Error values.
package grpc

import (
	"context"
	"crypto/subtle"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/api/internal/proxy"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
)

// APITokenHeader is the metadata key of the API token.
const APITokenHeader = "dapr-api-token"

// implemented lists the RPCs of the Dapr service this build serves; every other one is
// answered with codes.Unimplemented and a message that names it.
var implemented = map[string]bool{
	runtimev1.Dapr_GetState_FullMethodName:                true,
	runtimev1.Dapr_GetBulkState_FullMethodName:            true,
	runtimev1.Dapr_SaveState_FullMethodName:               true,
	runtimev1.Dapr_DeleteState_FullMethodName:             true,
	runtimev1.Dapr_DeleteBulkState_FullMethodName:         true,
	runtimev1.Dapr_ExecuteStateTransaction_FullMethodName: true,
	runtimev1.Dapr_QueryStateAlpha1_FullMethodName:        true,
	runtimev1.Dapr_GetMetadata_FullMethodName:             true,
	runtimev1.Dapr_SetMetadata_FullMethodName:             true,
	runtimev1.Dapr_Shutdown_FullMethodName:                true,
	runtimev1.Dapr_InvokeService_FullMethodName:           true,
	runtimev1.Dapr_PublishEvent_FullMethodName:            true,
	runtimev1.Dapr_BulkPublishEventAlpha1_FullMethodName:  true,
}

var daprServicePrefix = "/" + runtimev1.Dapr_ServiceDesc.ServiceName + "/"

// New returns a gRPC server with the Dapr service registered; the caller serves it on
// its listener and stops it.
func New(rt api.Runtime, blocks api.Blocks, opts api.Options, log logr.Logger) *grpc.Server {
	unary := []grpc.UnaryServerInterceptor{}
	stream := []grpc.StreamServerInterceptor{}
	if opts.APIToken != "" {
		a := tokenAuth([]byte(opts.APIToken))
		unary = append(unary, a.unary)
		stream = append(stream, a.stream)
	}
	if opts.EnableAPILogging {
		l := apiLogger{log: log}
		unary = append(unary, l.unary)
		stream = append(stream, l.stream)
	}
	unary = append(unary, unimplementedUnary)
	stream = append(stream, unimplementedStream)

	serverOpts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		// Dapr's keepalive policy (pkg/api/grpc/server.go): clients may ping every 8 s
		// even without streams; idle connections are not closed by age.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 8 * time.Second, PermitWithoutStream: true}),
		// gRPC proxying: a call for a service this server does not know is forwarded,
		// as raw frames, to the app its dapr-app-id metadata names.
		grpc.ForceServerCodecV2(proxy.Codec()),
		grpc.UnknownServiceHandler(proxyOutbound(blocks)),
	}
	if opts.MaxBodySize > 0 {
		n := int(min(opts.MaxBodySize, int64(^uint32(0)>>1)))
		serverOpts = append(serverOpts, grpc.MaxRecvMsgSize(n), grpc.MaxSendMsgSize(n))
	}
	srv := grpc.NewServer(serverOpts...)
	runtimev1.RegisterDaprServer(srv, &server{rt: rt, blocks: blocks})
	// Dapr registers reflection too; grpcurl and similar tools rely on it.
	reflection.Register(srv)
	return srv
}

// server implements runtimev1.DaprServer. The embedded Unimplemented server answers
// the RPCs that are not built yet; the unimplemented interceptor gives them a clearer
// message first.
type server struct {
	runtimev1.UnimplementedDaprServer
	rt     api.Runtime
	blocks api.Blocks
}

func isUnimplemented(method string) bool {
	return strings.HasPrefix(method, daprServicePrefix) && !implemented[method]
}

func unimplementedErr(method string) error {
	return toStatus(apierrors.New(apierrors.NotImplemented,
		"%s is not implemented by Outrigger yet", strings.TrimPrefix(method, "/")))
}

func unimplementedUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if isUnimplemented(info.FullMethod) {
		return nil, unimplementedErr(info.FullMethod)
	}
	return handler(ctx, req)
}

func unimplementedStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if isUnimplemented(info.FullMethod) {
		return unimplementedErr(info.FullMethod)
	}
	return handler(srv, ss)
}

// tokenAuth checks dapr-api-token on every call (Dapr's getAPIAuthenticationMiddlewares).
type tokenAuth []byte

func (t tokenAuth) check(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(APITokenHeader)
	if len(v) == 0 {
		return toStatus(apierrors.New(apierrors.Unauthorized, "missing api token in request metadata"))
	}
	if subtle.ConstantTimeCompare([]byte(v[0]), t) != 1 {
		return toStatus(apierrors.New(apierrors.Unauthorized, "authentication error: api token mismatch"))
	}
	return nil
}

func (t tokenAuth) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (t tokenAuth) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := t.check(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

// apiLogger logs one line per call, as Dapr's "gRPC API Called".
type apiLogger struct{ log logr.Logger }

func (l apiLogger) print(ctx context.Context, method string, start time.Time, err error) {
	kv := []any{"method", method, "code", status.Code(err).String(), "duration", time.Since(start)}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ua := md.Get("user-agent"); len(ua) > 0 {
			kv = append(kv, "userAgent", ua[0])
		}
	}
	l.log.Info("gRPC API called", kv...)
}

func (l apiLogger) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	res, err := handler(ctx, req)
	l.print(ctx, info.FullMethod, start, err)
	return res, err
}

func (l apiLogger) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	l.print(ss.Context(), info.FullMethod, start, err)
	return err
}
