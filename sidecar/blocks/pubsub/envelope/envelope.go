// Package envelope builds the CloudEvents 1.0 envelope a published message travels in
// and reads it back on delivery, byte for byte as Dapr 1.14 does: the runtime's
// pkg/runtime/pubsub/cloudevents.go and pkg/api/{http,grpc} publish handlers, and
// components-contrib v1.14.0-rc.6 (the version Dapr 1.14.0 pins) pubsub/envelope.go,
// contenttype and metadata.
//
// It is pure: no I/O, and the clock and the id generator are fields of Env.
package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// CloudEvent attribute names, as Dapr writes and reads them.
const (
	FieldID              = "id"
	FieldSource          = "source"
	FieldType            = "type"
	FieldSpecVersion     = "specversion"
	FieldDataContentType = "datacontenttype"
	FieldData            = "data"
	FieldDataBase64      = "data_base64"
	FieldSubject         = "subject"
	FieldTime            = "time"
	FieldTopic           = "topic"
	FieldPubsubName      = "pubsubname"
	FieldTraceID         = "traceid"
	FieldTraceParent     = "traceparent"
	FieldTraceState      = "tracestate"
	FieldExpiration      = "expiration"
)

// Defaults Dapr fills in.
const (
	CloudEventsSpecVersion = "1.0"
	DefaultType            = "com.dapr.event.sent"
	DefaultSource          = "Dapr"
	DefaultDataContentType = "text/plain"
)

// Request metadata keys that Build reads.
const (
	MetadataRawPayload   = "rawPayload"
	MetadataTTL          = "ttl"
	MetadataTTLInSeconds = "ttlInSeconds"
)

var (
	// ErrMetadata marks request metadata that cannot be read (a rawPayload that is not a
	// boolean). Dapr answers ERR_PUBSUB_REQUEST_METADATA, HTTP 400, gRPC
	// InvalidArgument, "failed deserializing metadata. Error: ...".
	ErrMetadata = errors.New("invalid pub/sub request metadata")

	// ErrCloudEvent marks a body that was announced as a CloudEvent and is not one
	// (publish with application/cloudevents+json), or a delivered message that is not
	// JSON. Dapr answers a publish with ERR_PUBSUB_CLOUD_EVENTS_SER, "cannot create
	// cloudevent" (HTTP 500, gRPC InvalidArgument). A delivery goes to the dead-letter
	// topic when there is one, and is otherwise handed back to the component for
	// redelivery.
	ErrCloudEvent = errors.New("not a valid CloudEvent")

	// ErrData marks a delivered event whose data cannot be turned into the bytes of a
	// gRPC TopicEventRequest. Dapr counts it as a retriable failure.
	ErrData = errors.New("unexpected data type encountered in envelope")
)

// Env holds what Build and Parse need from the outside world. A nil field uses the real
// clock or a random (version 4) UUID.
type Env struct {
	Now   func() time.Time
	NewID func() string
}

func (e Env) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

func (e Env) newID() string {
	if e.NewID == nil {
		return uuid.NewString()
	}
	return e.NewID()
}

// Publish is one message an app publishes.
type Publish struct {
	// ID is the event id; Dapr's API has none of its own (only the cloudevent.id
	// metadata), so it is normally empty and a new id is generated.
	ID string
	// Source is the publishing app's id.
	Source     string
	Topic      string
	PubsubName string
	// ContentType is the request's Content-Type header (HTTP) or data_content_type
	// (gRPC), unmodified. Empty means text/plain, as in Dapr.
	ContentType string
	Data        []byte
	// TraceParent and TraceState are the W3C trace context of the publish, as Dapr
	// takes them from its span.
	TraceParent, TraceState string
	// Metadata is the request metadata (metadata.* query parameters or gRPC metadata
	// field): rawPayload, ttl / ttlInSeconds, and the cloudevent.* overrides.
	Metadata map[string]string
	// NativeTTL is true when the component enforces message TTL itself (Dapr's
	// FeatureMessageTTL); Dapr then leaves the expiration attribute out.
	NativeTTL bool
}

