// Package apierrors defines the Dapr API's error codes, each with its HTTP status and
// gRPC code. Building blocks return *Error values; transports render them (HTTP as
// {"errorCode":"ERR_...","message":"..."}, gRPC as a status with an ErrorInfo detail).
// No transport invents a code.
package apierrors

import (
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
)

// Code is one Dapr error code and how each transport reports it.
type Code struct {
	Name       string // ERR_STATE_STORE_NOT_FOUND
	HTTPStatus int
	GRPC       codes.Code
}

// Error is a failure that an API returns to the app.
type Error struct {
	Code    Code
	Message string
	// Reason and Metadata fill gRPC's google.rpc.ErrorInfo when set (Dapr's richer
	// error model, e.g. reason DAPR_STATE_NOT_FOUND).
	Reason   string
	Metadata map[string]string
	cause    error
}

func (e *Error) Error() string { return e.Code.Name + ": " + e.Message }
func (e *Error) Unwrap() error { return e.cause }

// New returns an error with the code and a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error with the code whose message ends with the cause's.
func Wrap(code Code, cause error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return &Error{Code: code, Message: msg, cause: cause}
}

// WithReason sets the ErrorInfo reason and metadata.
func (e *Error) WithReason(reason string, md map[string]string) *Error {
	e.Reason, e.Metadata = reason, md
	return e
}

// As finds the *Error in err's chain; any other error becomes ERR_INTERNAL, so that a
// transport always has a code to render.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: Internal, Message: err.Error(), cause: err}
}

// Codes shared by every building block.
var (
	Internal         = Code{"ERR_INTERNAL", http.StatusInternalServerError, codes.Internal}
	MalformedRequest = Code{"ERR_MALFORMED_REQUEST", http.StatusBadRequest, codes.InvalidArgument}
	BodyTooLarge     = Code{"ERR_BODY_TOO_LARGE", http.StatusRequestEntityTooLarge, codes.ResourceExhausted}
	Unauthorized     = Code{"ERR_UNAUTHORIZED", http.StatusUnauthorized, codes.Unauthenticated}
	NotImplemented   = Code{"ERR_NOT_IMPLEMENTED", http.StatusNotImplemented, codes.Unimplemented}
	HealthNotReady   = Code{"ERR_HEALTH_NOT_READY", http.StatusInternalServerError, codes.Internal}
	MetadataGet      = Code{"ERR_METADATA_GET", http.StatusInternalServerError, codes.Internal}
)

// Codes of the state building block, as Dapr 1.14 has them (pkg/api/errors/state.go,
// pkg/api/http/http.go, pkg/api/grpc/grpc.go, pkg/messages/predefined.go).
var (
	StateStoreNotFound = Code{"ERR_STATE_STORE_NOT_FOUND", http.StatusBadRequest, codes.InvalidArgument}
	// StateStoresNotConfigured keeps its Go name, but Dapr's code is singular.
	StateStoresNotConfigured = Code{"ERR_STATE_STORE_NOT_CONFIGURED", http.StatusInternalServerError, codes.FailedPrecondition}
	// StateStoreNotSupported is Dapr's code for a store that lacks a feature. Dapr
	// answers a transaction with gRPC Unimplemented and a query with Internal (both HTTP
	// 500); the block picks the variant with WithStatus.
	StateStoreNotSupported = Code{"ERR_STATE_STORE_NOT_SUPPORTED", http.StatusInternalServerError, codes.Unimplemented}
	StateGet               = Code{"ERR_STATE_GET", http.StatusInternalServerError, codes.Internal}
	StateBulkGet           = Code{"ERR_STATE_BULK_GET", http.StatusInternalServerError, codes.Internal}
	StateSave              = Code{"ERR_STATE_SAVE", http.StatusInternalServerError, codes.Internal}
	StateDelete            = Code{"ERR_STATE_DELETE", http.StatusInternalServerError, codes.Internal}
	StateTransaction       = Code{"ERR_STATE_TRANSACTION", http.StatusInternalServerError, codes.Internal}
	StateQuery             = Code{"ERR_STATE_QUERY", http.StatusInternalServerError, codes.Internal}
	// NotSupportedStateOp is a transaction operation other than upsert or delete: HTTP
	// 400, but gRPC Unimplemented, as Dapr answers it.
	NotSupportedStateOp = Code{"ERR_NOT_SUPPORTED_STATE_OPERATION", http.StatusBadRequest, codes.Unimplemented}
)

// Status variants that keep a block's code but change the transports' status, as Dapr
// does for ETag failures: a mismatch is 409/Aborted, a malformed ETag 400/InvalidArgument.
func (c Code) WithStatus(httpStatus int, grpc codes.Code) Code {
	return Code{Name: c.Name, HTTPStatus: httpStatus, GRPC: grpc}
}

// BadRequest is the code's variant for input the caller got wrong: 400, InvalidArgument.
func (c Code) BadRequest() Code { return c.WithStatus(http.StatusBadRequest, codes.InvalidArgument) }

// Conflict is the code's variant for a failed precondition such as a stale ETag: 409,
// Aborted, as Dapr answers an ETag mismatch.
func (c Code) Conflict() Code { return c.WithStatus(http.StatusConflict, codes.Aborted) }

// StateStoreNotSupportedQuery is how Dapr reports a query on a store without the query
// API: the same code as a transaction on a non-transactional store, but gRPC Internal.
var StateStoreNotSupportedQuery = StateStoreNotSupported.WithStatus(http.StatusInternalServerError, codes.Internal)
