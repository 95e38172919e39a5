// Package appchannel is the sidecar's outbound HTTP client: to its own app on
// --app-channel-address:--app-port (service invocation, and later pub/sub deliveries
// and bindings), and to the HTTP services that HTTPEndpoint resources or full URLs
// name. Bodies stream both ways; hop-by-hop headers are dropped both ways, and
// trailers pass both ways.
package appchannel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// APITokenHeader carries APP_API_TOKEN to the app, so that it can tell its sidecar's
// calls from anyone else's.
const APITokenHeader = "dapr-api-token"

// Protocols of the app channel that this package serves; grpc and grpcs apps are
// reached through gRPC proxying instead.
const (
	ProtocolHTTP  = "http"
	ProtocolHTTPS = "https"
	ProtocolH2C   = "h2c"
)

// ErrAppUnhealthy is returned while the app health check reports the app unhealthy.
// The message is Dapr's (messages.ErrAppUnhealthy).
var ErrAppUnhealthy = errors.New("app is not in a healthy state")

// Request is one HTTP call through the channel.
type Request struct {
	Method string
	// Path is appended to the channel's base URL, in its escaped form ("orders/a%2Fb");
	// a leading slash is optional.
	Path     string
	RawQuery string
	// Header is taken over by Do, which changes it.
	Header http.Header
	// Body may be nil. It is read as the call goes, never buffered whole.
	Body io.Reader
	// ContentLength is the body's length, or -1 when unknown.
	ContentLength int64
	// Trailer, as in a client's http.Request: nil sends no trailers; otherwise its
	// keys are announced before the body and its values are sent after it, so it must
	// hold them by the time Body returns io.EOF (whoever fills it does so from Body's
	// Read). Announced trailers make the body chunked, since HTTP/1.1 sends trailers
	// only after a chunked body.
	Trailer http.Header
}

// Response is the answer to a Request. Body is never nil and must be closed.
type Response struct {
	Status int
	Header http.Header
	Body   io.ReadCloser
	// ContentLength is the body's length, or -1 when unknown.
	ContentLength int64
	// Trailer, as in http.Response: before the body ends it holds the announced
	// trailer names with nil values (or is nil); once Body has returned io.EOF it holds
	// the trailers received. Read it only after that, never during a Read.
	Trailer http.Header
}

// Options configure a Channel.
type Options struct {
	// BaseURL is where requests go: http://127.0.0.1:8080 for an app, an HTTPEndpoint's
	// baseUrl, or the scheme and host of a URL target.
	BaseURL string
	// Protocol is http, https or h2c (HTTP/2 without TLS); with Client unset it picks
	// the transport. Empty follows BaseURL's scheme.
	Protocol string
	// Token is sent as dapr-api-token on every request (APP_API_TOKEN); empty sends
	// none and removes any the caller set.
	Token string
	// MaxConcurrency bounds the calls in flight (--app-max-concurrency); a call waits
	// for a slot until its context ends. Zero or less is unlimited.
	MaxConcurrency int
	// Client sends the requests; nil builds one for Protocol.
	Client *http.Client
	// Healthy, when set, gates every call: while it returns false, calls fail at once
	// with ErrAppUnhealthy (the app health check).
	Healthy func() bool
}

// Channel sends requests to one base URL.
type Channel struct {
	base    *url.URL
	client  *http.Client
	token   string
	sem     chan struct{}
	healthy func() bool
}

