package invoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/apis/dapr/common"
	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
	"github.com/outrigger-dev/outrigger/sidecar/components/secretstores"
	"github.com/outrigger-dev/outrigger/sidecar/nameresolution"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// Endpoints looks HTTPEndpoint resources up by name, per call.
type Endpoints interface {
	HTTPEndpoint(name string) (*daprv1alpha1.HTTPEndpoint, bool)
}

// StaticEndpoints is a fixed set of HTTPEndpoints by name.
type StaticEndpoints map[string]*daprv1alpha1.HTTPEndpoint

func (s StaticEndpoints) HTTPEndpoint(name string) (*daprv1alpha1.HTTPEndpoint, bool) {
	e, ok := s[name]
	return e, ok
}

// SwappableEndpoints is a set of HTTPEndpoints that is replaced whole while calls read
// it: the resources changed while the sidecar runs. The zero value holds none.
type SwappableEndpoints struct {
	set atomic.Pointer[StaticEndpoints]
}

// Store replaces the set; calls that already looked an endpoint up keep it.
func (s *SwappableEndpoints) Store(e StaticEndpoints) { s.set.Store(&e) }

func (s *SwappableEndpoints) HTTPEndpoint(name string) (*daprv1alpha1.HTTPEndpoint, bool) {
	if e := s.set.Load(); e != nil {
		return e.HTTPEndpoint(name)
	}
	return nil, false
}

// Secrets looks secret stores up by name, to resolve HTTPEndpoint headers that are
// secretKeyRefs.
type Secrets interface {
	Acquire(name string) (secretstores.Store, func(), bool)
}

// Block is the service invocation block of one sidecar.
type Block struct {
	AppID       string
	Namespace   string
	TrustDomain string // of this app, for its calls; DefaultTrustDomain when empty

	// AppProtocol is the app's protocol (--app-protocol); it decides whether access
	// control checks HTTP verbs.
	AppProtocol string
	// App reaches the local HTTP app; nil when the app takes no HTTP calls.
	App AppChannel
	// AppGRPC reaches the local gRPC app, for proxied gRPC calls; nil unless the app
	// protocol is grpc or grpcs.
	AppGRPC grpc.ClientConnInterface
	// AppToken is APP_API_TOKEN, sent to the app as dapr-api-token on proxied gRPC
	// calls (App sends it on HTTP calls itself).
	AppToken string
	// HostAddress and HostName describe this sidecar's host in the X-Forwarded-For,
	// X-Forwarded-Host and Forwarded headers of the calls it sends, as Dapr adds them;
	// empty leaves each out.
	HostAddress string
	HostName    string

	Resolver nameresolution.Resolver
	Remote   Remote
	// Endpoints are the HTTPEndpoint resources; Secrets resolve their secret headers.
	Endpoints Endpoints
	Secrets   Secrets
	// External sends calls to HTTPEndpoints and URL targets; nil uses a default client.
	External *http.Client
	// tls holds the clients of HTTPEndpoints with clientTLS.
	tls tlsClients
	// ACL is enforced on calls this sidecar receives; nil allows every call.
	ACL    *ACL
	Runner resiliency.Runner
	// Getenv resolves envRef headers of HTTPEndpoints; nil uses os.Getenv.
	Getenv func(string) string

	// access, once SetAccessControl is called, replaces TrustDomain and ACL.
	access atomic.Pointer[accessControl]
}

type accessControl struct {
	trustDomain string
	acl         *ACL
}

// SetAccessControl replaces the trust domain and the access control policy while the
// block serves calls: the Configuration changed. A call already past its check is not
// checked again.
func (b *Block) SetAccessControl(trustDomain string, acl *ACL) {
	b.access.Store(&accessControl{trustDomain: trustDomain, acl: acl})
}

func (b *Block) acl() *ACL {
	if a := b.access.Load(); a != nil {
		return a.acl
	}
	return b.ACL
}

var _ API = (*Block)(nil)

func (b *Block) runner() resiliency.Runner {
	if b.Runner == nil {
		return resiliency.Direct{}
	}
	return b.Runner
}

