package http

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	stateblock "github.com/outrigger-dev/outrigger/sidecar/blocks/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

const (
	metadataPrefix   = "metadata."
	paramConsistency = "consistency"
	paramConcurrency = "concurrency"
)

// handler holds what the routes call.
type handler struct {
	rt     api.Runtime
	blocks api.Blocks
}

func (h *handler) routeState(mux *http.ServeMux) {
	const s = apiV1 + "/state/{store}"
	mux.HandleFunc("GET "+s+"/{key}", h.getState)
	mux.HandleFunc("DELETE "+s+"/{key}", h.deleteState)
	// Dapr routes a trailing-slash path to the store route, where GET and DELETE do not
	// exist, and answers 404 ERR_DIRECT_INVOKE. Outrigger passes the empty key to the
	// block instead, so that the app learns its key is empty.
	mux.HandleFunc("GET "+s+"/{$}", h.getState)
	mux.HandleFunc("DELETE "+s+"/{$}", h.deleteState)
	for _, m := range []string{http.MethodPost, http.MethodPut} {
		mux.HandleFunc(m+" "+s, h.saveState)
		mux.HandleFunc(m+" "+s+"/bulk", h.bulkGetState)
		mux.HandleFunc(m+" "+s+"/transaction", h.transactState)
		mux.HandleFunc(m+" "+apiV1Alpha+"/state/{store}/query", h.queryState)
	}
}

// saveItem is one element of POST /v1.0/state/{store}, and the request of a
// transaction's operation: Dapr's state.SetRequest / DeleteRequest JSON.
type saveItem struct {
	Key      string            `json:"key"`
	Value    json.RawMessage   `json:"value"`
	ETag     *string           `json:"etag"`
	Metadata map[string]string `json:"metadata"`
	Options  *struct {
		Concurrency string `json:"concurrency"`
		Consistency string `json:"consistency"`
	} `json:"options"`
}

func (it *saveItem) options() state.Options {
	if it.Options == nil {
		return state.Options{}
	}
	return state.Options{Concurrency: it.Options.Concurrency, Consistency: it.Options.Consistency}
}

func (it *saveItem) saveRequest(query map[string]string) *stateblock.SaveRequest {
	return &stateblock.SaveRequest{
		Key:      it.Key,
		Value:    storedValue(it.Value),
		ETag:     it.ETag,
		Options:  it.options(),
		Metadata: mergeMetadata(it.Metadata, query),
	}
}

func (it *saveItem) deleteRequest(query map[string]string) *stateblock.DeleteRequest {
	return &stateblock.DeleteRequest{
		Key:      it.Key,
		ETag:     it.ETag,
		Options:  it.options(),
		Metadata: mergeMetadata(it.Metadata, query),
	}
}

// storedValue is what the store keeps for a JSON value: its JSON text. Dapr decodes the
// value into an interface{} and the store re-encodes it with json.Marshal, so a string
// is stored with its quotes and GET returns it quoted; a missing value is stored as
// null. That round trip also sorts object keys, escapes <, > and & and rounds numbers
// to float64; Outrigger keeps the app's JSON as sent, only without insignificant
// whitespace, as the round trip would leave it.
func storedValue(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return []byte("null")
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		// Unreachable: the decoder has validated raw.
		return raw
	}
	return buf.Bytes()
}