// Build returns the bytes to hand the broker and the content type to publish them with.
//
//   - metadata rawPayload=true: the body as is, with the request's content type.
//   - a body of content type application/cloudevents+json: the app's CloudEvent,
//     completed (see completeCloudEvent); cloudevent.* metadata is ignored, as in Dapr.
//   - anything else: a new CloudEvent around the body (see newCloudEvent).
//
// In the last two cases the ttl metadata adds an expiration attribute unless
// p.NativeTTL, and the content type is application/cloudevents+json (Dapr gives the
// component no content type on this path; ours need one to tell envelopes from raw
// payloads).
//
// Errors wrap ErrMetadata or ErrCloudEvent.
func (e Env) Build(p Publish) (data []byte, contentType string, err error) {
	raw, err := rawPayload(p.Metadata)
	if err != nil {
		return nil, "", err
	}
	if raw {
		return p.Data, p.ContentType, nil
	}
	var ce map[string]any
	if IsCloudEventContentType(p.ContentType) {
		ce, err = e.completeCloudEvent(p)
		if err != nil {
			return nil, "", err
		}
	} else {
		ce = e.newCloudEvent(p)
	}
	if !p.NativeTTL {
		if ttl, ok := messageTTL(p.Metadata); ok {
			// Dapr computes the expiry in UTC, unlike the time attribute.
			ce[FieldExpiration] = e.now().UTC().Add(ttl).Format(time.RFC3339)
		}
	}
	// encoding/json sorts the keys and escapes <, > and &, as Dapr's json.Marshal does.
	out, err := json.Marshal(ce)
	if err != nil {
		return nil, "", fmt.Errorf("%w: marshal envelope: %w", ErrCloudEvent, err)
	}
	return out, ContentTypeCloudEvent, nil
}

// newCloudEvent is Dapr's NewCloudEvent for a body that is not a CloudEvent.
func (e Env) newCloudEvent(p Publish) map[string]any {
	id, source, typ := p.ID, p.Source, ""
	traceID, traceState, traceParent := p.TraceParent, p.TraceState, ""
	// Dapr decodes these keys into its request struct with mapstructure, which lets an
	// override replace a value with an empty one; the defaults below then apply.
	for key, dst := range map[string]*string{
		"cloudevent.id":          &id,
		"cloudevent.source":      &source,
		"cloudevent.type":        &typ,
		"cloudevent.traceid":     &traceID,
		"cloudevent.tracestate":  &traceState,
		"cloudevent.traceparent": &traceParent,
	} {
		if v, ok := lookupFold(p.Metadata, key); ok {
			*dst = v
		}
	}
	// traceid and traceparent carry the same value; a traceparent override wins over a
	// traceid override, which wins over the publish's own trace.
	if traceParent != "" {
		traceID = traceParent
	}
	if id == "" {
		id = e.newID()
	}
	if source == "" {
		source = DefaultSource
	}
	if typ == "" {
		typ = DefaultType
	}
	ct := p.ContentType
	if ct == "" {
		ct = DefaultDataContentType
	}

	ce := map[string]any{
		FieldID:              id,
		FieldSpecVersion:     CloudEventsSpecVersion,
		FieldDataContentType: ct,
		FieldSource:          source,
		FieldType:            typ,
		FieldTopic:           p.Topic,
		FieldPubsubName:      p.PubsubName,
		// Dapr writes all three even when empty.
		FieldTraceID:     traceID,
		FieldTraceParent: traceID,
		FieldTraceState:  traceState,
		// Dapr formats the time in the sidecar's local zone; pass a UTC clock for UTC.
		FieldTime: e.now().Format(time.RFC3339),
	}
	switch {
	case isJSON(ct):
		v, err := decodePrecise(p.Data)
		if err != nil {
			// Dapr falls back to the body as a string, so a JSON content type with a
			// body that is not JSON is published rather than rejected.
			ce[FieldData] = string(p.Data)
		} else {
			ce[FieldData] = v
		}
	case isBinary(ct) || isCloudEventProtobuf(ct, p.Data):
		ce[FieldDataBase64] = base64.StdEncoding.EncodeToString(p.Data)
	default:
		// Every other content type, images included, travels as a string: invalid
		// UTF-8 becomes U+FFFD when marshalled. That is Dapr's behaviour; apps that
		// publish binary data use application/octet-stream.
		ce[FieldData] = string(p.Data)
	}
	return ce
}