func (b *Block) trustDomain() string {
	td := b.TrustDomain
	if a := b.access.Load(); a != nil {
		td = a.trustDomain
	}
	if td == "" {
		return DefaultTrustDomain
	}
	return td
}

func (b *Block) isHTTPApp() bool {
	return !appchannel.IsGRPC(b.AppProtocol)
}

// Invoke serves the app's call of req.Target. The response carries the traceparent of
// this sidecar's span, as Dapr's tracing middleware sets it.
func (b *Block) Invoke(ctx context.Context, req *Request) (*Response, error) {
	if req.Target == "" {
		return nil, apierrors.New(apierrors.DirectInvokeNoAppID, "failed getting app id either from the URL path or the header dapr-app-id")
	}
	span := childSpan(req.Header.Get(HeaderTraceparent))
	tracestate := req.Header.Get(HeaderTracestate)
	header := outgoingHeader(req.Header)
	setTrace(header, span.String(), tracestate)

	var resp *Response
	var err error
	if isURL(req.Target) {
		resp, err = b.invokeExternal(ctx, nil, req.Target, req.Target, req, header)
	} else if ep, ok := b.endpoint(req.Target); ok {
		resp, err = b.invokeEndpoint(ctx, ep, req, header)
	} else {
		var appID, ns string
		appID, ns, err = b.splitTarget(req.Target)
		if err == nil {
			if appID == b.AppID && ns == b.Namespace {
				// Dapr calls its own app through the app channel, without access control.
				resp, err = b.callApp(ctx, req.Verb, req.Method, req.RawQuery, header, req)
			} else {
				resp, err = b.invokeRemote(ctx, appID, ns, req, header, span, tracestate)
			}
		}
	}
	if err != nil {
		return nil, invokeError(req.Target, err)
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	resp.Header.Set(HeaderTraceparent, span.String())
	return resp, nil
}

// invokeError gives every failure Dapr's form: ERR_DIRECT_INVOKE with "failed to
// invoke, id: X, err: ...", except a denial by the target's access control.
func invokeError(target string, err error) error {
	var ae *apierrors.Error
	if errors.As(err, &ae) && ae.Code.Name == apierrors.DirectInvokeNoAppID.Name && ae.Code.HTTPStatus == apierrors.DirectInvokeNoAppID.HTTPStatus {
		return ae
	}
	code := apierrors.DirectInvoke
	cause := err
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		if st.Code() == codes.PermissionDenied {
			code = apierrors.InvokePermissionDenied
		}
		cause = errors.New(st.Message())
	} else if errors.As(err, &ae) {
		if ae.Code.Name == apierrors.InvokePermissionDenied.Name {
			code = apierrors.InvokePermissionDenied
		}
		cause = errors.New(ae.Message)
	}
	return &apierrors.Error{Code: code, Message: apierrors.DirectInvokeMessage(target, cause)}
}

func isURL(target string) bool {
	return strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://")
}

func (b *Block) endpoint(name string) (*daprv1alpha1.HTTPEndpoint, bool) {
	if b.Endpoints == nil {
		return nil, false
	}
	return b.Endpoints.HTTPEndpoint(name)
}

// splitTarget reads "appID" or "appID.namespace", as Dapr does.
func (b *Block) splitTarget(target string) (string, string, error) {
	parts := strings.Split(target, ".")
	switch {
	case len(parts) == 1:
		return target, b.Namespace, nil
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], parts[1], nil
	}
	return "", "", fmt.Errorf("invalid app id %s", target)
}

// outgoingHeader removes from h what only sidecars may set and what must not leave
// this sidecar, and returns it.
func outgoingHeader(h http.Header) http.Header {
	if h == nil {
		return http.Header{}
	}
	appchannel.StripHopByHop(h)
	for _, k := range identityHeaders {
		h.Del(k)
	}
	h.Del(HeaderAPIToken)
	h.Del(HeaderTraceparent)
	h.Del(HeaderTracestate)
	return h
}