// New returns a Channel for opts.
func New(opts Options) (*Channel, error) {
	u, err := url.Parse(strings.TrimSuffix(opts.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("app channel: base URL %q: %w", opts.BaseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("app channel: base URL %q: the scheme must be http or https", opts.BaseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("app channel: base URL %q has no host", opts.BaseURL)
	}
	c := &Channel{base: u, client: opts.Client, token: opts.Token, healthy: opts.Healthy}
	if c.client == nil {
		proto := opts.Protocol
		if proto == "" {
			proto = u.Scheme
		}
		c.client = NewClient(proto)
	}
	if opts.MaxConcurrency > 0 {
		c.sem = make(chan struct{}, opts.MaxConcurrency)
	}
	return c, nil
}

// BaseURL returns for app protocol, address and port the base URL of the app.
func BaseURL(protocol, address string, port int) string {
	scheme := "http"
	if protocol == ProtocolHTTPS {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(address, strconv.Itoa(port))
}

// NewClient returns an HTTP client for the protocol: keep-alive connections, no
// transparent compression (the app's bytes pass as they are), no redirects followed
// (the caller sees the app's redirect), and for https no certificate verification, as
// Dapr's app channel does: the app is local and its certificate is usually
// self-signed.
func NewClient(protocol string) *http.Client {
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
	}
	switch protocol {
	case ProtocolHTTPS:
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see above
		t.ForceAttemptHTTP2 = true
	case ProtocolH2C:
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		t.Protocols = p
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Do sends req and returns once the response headers arrive; the body streams.
func (c *Channel) Do(ctx context.Context, req *Request) (*Response, error) {
	if c.healthy != nil && !c.healthy() {
		return nil, ErrAppUnhealthy
	}
	u := *c.base
	p := req.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	rawPath := strings.TrimSuffix(c.base.EscapedPath(), "/") + p
	unescaped, err := url.PathUnescape(rawPath)
	if err != nil {
		return nil, fmt.Errorf("invalid method path %q: %w", req.Path, err)
	}
	u.Path, u.RawPath = unescaped, rawPath
	u.RawQuery = req.RawQuery

	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader = http.NoBody
	var guard *guardedBody
	if req.Body != nil && req.ContentLength != 0 {
		// The caller owns the body (often a server's request body, which must not be
		// read once its handler returns), but the transport may go on reading it after
		// the response arrives: the guard stops that when the call ends.
		guard = &guardedBody{r: req.Body}
		body = guard
	}
	hr, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	hr.URL = &u
	if req.Header == nil {
		req.Header = http.Header{}
	}
	StripHopByHop(req.Header)
	hr.Header = req.Header
	if req.ContentLength > 0 {
		hr.ContentLength = req.ContentLength
	}
	hr.Header.Del("Content-Length")
	if req.Trailer != nil && body != http.NoBody {
		hr.Trailer = req.Trailer
		if len(req.Trailer) > 0 {
			hr.ContentLength = -1
		}
	}
	if c.token != "" {
		hr.Header.Set(APITokenHeader, c.token)
	} else {
		hr.Header.Del(APITokenHeader)
	}
	if c.sem != nil {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp, err := c.client.Do(hr)
	if err != nil {
		guard.stop()
		c.release()
		return nil, err
	}
	StripHopByHop(resp.Header)
	out := &Response{
		Status:        resp.StatusCode,
		Header:        resp.Header,
		ContentLength: resp.ContentLength,
		Trailer:       ValidTrailer(resp.Trailer),
	}
	out.Body = &releasingBody{ReadCloser: resp.Body, from: resp, to: out, release: func() {
		guard.stop()
		c.release()
	}}
	if resp.ContentLength >= 0 {
		out.Header.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	} else {
		out.Header.Del("Content-Length")
	}
	return out, nil
}

func (c *Channel) release() {
	if c.sem != nil {
		<-c.sem
	}
}

// guardedBody passes reads through until stop, which waits for a read in progress.
type guardedBody struct {
	mu   sync.Mutex
	r    io.Reader
	done bool
}

var errCallEnded = errors.New("the call has ended")

func (g *guardedBody) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return 0, errCallEnded
	}
	return g.r.Read(p)
}

func (g *guardedBody) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
}

// releasingBody frees the concurrency slot once, when the body is closed, and hands
// the trailers on when the body ends (net/http may only then make the map).
type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
	from    *http.Response
	to      *Response
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.to.Trailer = ValidTrailer(b.from.Trailer)
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// hopByHop are the headers of one connection (RFC 9110 section 7.6.1), which a proxy
// must not forward; every Proxy-* header goes too. Trailer is end-to-end, but it is
// dropped with them: the announcement is made again from the trailers that are
// actually carried (the keys of Request.Trailer and Response.Trailer).
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// notTrailers are the fields that must not be sent as trailers (RFC 9110 section
// 6.5.1: framing, routing, authentication, request modifiers, content handling), the
// list net/http's own httpguts.ValidTrailerHeader holds.
var notTrailers = map[string]bool{}

func init() {
	for _, k := range []string{"Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length",
		"Content-Range", "Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards", "Pragma", "Proxy-Authenticate",
		"Proxy-Authorization", "Proxy-Connection", "Range", "Realm", "Te", "Trailer", "Transfer-Encoding",
		"Www-Authenticate"} {
		notTrailers[k] = true
	}
}

// ValidTrailer returns t without the fields that may not be trailers, t itself when it
// has none (the usual case, which copies nothing). A nil or empty t stays as it is.
func ValidTrailer(t http.Header) http.Header {
	for k := range t {
		if notTrailers[http.CanonicalHeaderKey(k)] {
			return MergeTrailer(nil, t)
		}
	}
	return t
}

// MergeTrailer sets in dst the fields of src that may be trailers (replacing the
// values of a name present in both), making dst when it is nil and there is
// something to set, and returns it.
func MergeTrailer(dst, src http.Header) http.Header {
	for k, v := range src {
		k = http.CanonicalHeaderKey(k)
		if notTrailers[k] {
			continue
		}
		if dst == nil {
			dst = make(http.Header, len(src))
		}
		dst[k] = v
	}
	return dst
}

// CleanHeader returns a copy of h without hop-by-hop headers, including those that
// its Connection header names. The copy shares no slice that an append could write
// through to h.
func CleanHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		out[k] = v[:len(v):len(v)]
	}
	StripHopByHop(out)
	return out
}

// StripHopByHop removes the hop-by-hop headers from h itself.
func StripHopByHop(h http.Header) {
	for _, c := range h["Connection"] {
		for _, name := range strings.Split(c, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
	for k := range h {
		if strings.HasPrefix(k, "Proxy-") {
			delete(h, k)
		}
	}
}
