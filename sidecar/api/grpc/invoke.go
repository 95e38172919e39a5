package grpc

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	internalapi "github.com/outrigger-dev/outrigger/sidecar/api/internal"
	"github.com/outrigger-dev/outrigger/sidecar/api/internal/proxy"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
	"github.com/outrigger-dev/outrigger/sidecar/security"
)

// httpStatusHeader carries the app's HTTP status in InvokeService's response headers.
const httpStatusHeader = "dapr-http-status"

// InvokeService invokes a method over the same path as HTTP invocation; the body is
// read whole, as a unary RPC must. An answer outside 2xx is an error status, as Dapr
// renders it (invokev1.ErrorFromHTTPResponseCode).
func (s *server) InvokeService(ctx context.Context, in *runtimev1.InvokeServiceRequest) (*commonv1.InvokeResponse, error) {
	if s.blocks.Invoke == nil {
		return nil, toStatus(apierrors.New(apierrors.DirectInvoke, "invoke API is not ready"))
	}
	msg := in.GetMessage()
	md, _ := metadata.FromIncomingContext(ctx)
	header := headerFromMetadata(md)
	if ct := msg.GetContentType(); ct != "" {
		header.Set("Content-Type", ct)
	}
	data := msg.GetData().GetValue()
	req := &invoke.Request{
		Target:        in.GetId(),
		Method:        msg.GetMethod(),
		Header:        header,
		Body:          bytes.NewReader(data),
		ContentLength: int64(len(data)),
	}
	if ext := msg.GetHttpExtension(); ext != nil && ext.GetVerb() != commonv1.HTTPExtension_NONE {
		req.Verb = ext.GetVerb().String()
		req.RawQuery = ext.GetQuerystring()
	}
	resp, err := s.blocks.Invoke.Invoke(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, toStatus(apierrors.Wrap(apierrors.DirectInvoke, err, "failed to invoke, id: %s, err: read the response", in.GetId()))
	}
	// The app's HTTP trailers (resp.Trailer) do not become gRPC trailer metadata: Dapr
	// 1.14's InvokeService sets trailers only for an app whose channel is gRPC ("Only
	// include trailers if appchannel uses gRPC"), never from an HTTP answer.
	out := metadataFromHeader(resp.Header)
	out.Set(httpStatusHeader, strconv.Itoa(resp.Status))
	_ = grpc.SetHeader(ctx, out)
	if resp.Status < 200 || resp.Status > 299 {
		return nil, httpStatusError(resp.Status, body)
	}
	return &commonv1.InvokeResponse{
		Data:        &anypb.Any{Value: body},
		ContentType: resp.Header.Get("Content-Type"),
	}, nil
}

// headerFromMetadata turns the caller's metadata into the request headers, as Dapr
// does: reserved gRPC keys get a dapr- prefix, binary ones and the content type are
// left out, and the API token stays here.
func headerFromMetadata(md metadata.MD) http.Header {
	h := make(http.Header, len(md))
	for k, v := range md {
		switch {
		case k == "content-type", k == APITokenHeader, strings.HasSuffix(k, "-bin"):
			continue
		case strings.HasPrefix(k, ":"):
			k = "dapr-" + k[1:]
		case strings.HasPrefix(k, "grpc-"):
			k = "dapr-" + k
		}
		for _, s := range v {
			h.Add(k, s)
		}
	}
	return h
}

// permanentHTTPHeaders are the standard HTTP headers that Dapr prefixes with dapr-
// when it turns an app's response headers into gRPC metadata, so that they cannot be
// mistaken for the gRPC call's own.
var permanentHTTPHeaders = map[string]bool{}

func init() {
	for _, h := range []string{"Accept", "Accept-Charset", "Accept-Language", "Accept-Ranges", "Connection", "Keep-Alive",
		"Proxy-Connection", "Transfer-Encoding", "Upgrade", "Cache-Control", "Content-Type", "Content-Length", "Cookie",
		"Date", "Expect", "From", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Schedule-Tag-Match",
		"If-Unmodified-Since", "Max-Forwards", "Origin", "Pragma", "Referer", "Via", "Warning"} {
		permanentHTTPHeaders[h] = true
	}
}