func setTrace(h http.Header, traceparent, tracestate string) {
	h.Set(HeaderTraceparent, traceparent)
	if tracestate != "" {
		h.Set(HeaderTracestate, tracestate)
	}
}

func (b *Block) invokeRemote(ctx context.Context, appID, ns string, req *Request, header http.Header, span spanContext, tracestate string) (*Response, error) {
	if b.Resolver == nil || b.Remote == nil {
		return nil, errors.New("invoke API is not ready")
	}
	addr, err := b.Resolver.Resolve(ctx, appID, ns)
	if err != nil {
		return nil, err
	}
	b.addForwarded(header)
	call := &Call{
		Caller:          Caller{AppID: b.AppID, Namespace: b.Namespace, TrustDomain: b.trustDomain()},
		TargetAppID:     appID,
		TargetNamespace: ns,
		Verb:            req.Verb,
		Method:          req.Method,
		RawQuery:        req.RawQuery,
		Header:          header,
		Traceparent:     span.String(),
		Tracestate:      tracestate,
		Body:            req.Body,
		ContentLength:   req.ContentLength,
		Trailer:         req.Trailer,
	}
	// The op's context must outlive Run, since the response body streams after it.
	resp, err := b.runCall(ctx, resiliency.Target{Kind: "app", Name: appID, Direction: resiliency.Outbound, Operation: "invoke"}, req.Body, req.ContentLength,
		func(ctx context.Context, body io.Reader) (*Response, error) {
			c := *call
			c.Body = body
			return b.Remote.Call(ctx, addr, &c)
		})
	if status.Code(err) == codes.Unavailable {
		// The sidecar is gone from that address: resolve afresh next time.
		if f, ok := b.Resolver.(nameresolution.Forgetter); ok {
			f.Forget(appID, ns)
		}
	}
	return resp, err
}

// addForwarded appends this host to the forwarding headers, as Dapr's direct messaging
// does for every call to another sidecar (it sends a Forwarded header even when both
// host values are unknown).
func (b *Block) addForwarded(h http.Header) {
	var fwd string
	if b.HostAddress != "" {
		h.Add("X-Forwarded-For", b.HostAddress)
		fwd += "for=" + b.HostAddress + ";by=" + b.HostAddress + ";"
	}
	if b.HostName != "" {
		h.Add("X-Forwarded-Host", b.HostName)
		fwd += "host=" + b.HostName
	}
	h.Add("Forwarded", fwd)
}

// Serve serves a call that another sidecar sent: it checks the target and the access
// control policy, then calls the app.
func (b *Block) Serve(ctx context.Context, call *Call) (*Response, error) {
	if call.TargetAppID != "" && call.TargetAppID != b.AppID {
		return nil, apierrors.New(apierrors.DirectInvoke, "this sidecar serves app %q, not %q", b.AppID, call.TargetAppID)
	}
	if ok, msg := b.acl().Check(call.Caller, call.Method, call.Verb, b.isHTTPApp()); !ok {
		return nil, apierrors.New(apierrors.InvokePermissionDenied, "%s", msg)
	}
	header := outgoingHeader(call.Header)
	if call.Caller.AppID != "" {
		header.Set(HeaderCallerAppID, call.Caller.AppID)
	}
	header.Set(HeaderCalleeAppID, b.AppID)
	setTrace(header, childSpan(call.Traceparent).String(), call.Tracestate)
	req := &Request{Body: call.Body, ContentLength: call.ContentLength, Trailer: call.Trailer}
	return b.callApp(ctx, call.Verb, call.Method, call.RawQuery, header, req)
}

