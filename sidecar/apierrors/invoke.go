package apierrors

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Codes of service invocation, as Dapr 1.14 has them (pkg/messages/predefined.go,
// pkg/api/http/directmessaging.go, pkg/api/grpc/grpc.go). Every failure to reach the
// target (unknown app, unreachable sidecar, the app down or unhealthy) is DirectInvoke
// (500, Internal) with Dapr's message "failed to invoke, id: <target>, err: <cause>".
var (
	// DirectInvokeNoAppID is a request that names no app: neither /v1.0/invoke/<id>/
	// nor a dapr-app-id header.
	DirectInvokeNoAppID = Code{"ERR_DIRECT_INVOKE", http.StatusNotFound, codes.NotFound}

	// InvokePermissionDenied is an invocation that the target's access control policy
	// refused. Dapr 1.14 answers it with HTTP 403 and gRPC PermissionDenied, but its
	// HTTP body keeps the code ERR_DIRECT_INVOKE; Outrigger names the cause with
	// ERR_PERMISSION_DENIED, the code Dapr gives every other access-policy denial
	// (secret scopes). Status and gRPC code are Dapr's.
	InvokePermissionDenied = Code{"ERR_PERMISSION_DENIED", http.StatusForbidden, codes.PermissionDenied}
)

// DirectInvokeMessage is Dapr's message of a failed invocation.
func DirectInvokeMessage(target string, cause error) string {
	return "failed to invoke, id: " + target + ", err: " + cause.Error()
}
