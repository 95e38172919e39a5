package http

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
	"github.com/outrigger-dev/outrigger/sidecar/blocks/invoke"
)

const invokePrefix = apiV1 + "/invoke/"

// isInvokePath reports whether a request is for /v1.0/invoke/. It is routed before
// the ServeMux, which would redirect a path holding "//" (a target such as
// http://example.com) to a cleaned one.
func isInvokePath(r *http.Request) bool {
	return strings.HasPrefix(r.URL.EscapedPath(), invokePrefix)
}

// invokeTarget finds the target and the method as Dapr does (findTargetIDAndMethod):
// the dapr-app-id header first (the whole path is then the method), then Basic auth
// with the user dapr-app-id, then /v1.0/invoke/<target>/method/<method>. The method
// keeps its escaping; the target is unescaped.
func invokeTarget(r *http.Request) (target, method string) {
	reqPath := r.URL.EscapedPath()
	if id := r.Header.Get(invoke.HeaderAppID); id != "" {
		return id, strings.TrimPrefix(path.Clean(reqPath), "/")
	}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Basic ") {
		if s, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic ")); err == nil {
			if user, id, ok := strings.Cut(string(s), ":"); ok && user == invoke.HeaderAppID && !strings.Contains(id, ":") {
				return id, strings.TrimPrefix(path.Clean(reqPath), "/")
			}
		}
	}
	rest, ok := strings.CutPrefix(reqPath, invokePrefix)
	if !ok {
		return "", ""
	}
	i := strings.Index(rest, "/method/")
	if i <= 0 {
		return "", ""
	}
	target, method = rest[:i], rest[i+len("/method/"):]
	if t, err := url.QueryUnescape(target); err == nil && t != "" {
		target = t
	}
	return target, method
}

// hasInvokeTarget reports whether a request that matched no route names an app, which
// makes it an invocation (Dapr's fallback route).
func hasInvokeTarget(r *http.Request) bool {
	t, _ := invokeTarget(r)
	return t != ""
}

// invoke serves service invocation: the request and the answer stream through, with
// the target's status, headers and body.
func (h *handler) invoke(w http.ResponseWriter, r *http.Request) {
	// Whatever the target left unread is consumed (or the connection dropped) before
	// returning: with full duplex on, net/http would otherwise do it after it stopped
	// watching the connection, and break the next request on it.
	defer func() { _ = r.Body.Close() }()
	target, method := invokeTarget(r)
	if target == "" {
		writeError(w, apierrors.New(apierrors.DirectInvokeNoAppID, "failed getting app id either from the URL path or the header dapr-app-id"))
		return
	}
	if h.blocks.Invoke == nil {
		writeError(w, apierrors.New(apierrors.DirectInvoke, "invoke API is not ready"))
		return
	}
	req := &invoke.Request{
		Target:        target,
		Verb:          r.Method,
		Method:        method,
		RawQuery:      r.URL.RawQuery,
		Header:        r.Header,
		ContentLength: r.ContentLength,
	}
	body := &trackedBody{r: r.Body, want: r.ContentLength}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		req.Body = body
		if r.Trailer != nil || r.ContentLength < 0 {
			// The body may end with trailers: those announced, and with a chunked body
			// others too. net/http has them once the body has ended.
			req.Trailer = appchannel.MergeTrailer(make(http.Header, len(r.Trailer)), r.Trailer)
			body.from, body.trailer = r, req.Trailer
		}
	} else {
		req.ContentLength = 0
		body.done.Store(true)
	}
	resp, err := h.blocks.Invoke.Invoke(r.Context(), req)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			err = apierrors.New(apierrors.BodyTooLarge, "request body exceeds the maximum allowed size of %d bytes (--max-body-size)", tooLarge.Limit)
		}
		writeError(w, err)
		return
	}
	rc := http.NewResponseController(w)
	defer func() {
		// A caller that stalls its upload must not hold the call open: closing the
		// answer waits for the forwarding of the request body, so end that read first.
		if !body.done.Load() {
			_ = rc.SetReadDeadline(time.Now())
		}
		_ = resp.Body.Close()
	}()
	dst := w.Header()
	for k, v := range resp.Header {
		dst[k] = v
	}
	// HTTP/1.0 has no trailers: a caller on it gets neither them nor their announcement.
	trailers := r.ProtoAtLeast(1, 1)
	var announced []string
	if trailers {
		announced = announceTrailers(dst, resp.Trailer)
	}
	if !body.done.Load() {
		// The target answers before it has the whole request: an echo that streams, or
		// an early answer that will never read the rest. Keep forwarding the request
		// while the answer is written (net/http would otherwise discard it), and close
		// the connection afterwards, since what is left unread cannot be told apart
		// from the caller's next request.
		_ = rc.EnableFullDuplex()
		dst.Set("Connection", "close")
	}
	w.WriteHeader(resp.Status)
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	wrote := false
	for {
		n, err := resp.Body.Read(*buf)
		if n > 0 {
			if _, wErr := w.Write((*buf)[:n]); wErr != nil {
				return // the caller went away
			}
			_ = rc.Flush()
			wrote = true
		}
		if errors.Is(err, io.EOF) {
			if trailers && setTrailers(dst, announced, resp.Trailer) && !wrote {
				// Trailers nobody announced go only after a chunked body: send the
				// header now, before net/http, seeing an empty body end, gives it a
				// Content-Length.
				_ = rc.Flush()
			}
			return
		}
		if err != nil {
			// The status is sent: cut the connection so that the caller does not take
			// a truncated body for a whole one (as net/http/httputil.ReverseProxy does).
			panic(http.ErrAbortHandler)
		}
	}
}

// announceTrailers declares in h the trailers that the target announced, and returns
// their names. The body then goes chunked, without its Content-Length, since HTTP/1.1
// sends trailers only after a chunked body.
func announceTrailers(h, trailer http.Header) []string {
	if len(trailer) == 0 {
		return nil
	}
	names := make([]string, 0, len(trailer))
	for k := range trailer {
		names = append(names, k)
	}
	slices.Sort(names)
	h["Trailer"] = []string{strings.Join(names, ", ")}
	delete(h, "Content-Length")
	return names
}

// setTrailers puts the target's trailers in h once the body is written: an announced
// one under its own name, any other under http.TrailerPrefix, which net/http sends
// without an announcement. It reports whether there are such others. An announced
// trailer that did not come is removed from h, where a header of the same name would
// otherwise be sent again as the trailer.
func setTrailers(h http.Header, announced []string, trailer http.Header) bool {
	for _, k := range announced {
		if v := trailer[k]; len(v) > 0 {
			h[k] = v
		} else {
			delete(h, k)
		}
	}
	others := false
	for k, v := range trailer {
		if len(v) > 0 && !slices.Contains(announced, k) {
			h[http.TrailerPrefix+k] = v
			others = true
		}
	}
	return others
}

// trackedBody records whether the request body was read to its end, and then copies
// the request's trailers into trailer.
type trackedBody struct {
	r    io.Reader
	want int64 // Content-Length, or -1
	read int64
	done atomic.Bool
	// from, when set, is the request whose trailers go into trailer at the end.
	from    *http.Request
	trailer http.Header
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += int64(n)
	if errors.Is(err, io.EOF) && b.from != nil {
		appchannel.MergeTrailer(b.trailer, b.from.Trailer)
	}
	if errors.Is(err, io.EOF) || (b.want >= 0 && b.read >= b.want) {
		b.done.Store(true)
	}
	return n, err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