// callApp sends a request to the local app, with Dapr's errors for an app that cannot
// be called.
func (b *Block) callApp(ctx context.Context, verb, method, query string, header http.Header, req *Request) (*Response, error) {
	if b.App == nil {
		if b.AppGRPC != nil {
			return b.callGRPCApp(ctx, verb, method, query, header, req)
		}
		return nil, apierrors.New(apierrors.DirectInvoke, "app channel is not initialized: the app has no --app-port")
	}
	if verb == "" {
		// Dapr's HTTP app channel refuses a call without an HTTP verb.
		return nil, apierrors.New(apierrors.DirectInvoke, "missing HTTP extension field")
	}
	resp, err := b.runCall(ctx, resiliency.Target{Kind: "app", Name: b.AppID, Direction: resiliency.Inbound, Operation: "invoke"}, req.Body, req.ContentLength,
		func(ctx context.Context, body io.Reader) (*Response, error) {
			return b.App.Do(ctx, &appchannel.Request{Method: verb, Path: method, RawQuery: query, Header: header,
				Body: body, ContentLength: req.ContentLength, Trailer: req.Trailer})
		})
	if err != nil {
		if errors.Is(err, appchannel.ErrAppUnhealthy) {
			return nil, apierrors.New(apierrors.DirectInvoke, "%s", err.Error())
		}
		return nil, apierrors.Wrap(apierrors.DirectInvoke, err, "error invoking app channel")
	}
	return resp, nil
}

func (b *Block) invokeEndpoint(ctx context.Context, ep *daprv1alpha1.HTTPEndpoint, req *Request, header http.Header) (*Response, error) {
	client, err := b.endpointClient(ctx, ep)
	if err != nil {
		return nil, fmt.Errorf("HTTPEndpoint %q: %w", ep.Name, err)
	}
	for _, h := range ep.Spec.Headers {
		v, err := b.headerValue(ctx, ep, h)
		if err != nil {
			return nil, fmt.Errorf("HTTPEndpoint %q: header %q: %w", ep.Name, h.Name, err)
		}
		header.Set(h.Name, v)
	}
	return b.invokeExternal(ctx, client, ep.Name, ep.Spec.BaseURL, req, header)
}

func (b *Block) invokeExternal(ctx context.Context, client *http.Client, name, baseURL string, req *Request, header http.Header) (*Response, error) {
	if client == nil {
		client = b.External
	}
	if client == nil {
		client = defaultExternal
	}
	ch, err := appchannel.New(appchannel.Options{BaseURL: baseURL, Client: client})
	if err != nil {
		return nil, err
	}
	return b.runCall(ctx, resiliency.Target{Kind: "endpoint", Name: name, Direction: resiliency.Outbound, Operation: "invoke"}, req.Body, req.ContentLength,
		func(ctx context.Context, body io.Reader) (*Response, error) {
			return ch.Do(ctx, &appchannel.Request{Method: req.Verb, Path: req.Method, RawQuery: req.RawQuery, Header: header,
				Body: body, ContentLength: req.ContentLength, Trailer: req.Trailer})
		})
}

var defaultExternal = appchannel.NewClient(appchannel.ProtocolHTTP)

func (b *Block) headerValue(ctx context.Context, ep *daprv1alpha1.HTTPEndpoint, nv common.NameValuePair) (string, error) {
	switch {
	case !nv.Value.IsZero():
		return nv.Value.String(), nil
	case nv.EnvRef != "":
		getenv := b.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		return getenv(nv.EnvRef), nil
	case nv.SecretKeyRef.Name != "":
		ref := nv.SecretKeyRef
		storeName := ep.Auth.SecretStore
		if storeName == "" {
			return "", fmt.Errorf("secretKeyRef %q needs auth.secretStore, the name of a secret store component", ref.Name)
		}
		if b.Secrets == nil {
			return "", fmt.Errorf("secretKeyRef %q: no secret stores are loaded", ref.Name)
		}
		store, release, ok := b.Secrets.Acquire(storeName)
		if !ok {
			return "", fmt.Errorf("secretKeyRef %q: secret store %q is not loaded", ref.Name, storeName)
		}
		ns := ep.Namespace
		if ns == "" {
			ns = b.Namespace
		}
		data, err := store.GetSecret(ctx, ref.Name, map[string]string{"namespace": ns})
		release()
		if err != nil {
			return "", fmt.Errorf("secretKeyRef %q in secret store %q: %w", ref.Name, storeName, err)
		}
		key := ref.Key
		if key == "" {
			key = ref.Name
		}
		v, ok := data[key]
		if !ok {
			return "", fmt.Errorf("secretKeyRef %q in secret store %q has no key %q", ref.Name, storeName, key)
		}
		return v, nil
	}
	return "", nil
}

