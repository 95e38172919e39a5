package grpc

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
)

// errorDomain is the ErrorInfo domain of Dapr's richer error model.
const errorDomain = "dapr.io"

// toStatus renders any error as a gRPC status: the code and message of the
// *apierrors.Error in its chain (ERR_INTERNAL otherwise), with a google.rpc.ErrorInfo
// whose reason is the error's Reason or, without one, its Dapr error code.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		// Already a status (e.g. from an interceptor); keep it.
		return err
	}
	e := apierrors.As(err)
	code := e.Code.GRPC
	if code == codes.OK {
		code = codes.Internal
	}
	st := status.New(code, e.Message)
	reason := e.Reason
	if reason == "" {
		reason = e.Code.Name
	}
	if withInfo, dErr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: e.Metadata}); dErr == nil {
		st = withInfo
	}
	return st.Err()
}
