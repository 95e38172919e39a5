// Package http is the sidecar's Dapr-compatible HTTP API (Dapr v1.0 routes). It only
// decodes requests, calls a building block and encodes the answer; every error it
// returns is rendered from an *apierrors.Error as {"errorCode":"ERR_...","message":"..."}.
package http

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
)

// APITokenHeader carries the API token (DAPR_API_TOKEN) on every call.
const APITokenHeader = "dapr-api-token"

// DefaultPublicMaxBodySize bounds PUT /v1.0/metadata/{key} on the public port, which has
// no configured limit: Dapr's default --max-body-size (4 MiB).
const DefaultPublicMaxBodySize = 4 << 20

const (
	apiV1      = "/v1.0"
	apiV1Alpha = "/v1.0-alpha1"

	patternHealthz         = "GET " + apiV1 + "/healthz"
	patternHealthzOutbound = "GET " + apiV1 + "/healthz/outbound"
)

// New returns the handler of the sidecar's HTTP API port (3500).
func New(rt api.Runtime, blocks api.Blocks, opts api.Options, log logr.Logger) http.Handler {
	h := &handler{rt: rt, blocks: blocks}
	mux := http.NewServeMux()
	h.routeState(mux)
	h.routePubsub(mux)
	h.routeHealth(mux)
	h.routeMetadata(mux)
	mux.HandleFunc("POST "+apiV1+"/shutdown", h.shutdown)
	mux.Handle("/", fallback(mux, h.invoke))

	s := &server{mux: mux, invoke: h.invoke, maxBody: opts.MaxBodySize, log: log, logCalls: opts.EnableAPILogging}
	if opts.APIToken != "" {
		s.token = []byte(opts.APIToken)
	}
	return s
}

// ServePublic returns the handler of the public port (3501), which kubelet probes
// reach: health and metadata, with no API token, as Dapr serves them there
// (pkg/api/http/http.go: publicEndpoints = metadata + healthz). That includes
// PUT /v1.0/metadata/{key}, as in Dapr. Unknown routes get a plain 404, as from Dapr's
// public router, which has no fallback route.
func ServePublic(rt api.Runtime) http.Handler {
	h := &handler{rt: rt}
	mux := http.NewServeMux()
	h.routeHealth(mux)
	h.routeMetadata(mux)
	return &server{mux: mux, maxBody: DefaultPublicMaxBodySize}
}

// server applies what every route shares: the API token, the body limit and API
// logging.
type server struct {
	mux      *http.ServeMux
	invoke   http.HandlerFunc // nil on the public port
	token    []byte
	maxBody  int64
	log      logr.Logger
	logCalls bool
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.token != nil && !exemptFromToken(r) {
		got := r.Header.Get(APITokenHeader)
		if subtle.ConstantTimeCompare([]byte(got), s.token) != 1 {
			// Dapr 1.14 answers with a text/plain "invalid api token"; Outrigger keeps the
			// status and renders the error body every other API error has.
			writeError(w, apierrors.New(apierrors.Unauthorized, "invalid api token"))
			return
		}
	}
	// The token is for the sidecar alone; never pass it on (Dapr deletes it too).
	r.Header.Del(APITokenHeader)

	if s.maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
		// On a shallow copy: net/http keeps the request it passed in, and decides from
		// its body whether the connection can serve another request. Replacing that
		// body hides a half-read one, which full-duplex invocation can leave.
		limited := *r
		limited.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
		r = &limited
	}

	if !s.logCalls {
		s.route(w, r)
		return
	}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	s.route(sw, r)
	// ServeMux sets r.Pattern on the request it is given.
	if r.Pattern == patternHealthz || r.Pattern == patternHealthzOutbound {
		return
	}
	kv := []any{"method", r.Method, "path", templatePath(r), "status", sw.status(), "duration", time.Since(start)}
	if ua := r.UserAgent(); ua != "" {
		kv = append(kv, "userAgent", ua)
	}
	s.log.Info("HTTP API called", kv...)
}

// route sends /v1.0/invoke/ to service invocation and everything else to the mux.
func (s *server) route(w http.ResponseWriter, r *http.Request) {
	if s.invoke != nil && isInvokePath(r) {
		s.invoke(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// exemptFromToken: health checks are always allowed (Dapr's isRouteExcludedFromAPITokenAuth).
func exemptFromToken(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	p := strings.Trim(r.URL.Path, "/")
	return p == "v1.0/healthz" || p == "v1.0/healthz/outbound"
}

// templatePath is the route's path with its wildcards ({store}, {key}) left unfilled,
// so logs never carry keys. A request that matched no route logs its path as sent.
func templatePath(r *http.Request) string {
	if r.Pattern == "" || r.Pattern == "/" {
		return r.URL.EscapedPath()
	}
	if _, p, ok := strings.Cut(r.Pattern, " "); ok {
		return p
	}
	return r.Pattern
}

// fallback answers a request that matches no route. It first retries without a
// trailing slash (Dapr's StripSlashesMiddleware), then answers as Dapr does: its
// fallback route is service invocation, so a request that names an app in a
// dapr-app-id header (or Basic auth as dapr-app-id) invokes it with its path as the
// method, and any other (an unknown route, or a known one with another method) is a
// 404 ERR_DIRECT_INVOKE.
func fallback(mux *http.ServeMux, invoke http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if len(p) > 1 && strings.HasSuffix(p, "/") {
			r.URL.Path = strings.TrimSuffix(p, "/")
			if r.URL.RawPath != "" {
				r.URL.RawPath = strings.TrimSuffix(r.URL.RawPath, "/")
			}
			if _, pattern := mux.Handler(r); pattern != "/" && pattern != "" {
				mux.ServeHTTP(w, r)
				return
			}
			r.URL.Path = p
		}
		if hasInvokeTarget(r) {
			invoke(w, r)
			return
		}
		err := apierrors.New(apierrors.DirectInvoke.WithStatus(http.StatusNotFound, apierrors.DirectInvoke.GRPC),
			"no API route matches %s %s, and the request names no app to invoke (dapr-app-id header)", r.Method, r.URL.EscapedPath())
		writeError(w, err)
	})
}

// statusWriter records the status for API logging.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