func (h *handler) getState(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	item, err := h.blocks.State.Get(r.Context(), pathParam(r, "store"), stateblock.GetRequest{
		Key:         pathParam(r, "key"),
		Consistency: q.Get(paramConsistency),
		Metadata:    queryMetadata(q),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	if item == nil || item.Value == nil {
		writeEmpty(w)
		return
	}
	hdr := w.Header()
	if item.ETag != nil {
		hdr.Set("ETag", *item.ETag)
	}
	for k, v := range item.Metadata {
		hdr.Set(metadataPrefix+k, v)
	}
	// Dapr always answers application/json here, whatever the value is.
	writeJSON(w, item.Value)
}

func (h *handler) deleteState(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := stateblock.DeleteRequest{
		Key:      pathParam(r, "key"),
		Options:  state.Options{Concurrency: q.Get(paramConcurrency), Consistency: q.Get(paramConsistency)},
		Metadata: queryMetadata(q),
	}
	// A present If-Match header is an ETag even when empty, as in Dapr (extractEtag).
	if v, ok := r.Header["If-Match"]; ok && len(v) > 0 {
		etag := v[0]
		req.ETag = &etag
	}
	if err := h.blocks.State.Delete(r.Context(), pathParam(r, "store"), req); err != nil {
		writeError(w, err)
		return
	}
	writeEmpty(w)
}

func (h *handler) saveState(w http.ResponseWriter, r *http.Request) {
	var items []saveItem
	if err := decodeJSON(r, &items); err != nil {
		writeError(w, err)
		return
	}
	query := queryMetadata(r.URL.Query())
	reqs := make([]stateblock.SaveRequest, len(items))
	for i := range items {
		reqs[i] = *items[i].saveRequest(query)
	}
	if err := h.blocks.State.Save(r.Context(), pathParam(r, "store"), reqs); err != nil {
		writeError(w, err)
		return
	}
	writeEmpty(w)
}

type bulkGetBody struct {
	Keys        []string          `json:"keys"`
	Parallelism int               `json:"parallelism"`
	Metadata    map[string]string `json:"metadata"`
}

// bulkGetItem is Dapr's BulkGetResponse (pkg/api/http/responses.go).
type bulkGetItem struct {
	Key      string            `json:"key"`
	Data     json.RawMessage   `json:"data,omitempty"`
	ETag     *string           `json:"etag,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Error    string            `json:"error,omitempty"`
}

func (h *handler) bulkGetState(w http.ResponseWriter, r *http.Request) {
	var body bulkGetBody
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, err)
		return
	}
	items, err := h.blocks.State.BulkGet(r.Context(), pathParam(r, "store"), stateblock.BulkGetRequest{
		Keys:        body.Keys,
		Parallelism: body.Parallelism,
		Metadata:    mergeMetadata(body.Metadata, queryMetadata(r.URL.Query())),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]bulkGetItem, len(items))
	for i, it := range items {
		out[i] = bulkGetItem{Key: it.Key, Error: it.Error}
		if it.Error == "" {
			out[i].Data = jsonData(it.Value)
			out[i].ETag = it.ETag
			out[i].Metadata = it.Metadata
		}
	}
	writeValue(w, out)
}

// jsonData embeds a stored value in a JSON response as Dapr does (json.RawMessage).
// A value saved through gRPC may not be JSON; Dapr then fails to encode the whole
// response, Outrigger sends such a value as a JSON string (UTF-8 text) or, for binary
// data, as the base64 string encoding/json gives a []byte.
func jsonData(v []byte) json.RawMessage {
	if v == nil {
		return nil
	}
	if json.Valid(v) {
		return v
	}
	var enc any = v
	if utf8.Valid(v) {
		enc = string(v)
	}
	b, _ := json.Marshal(enc)
	return b
}

type transactionBody struct {
	Operations []struct {
		Operation string          `json:"operation"`
		Request   json.RawMessage `json:"request"`
	} `json:"operations"`
	Metadata map[string]string `json:"metadata"`
}

func (h *handler) transactState(w http.ResponseWriter, r *http.Request) {
	var body transactionBody
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, err)
		return
	}
	req := stateblock.TransactionRequest{
		Operations: make([]stateblock.TransactionOperation, len(body.Operations)),
		Metadata:   mergeMetadata(body.Metadata, queryMetadata(r.URL.Query())),
	}
	for i, op := range body.Operations {
		var it saveItem
		if len(op.Request) > 0 {
			if err := json.Unmarshal(op.Request, &it); err != nil {
				writeError(w, apierrors.Wrap(apierrors.MalformedRequest, err, "failed deserializing HTTP body: operations[%d].request", i))
				return
			}
		}
		req.Operations[i].Operation = op.Operation
		switch op.Operation {
		case "upsert":
			req.Operations[i].Save = it.saveRequest(nil)
		case "delete":
			req.Operations[i].Delete = it.deleteRequest(nil)
		default:
			// Left to the block, which names the operation in ERR_NOT_SUPPORTED_STATE_OPERATION
			// after its store checks, in Dapr's order.
		}
	}
	if err := h.blocks.State.Transact(r.Context(), pathParam(r, "store"), req); err != nil {
		writeError(w, err)
		return
	}
	writeEmpty(w)
}

// queryResponse is Dapr's QueryResponse (pkg/api/http/responses.go).
type queryResponse struct {
	Results  []queryItem       `json:"results"`
	Token    string            `json:"token,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type queryItem struct {
	Key   string          `json:"key"`
	Data  json.RawMessage `json:"data"`
	ETag  *string         `json:"etag,omitempty"`
	Error string          `json:"error,omitempty"`
}

func (h *handler) queryState(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := h.blocks.State.Query(r.Context(), pathParam(r, "store"), stateblock.QueryRequest{
		Query:    body,
		Metadata: queryMetadata(r.URL.Query()),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	// Dapr answers 204 when nothing matched (UniversalHTTPHandler with a nil response).
	if res == nil || len(res.Results) == 0 {
		writeEmpty(w)
		return
	}
	out := queryResponse{Results: make([]queryItem, len(res.Results)), Token: res.Token, Metadata: res.Metadata}
	for i, it := range res.Results {
		out.Results[i] = queryItem{Key: it.Key, Data: jsonData(it.Data), ETag: it.ETag, Error: it.Error}
		if out.Results[i].Data == nil {
			out.Results[i].Data = json.RawMessage("null")
		}
	}
	writeValue(w, out)
}

// queryMetadata returns the metadata.* query parameters, without the prefix.
func queryMetadata(q url.Values) map[string]string {
	var md map[string]string
	for k, v := range q {
		if name, ok := strings.CutPrefix(k, metadataPrefix); ok && len(v) > 0 {
			if md == nil {
				md = make(map[string]string, len(q))
			}
			md[name] = v[0]
		}
	}
	return md
}

// mergeMetadata adds the query's metadata to a body's; the query wins, as in Dapr.
func mergeMetadata(body, query map[string]string) map[string]string {
	if len(query) == 0 {
		return body
	}
	out := make(map[string]string, len(body)+len(query))
	for k, v := range body {
		out[k] = v
	}
	for k, v := range query {
		out[k] = v
	}
	return out
}

// pathParam returns a path wildcard decoded as Dapr decodes it: url.QueryUnescape on
// the escaped segment, so that "+" is a space (odd for a path, but an app that sent
// "a+b" to Dapr stored the key "a b"). A segment that does not decode that way falls
// back to ServeMux's decoding.
func pathParam(r *http.Request, name string) string {
	v := r.PathValue(name)
	// Path is the decoded path: without a "+" in it there is none in any raw segment
	// either ("%2B" decodes to "+"), and both decodings agree.
	if r.Pattern == "" || !strings.Contains(r.URL.Path, "+") {
		return v
	}
	_, pattern, _ := strings.Cut(r.Pattern, " ")
	idx := segmentIndex(pattern, "{"+name+"}")
	if idx < 0 {
		return v
	}
	segs := strings.Split(r.URL.EscapedPath(), "/")
	if idx >= len(segs) || !strings.Contains(segs[idx], "+") {
		return v
	}
	if d, err := url.QueryUnescape(segs[idx]); err == nil {
		return d
	}
	return v
}

func segmentIndex(pattern, wildcard string) int {
	for i, s := range strings.Split(pattern, "/") {
		if s == wildcard {
			return i
		}
	}
	return -1
}