// completeCloudEvent is Dapr's FromCloudEvent: the app's event is kept and completed.
//
// Set when missing: time (now), traceid and traceparent (the publish's trace, both only
// when traceid is missing), tracestate. Set when missing or null: source, type,
// specversion. Always overwritten: topic and pubsubname. Never filled: id and
// datacontenttype.
func (e Env) completeCloudEvent(p Publish) (map[string]any, error) {
	v, err := decodePrecise(p.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: body of content type %s is not JSON: %w", ErrCloudEvent, p.ContentType, err)
	}
	ce, ok := v.(map[string]any)
	if !ok {
		// Dapr fails on every non-object too, and panics on null.
		return nil, fmt.Errorf("%w: body of content type %s is %s, not a JSON object", ErrCloudEvent, p.ContentType, jsonKind(v))
	}
	if _, ok := ce[FieldTime]; !ok {
		ce[FieldTime] = e.now().Format(time.RFC3339)
	}
	if _, ok := ce[FieldTraceID]; !ok {
		ce[FieldTraceID] = p.TraceParent
		ce[FieldTraceParent] = p.TraceParent
	}
	if _, ok := ce[FieldTraceState]; !ok {
		ce[FieldTraceState] = p.TraceState
	}
	ce[FieldTopic] = p.Topic
	ce[FieldPubsubName] = p.PubsubName
	if ce[FieldSource] == nil {
		ce[FieldSource] = DefaultSource
	}
	if ce[FieldType] == nil {
		ce[FieldType] = DefaultType
	}
	if ce[FieldSpecVersion] == nil {
		ce[FieldSpecVersion] = CloudEventsSpecVersion
	}
	return ce, nil
}

// decodePrecise decodes the first JSON value of b with numbers kept as json.Number, so
// that large integers survive the round trip. Like Dapr's unmarshalPrecise it ignores
// whatever follows that first value.
func decodePrecise(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}

// rawPayload reads the rawPayload metadata: its key is matched exactly, an empty value
// is false, and anything strconv.ParseBool rejects is an error.
func rawPayload(md map[string]string) (bool, error) {
	v, ok := md[MetadataRawPayload]
	if !ok || v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s value must be a valid boolean: actual is '%s'", ErrMetadata, MetadataRawPayload, v)
	}
	return b, nil
}

// IsRawPayload reads a subscription's rawPayload metadata with the same rules as a
// publish request's. Dapr treats an unreadable value as a failed delivery.
func IsRawPayload(md map[string]string) (bool, error) { return rawPayload(md) }

// messageTTL reads the ttl metadata as Dapr's TryGetTTL does: ttl, else ttlInSeconds,
// matched case-insensitively (the first of the two present wins, even when empty); a Go
// duration (negative means 0), else a whole number of seconds above zero. Dapr ignores
// a value it cannot read, so no expiration is set then.
func messageTTL(md map[string]string) (time.Duration, bool) {
	val, ok := lookupFold(md, MetadataTTL)
	if !ok {
		val, _ = lookupFold(md, MetadataTTLInSeconds)
	}
	if val == "" {
		return 0, false
	}
	if d, err := time.ParseDuration(val); err == nil {
		return max(d, 0), true
	}
	secs, err := strconv.ParseInt(val, 10, 64)
	if err != nil || secs <= 0 {
		return 0, false
	}
	// Dapr multiplies with wrap-around and only catches a product that wrapped to a
	// negative value; one that wrapped to a positive value stays as it is.
	d := time.Duration(secs) * time.Second
	if d < 0 {
		d = math.MaxInt64
	}
	return d, true
}

// lookupFold finds key in md: an exact match first, else a case-insensitive one (the
// smallest such key, so that the choice does not depend on map order).
func lookupFold(md map[string]string, key string) (string, bool) {
	if v, ok := md[key]; ok {
		return v, true
	}
	var keys []string
	for k := range md {
		if strings.EqualFold(k, key) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", false
	}
	sort.Strings(keys)
	return md[keys[0]], true
}
