package apierrors

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Codes of the transports themselves: health, request bodies and routing. Names, HTTP
// statuses and gRPC codes are Dapr 1.14's (pkg/messages/predefined.go).
var (
	// OutboundHealthNotReady is GET /v1.0/healthz/outbound before the components load.
	OutboundHealthNotReady = Code{"ERR_OUTBOUND_HEALTH_NOT_READY", http.StatusInternalServerError, codes.Internal}
	// HealthAppIDNotMatch is GET /v1.0/healthz?appid=X on a sidecar whose app id is not X
	// (name resolvers use it to detect that an address now belongs to another app).
	HealthAppIDNotMatch = Code{"ERR_HEALTH_APPID_NOT_MATCH", http.StatusInternalServerError, codes.Internal}
	// BodyRead is a request body that could not be read (other than for its size).
	BodyRead = Code{"ERR_BODY_READ", http.StatusBadRequest, codes.InvalidArgument}
	// DirectInvoke is service invocation's code. Dapr's HTTP API also answers every
	// request that matches no route with it (404), because service invocation through
	// the dapr-app-id header is its fallback route.
	DirectInvoke = Code{"ERR_DIRECT_INVOKE", http.StatusInternalServerError, codes.Internal}
)
