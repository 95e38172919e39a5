package apierrors

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Codes of the pub/sub building block, as Dapr 1.14 has them (pkg/api/errors/pubsub.go).
// Dapr's statuses are uneven (an empty name is 404, an unknown pub/sub 404 on HTTP but
// InvalidArgument on gRPC); they are kept so that clients that branch on them work.
var (
	PubsubEmpty           = Code{"ERR_PUBSUB_EMPTY", http.StatusNotFound, codes.InvalidArgument}
	PubsubNotFound        = Code{"ERR_PUBSUB_NOT_FOUND", http.StatusNotFound, codes.InvalidArgument}
	PubsubNotConfigured   = Code{"ERR_PUBSUB_NOT_CONFIGURED", http.StatusBadRequest, codes.FailedPrecondition}
	TopicNameEmpty        = Code{"ERR_TOPIC_NAME_EMPTY", http.StatusNotFound, codes.InvalidArgument}
	PubsubForbidden       = Code{"ERR_PUBSUB_FORBIDDEN", http.StatusForbidden, codes.PermissionDenied}
	PubsubPublishMessage  = Code{"ERR_PUBSUB_PUBLISH_MESSAGE", http.StatusInternalServerError, codes.Internal}
	PubsubRequestMetadata = Code{"ERR_PUBSUB_REQUEST_METADATA", http.StatusBadRequest, codes.InvalidArgument}
	// PubsubCloudEventsSer is a body that claims to be a CloudEvent and is not one.
	PubsubCloudEventsSer = Code{"ERR_PUBSUB_CLOUD_EVENTS_SER", http.StatusBadRequest, codes.InvalidArgument}
	PubsubEventsSer      = Code{"ERR_PUBSUB_EVENTS_SER", http.StatusBadRequest, codes.InvalidArgument}
)