// ProxyOutbound routes a gRPC call from the app to the app named by dapr-app-id: its
// own app directly, another app through that app's sidecar.
func (b *Block) ProxyOutbound(ctx context.Context, fullMethod string, md metadata.MD) (grpc.ClientConnInterface, metadata.MD, error) {
	target := first(md, HeaderAppID)
	if target == "" {
		return nil, nil, apierrors.New(apierrors.DirectInvokeNoAppID, "failed to proxy request: required metadata %s not found", HeaderAppID)
	}
	out := md.Copy()
	out.Delete(HeaderAPIToken)
	for _, k := range identityHeaders {
		out.Delete(k)
	}
	appID, ns, err := b.splitTarget(target)
	if err != nil {
		return nil, nil, invokeError(target, err)
	}
	span := childSpan(first(md, HeaderTraceparent))
	out.Set(HeaderTraceparent, span.String())
	if appID == b.AppID && ns == b.Namespace {
		conn, err := b.appGRPC()
		if err != nil {
			return nil, nil, invokeError(target, err)
		}
		b.setAppToken(out)
		return conn, out, nil
	}
	if b.Resolver == nil || b.Remote == nil {
		return nil, nil, invokeError(target, errors.New("invoke API is not ready"))
	}
	addr, err := b.Resolver.Resolve(ctx, appID, ns)
	if err != nil {
		return nil, nil, invokeError(target, err)
	}
	conn, err := b.Remote.Conn(addr, appID, ns)
	if err != nil {
		return nil, nil, invokeError(target, err)
	}
	// A proxied call's failure to connect surfaces in the stream, after this returns;
	// the resolver's cache then expires by itself.
	out.Set(HeaderCallerAppID, b.AppID)
	out.Set(HeaderCallerNamespace, b.Namespace)
	out.Set(HeaderCallerTrustDomain, b.trustDomain())
	out.Set(HeaderCalleeAppID, appID)
	return conn, out, nil
}

// ProxyInbound accepts a proxied gRPC call that another sidecar sent: the caller's
// identity comes from the metadata that sidecar set.
func (b *Block) ProxyInbound(ctx context.Context, fullMethod string, md metadata.MD) (grpc.ClientConnInterface, metadata.MD, error) {
	if target := first(md, HeaderAppID); target != "" {
		if appID, _, err := b.splitTarget(target); err != nil || appID != b.AppID {
			return nil, nil, apierrors.New(apierrors.DirectInvoke, "this sidecar serves app %q, not %q", b.AppID, target)
		}
	}
	caller := Caller{AppID: first(md, HeaderCallerAppID), Namespace: first(md, HeaderCallerNamespace), TrustDomain: first(md, HeaderCallerTrustDomain)}
	if ok, msg := b.acl().Check(caller, fullMethod, "", false); !ok {
		return nil, nil, apierrors.New(apierrors.InvokePermissionDenied, "%s", msg)
	}
	conn, err := b.appGRPC()
	if err != nil {
		return nil, nil, err
	}
	out := md.Copy()
	out.Delete(HeaderCallerNamespace)
	out.Delete(HeaderCallerTrustDomain)
	out.Set(HeaderTraceparent, childSpan(first(md, HeaderTraceparent)).String())
	b.setAppToken(out)
	return conn, out, nil
}

func (b *Block) appGRPC() (grpc.ClientConnInterface, error) {
	if b.AppGRPC == nil {
		return nil, apierrors.New(apierrors.DirectInvoke, "gRPC proxying needs an app with --app-protocol grpc; this app's protocol is %q", b.AppProtocol)
	}
	return b.AppGRPC, nil
}

func (b *Block) setAppToken(md metadata.MD) {
	if b.AppToken != "" {
		md.Set(HeaderAPIToken, b.AppToken)
	} else {
		md.Delete(HeaderAPIToken)
	}
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
