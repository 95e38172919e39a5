// Package invoke is the service invocation building block: it decides where a call
// goes (the app's own app, another app's sidecar, an HTTPEndpoint or a URL), carries
// the caller's identity and the trace context, enforces the access control policy on
// the receiving side, and streams bodies both ways. The transports (HTTP, gRPC, the
// internal sidecar-to-sidecar service) only decode and encode.
package invoke

import (
	"context"
	"io"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
)

// Headers (and gRPC metadata keys) of service invocation.
const (
	// HeaderAppID names the target app: the dapr-app-id form of HTTP invocation and of
	// gRPC proxying.
	HeaderAppID = "dapr-app-id"
	// HeaderCallerAppID and HeaderCalleeAppID tell the target app who called it, as
	// Dapr does. The receiving sidecar sets them from the internal frame; a value the
	// calling app sent is removed.
	HeaderCallerAppID = "dapr-caller-app-id"
	HeaderCalleeAppID = "dapr-callee-app-id"
	// HeaderCallerNamespace and HeaderCallerTrustDomain carry the rest of the caller's
	// identity in proxied gRPC calls between sidecars (Outrigger's own keys).
	HeaderCallerNamespace   = "dapr-caller-namespace"
	HeaderCallerTrustDomain = "dapr-caller-trust-domain"
	// HeaderAPIToken is the sidecar's API token; it never travels past the sidecar.
	HeaderAPIToken = "dapr-api-token"
)

// identityHeaders are stripped from whatever an app sends: only sidecars set them.
var identityHeaders = []string{HeaderCallerAppID, HeaderCalleeAppID, HeaderCallerNamespace, HeaderCallerTrustDomain}

// Request is an app's call to invoke a method.
type Request struct {
	// Target is what the app named: an app id, "appID.namespace", the name of an
	// HTTPEndpoint resource, or a full http(s):// URL.
	Target string
	// Verb is the HTTP method; empty for a gRPC InvokeService call without an HTTP
	// extension.
	Verb string
	// Method is the method path on the target, escaped, without a leading slash.
	Method   string
	RawQuery string
	// Header is taken over by Invoke, which changes it.
	Header http.Header
	// Body may be nil; it is streamed to the target.
	Body io.Reader
	// ContentLength is the body's length, or -1 when unknown.
	ContentLength int64
	// Trailer is nil for a body without trailers; otherwise it holds the announced
	// trailer names and gets the values by the time Body returns io.EOF, as the
	// Trailer of a client's http.Request does.
	Trailer http.Header
}

// Response is the target's answer; its Body streams and must be closed. Its Trailer
// holds the target's trailers once Body has returned io.EOF.
type Response = appchannel.Response

// Caller is the identity of a calling app, as its sidecar states it.
type Caller struct {
	AppID       string
	Namespace   string
	TrustDomain string
}

// Call is what travels from the caller's sidecar to the target's.
type Call struct {
	Caller          Caller
	TargetAppID     string
	TargetNamespace string
	Verb            string
	Method          string
	RawQuery        string
	// Header is taken over by Serve, which changes it.
	Header        http.Header
	Traceparent   string
	Tracestate    string
	Body          io.Reader
	ContentLength int64
	// Trailer is the body's trailers, as in Request.
	Trailer http.Header
}

// Remote reaches other sidecars: the client of the internal gRPC service.
type Remote interface {
	// Call sends call to the sidecar at addr and returns once the response header
	// arrives. A refusal by the remote sidecar is a gRPC status error.
	Call(ctx context.Context, addr string, call *Call) (*Response, error)
	// Conn is a connection to the sidecar at addr, which serves appID in namespace, for
	// proxied gRPC calls. (With mTLS the connection verifies that it is that app's.)
	Conn(addr, appID, namespace string) (grpc.ClientConnInterface, error)
}

// AppChannel reaches an HTTP app or service.
type AppChannel interface {
	Do(ctx context.Context, req *appchannel.Request) (*appchannel.Response, error)
}

// API is what the transports call.
type API interface {
	// Invoke serves an app's invocation of Target.
	Invoke(ctx context.Context, req *Request) (*Response, error)
	// Serve serves a call that another sidecar sent to this sidecar's app.
	Serve(ctx context.Context, call *Call) (*Response, error)
	// ProxyOutbound chooses where a gRPC call from the app, for a service other than
	// Dapr's, goes: the md's dapr-app-id names the target. It returns the connection
	// and the metadata to send.
	ProxyOutbound(ctx context.Context, fullMethod string, md metadata.MD) (grpc.ClientConnInterface, metadata.MD, error)
	// ProxyInbound accepts a proxied gRPC call from another sidecar for this app.
	ProxyInbound(ctx context.Context, fullMethod string, md metadata.MD) (grpc.ClientConnInterface, metadata.MD, error)
}