func metadataFromHeader(h http.Header) metadata.MD {
	md := metadata.MD{}
	for k, v := range h {
		key := strings.ToLower(k)
		if key == invoke.HeaderTraceparent || key == invoke.HeaderTracestate {
			// Dapr sends the trace context as grpc-trace-bin rather than as headers.
			continue
		}
		if permanentHTTPHeaders[http.CanonicalHeaderKey(k)] {
			key = "dapr-" + key
		}
		md.Append(key, v...)
	}
	return md
}

// maxErrorDetail is the longest app error body copied into the ErrorInfo (Dapr's
// limit for an ErrorInfo metadata value).
const maxErrorDetail = 63

// httpStatusError renders an app's non-2xx answer as Dapr's status: the code mapped
// from the HTTP status, the status text as message, and an ErrorInfo with the HTTP
// code and the start of the body.
func httpStatusError(code int, body []byte) error {
	detail := string(body)
	if len(detail) >= maxErrorDetail {
		detail = detail[:maxErrorDetail]
	}
	text := http.StatusText(code)
	st := status.New(codeFromHTTPStatus(code), text)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: text, Domain: errorDomain,
		Metadata: map[string]string{"http.code": strconv.Itoa(code), "http.error_message": detail}}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// codeFromHTTPStatus is Dapr's mapping (invokev1.CodeFromHTTPStatus), which differs
// from gRPC's own (400 is Internal, not InvalidArgument).
func codeFromHTTPStatus(code int) codes.Code {
	if code >= 200 && code < 300 {
		return codes.OK
	}
	switch code {
	case http.StatusRequestTimeout:
		return codes.Canceled
	case http.StatusInternalServerError:
		return codes.Unknown
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		return codes.AlreadyExists
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Unknown
}

// proxyOutbound is the API port's gRPC proxying: a call for any service but Dapr's,
// routed by its dapr-app-id metadata.
func proxyOutbound(blocks api.Blocks) grpc.StreamHandler {
	return proxy.Handler(func(ctx context.Context, fullMethod string, md metadata.MD) (grpc.ClientConnInterface, metadata.MD, error) {
		if blocks.Invoke == nil {
			return nil, nil, status.Errorf(codes.Unimplemented, "unknown service %s", strings.TrimPrefix(fullMethod, "/"))
		}
		if len(md.Get(invoke.HeaderAppID)) == 0 {
			// Dapr's message; without dapr-app-id the call was not meant for proxying.
			return nil, nil, status.Errorf(codes.Unimplemented, "unknown service %s: to proxy a call to an app, set the metadata %s",
				strings.TrimPrefix(fullMethod, "/"), invoke.HeaderAppID)
		}
		return blocks.Invoke.ProxyOutbound(ctx, fullMethod, md)
	}, toStatus)
}

// InternalClient reaches other sidecars' internal servers.
type InternalClient interface {
	invoke.Remote
	Close() error
}

// NewInternalServer returns the internal gRPC server (port 50002) that other sidecars
// call: sidecar/api/internal, which only code under sidecar/api may import. With mtls
// (nil for none) it takes only mTLS callers, identified by their certificates.
func NewInternalServer(block invoke.API, log logr.Logger, mtls *security.Provider) *grpc.Server {
	return internalapi.NewServer(block, log, asMTLS(mtls))
}

// NewInternalClient returns the client of other sidecars' internal servers; with mtls
// (nil for none) it reaches them over mTLS.
func NewInternalClient(mtls *security.Provider) InternalClient {
	return internalapi.NewClient(asMTLS(mtls))
}

// asMTLS keeps a nil provider a nil interface.
func asMTLS(p *security.Provider) internalapi.MTLS {
	if p == nil {
		return nil
	}
	return p
}
