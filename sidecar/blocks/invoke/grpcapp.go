package invoke

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// maxOnInvokeBody bounds what is read into one OnInvoke message: unlike an HTTP app, a
// gRPC app takes the body in one message, so it is buffered.
const maxOnInvokeBody = 64 << 20

// callGRPCApp invokes a method of a gRPC app through AppCallback.OnInvoke, as Dapr does
// for an app with --app-protocol grpc: the body goes in the request's data, the HTTP
// verb and query in its HTTP extension, headers as gRPC metadata. The app's answer
// comes back as a 200 with its content type; a gRPC error from the app becomes the
// HTTP status Dapr maps it to, with the status message as the body.
func (b *Block) callGRPCApp(ctx context.Context, verb, method, query string, header http.Header, req *Request) (*Response, error) {
	var data []byte
	if req.Body != nil && req.ContentLength != 0 {
		var err error
		data, err = io.ReadAll(io.LimitReader(req.Body, maxOnInvokeBody+1))
		if err != nil {
			return nil, apierrors.Wrap(apierrors.DirectInvoke, err, "read the request body")
		}
		if len(data) > maxOnInvokeBody {
			return nil, apierrors.New(apierrors.DirectInvoke, "a call to a gRPC app carries its body in one message; this one exceeds %d bytes", maxOnInvokeBody)
		}
	}
	in := &commonv1.InvokeRequest{
		Method:      strings.TrimPrefix(method, "/"),
		Data:        &anypb.Any{Value: data},
		ContentType: header.Get("Content-Type"),
	}
	if verb != "" {
		v, ok := commonv1.HTTPExtension_Verb_value[strings.ToUpper(verb)]
		if !ok {
			return nil, apierrors.New(apierrors.DirectInvoke, "HTTP verb %q has no gRPC equivalent", verb)
		}
		in.HttpExtension = &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_Verb(v), Querystring: query}
	}
	md := metadata.MD{}
	for k, vs := range header {
		lk := strings.ToLower(k)
		if lk == "content-type" || lk == "content-length" || strings.HasPrefix(lk, ":") {
			continue
		}
		md[lk] = append(md[lk], vs...)
	}
	if b.AppToken != "" {
		md.Set(appchannel.APITokenHeader, b.AppToken)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)

	var out *commonv1.InvokeResponse
	err := b.runner().Run(ctx, resiliency.Target{Kind: "app", Name: b.AppID, Direction: resiliency.Inbound, Operation: "invoke"},
		func(ctx context.Context) error {
			var err error
			out, err = runtimev1.NewAppCallbackClient(b.AppGRPC).OnInvoke(ctx, in)
			return err
		})
	if err != nil {
		st, ok := status.FromError(err)
		if !ok || st.Code() == codes.Unavailable {
			return nil, apierrors.Wrap(apierrors.DirectInvoke, err, "error invoking app channel")
		}
		msg := []byte(st.Message())
		return &Response{
			Status:        httpStatusFromCode(st.Code()),
			Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Length": {strconv.Itoa(len(msg))}},
			Body:          io.NopCloser(bytes.NewReader(msg)),
			ContentLength: int64(len(msg)),
		}, nil
	}
	body := out.GetData().GetValue()
	h := http.Header{"Content-Length": {strconv.Itoa(len(body))}}
	if ct := out.GetContentType(); ct != "" {
		h.Set("Content-Type", ct)
	}
	return &Response{Status: http.StatusOK, Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}, nil
}

// httpStatusFromCode is the usual gRPC to HTTP mapping (grpc-gateway's), which Dapr's
// invokev1.HTTPStatusFromCode follows.
func httpStatusFromCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
