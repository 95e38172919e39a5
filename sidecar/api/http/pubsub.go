package http

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	pubsubblock "github.com/outrigger-dev/outrigger/sidecar/blocks/pubsub"
)

func (h *handler) routePubsub(mux *http.ServeMux) {
	mux.HandleFunc("POST "+apiV1+"/publish/{pubsub}/{topic...}", h.publish)
	mux.HandleFunc("POST "+apiV1Alpha+"/publish/bulk/{pubsub}/{topic...}", h.bulkPublish)
}

func (h *handler) pubsub() (pubsubblock.API, error) {
	if h.blocks.Pubsub == nil {
		return nil, apierrors.New(apierrors.PubsubNotConfigured, "pubsub is not configured")
	}
	return h.blocks.Pubsub, nil
}

func (h *handler) publish(w http.ResponseWriter, r *http.Request) {
	ps, err := h.pubsub()
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	err = ps.Publish(r.Context(), &pubsubblock.PublishRequest{
		PubsubName:  pathParam(r, "pubsub"),
		Topic:       pathParam(r, "topic"),
		Data:        body,
		ContentType: r.Header.Get("Content-Type"),
		Metadata:    queryMetadata(r.URL.Query()),
		TraceParent: r.Header.Get("traceparent"),
		TraceState:  r.Header.Get("tracestate"),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeEmpty(w)
}

// bulkPublishEntry is one element of a bulk publish body, Dapr's.
type bulkPublishEntry struct {
	EntryID     string            `json:"entryId"`
	Event       json.RawMessage   `json:"event"`
	ContentType string            `json:"contentType"`
	Metadata    map[string]string `json:"metadata"`
}

func (h *handler) bulkPublish(w http.ResponseWriter, r *http.Request) {
	ps, err := h.pubsub()
	if err != nil {
		writeError(w, err)
		return
	}
	pubsubName, topic := pathParam(r, "pubsub"), pathParam(r, "topic")
	var in []bulkPublishEntry
	if err := decodeJSON(r, &in); err != nil {
		var ae *apierrors.Error
		if errors.As(err, &ae) && ae.Code.Name == apierrors.MalformedRequest.Name {
			err = apierrors.Wrap(apierrors.PubsubEventsSer, errors.Unwrap(err), "error when unmarshaling the request for topic %s pubsub %s", topic, pubsubName)
		}
		writeError(w, err)
		return
	}
	req := &pubsubblock.BulkPublishRequest{
		PubsubName: pubsubName, Topic: topic, Metadata: queryMetadata(r.URL.Query()),
		TraceParent: r.Header.Get("traceparent"), TraceState: r.Header.Get("tracestate"),
	}
	for i, e := range in {
		data, err := eventBytes(e.Event, e.ContentType)
		if err != nil {
			writeError(w, apierrors.Wrap(apierrors.PubsubEventsSer, err, "error when marshalling cloud event envelope for topic %s pubsub %s: entry %d (%q)", topic, pubsubName, i, e.EntryID))
			return
		}
		req.Entries = append(req.Entries, pubsubblock.BulkPublishEntry{EntryID: e.EntryID, Event: data, ContentType: e.ContentType, Metadata: e.Metadata})
	}
	resp, err := ps.BulkPublish(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(resp.FailedEntries) == 0 {
		writeEmpty(w)
		return
	}
	type failed struct {
		EntryID string `json:"entryId"`
		Error   string `json:"error,omitempty"`
	}
	out := struct {
		FailedEntries []failed `json:"failedEntries"`
		ErrorCode     string   `json:"errorCode"`
	}{ErrorCode: apierrors.PubsubPublishMessage.Name}
	for _, f := range resp.FailedEntries {
		out.FailedEntries = append(out.FailedEntries, failed{EntryID: f.EntryID, Error: f.Error})
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(apierrors.PubsubPublishMessage.HTTPStatus)
	_, _ = w.Write(b)
}

// eventBytes turns a bulk entry's event into the bytes to publish, as Dapr does: a
// binary content type carries base64 text, a text type a string, a JSON or CloudEvents
// type any JSON value.
func eventBytes(raw json.RawMessage, contentType string) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	mt = strings.ToLower(mt)
	switch {
	case mt == "application/octet-stream":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("content type %s needs the event as a base64 string", contentType)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("unable to decode base64 %s data: %w", contentType, err)
		}
		return b, nil
	case strings.HasPrefix(mt, "text/"):
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("content type %s needs the event as a JSON string", contentType)
		}
		return []byte(s), nil
	case mt == "application/json" || mt == "application/cloudevents+json" || strings.HasSuffix(mt, "+json"):
		if len(raw) == 0 {
			return nil, errors.New("the event is missing")
		}
		return raw, nil
	}
	return nil, fmt.Errorf("content type %q is not supported for bulk publish (use application/json, application/cloudevents+json, text/* or application/octet-stream)", contentType)
}
