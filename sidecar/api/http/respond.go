package http

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
)

const (
	headerContentType = "Content-Type"
	contentTypeJSON   = "application/json"
)

// errorBody is Dapr's HTTP error body.
type errorBody struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// writeError renders any error: an *apierrors.Error in its chain gives the code and
// status; anything else is ERR_INTERNAL.
func writeError(w http.ResponseWriter, err error) {
	e := apierrors.As(err)
	status := e.Code.HTTPStatus
	if status == 0 {
		status = http.StatusInternalServerError
	}
	b, mErr := json.Marshal(errorBody{ErrorCode: e.Code.Name, Message: e.Message})
	if mErr != nil {
		// Only reachable with a message that is not valid UTF-8 and a broken encoder;
		// keep the code.
		b = []byte(`{"errorCode":"` + e.Code.Name + `","message":""}`)
	}
	h := w.Header()
	h.Set(headerContentType, contentTypeJSON)
	h.Del("ETag")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeJSON sends 200 with an already-encoded JSON body.
func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set(headerContentType, contentTypeJSON)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// writeValue encodes v as JSON and sends it with 200.
func writeValue(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, apierrors.Wrap(apierrors.Internal, err, "encode response"))
		return
	}
	writeJSON(w, b)
}

func writeEmpty(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

// readBody reads the whole body; a body over the limit is 413 ERR_BODY_TOO_LARGE.
//
// Dapr 1.14 limits the body the same way (MaxBodySizeMiddleware) but its state routes
// then answer 400 with a text/plain "error reading request body"; Outrigger answers
// 413, the status for the case, with a coded body.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, apierrors.New(apierrors.BodyTooLarge,
				"request body exceeds the maximum allowed size of %d bytes (--max-body-size)", tooLarge.Limit)
		}
		return nil, apierrors.Wrap(apierrors.BodyRead, err, "failed to read request body")
	}
	return b, nil
}

// decodeJSON reads the body into v; bad JSON is 400 ERR_MALFORMED_REQUEST with Dapr's
// message prefix and the decoder's reason.
func decodeJSON(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return apierrors.Wrap(apierrors.MalformedRequest, err, "failed deserializing HTTP body")
	}
	return nil
}
