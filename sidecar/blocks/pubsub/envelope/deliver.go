package envelope

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// Parse turns a message from the broker into the CloudEvent that routing, expiry and
// delivery work on (Dapr's subscription handler in pkg/runtime/subscription).
//
// With raw (the subscription's rawPayload metadata) the bytes are wrapped as Dapr's
// FromRawPayload does: a new id, source "Dapr", type com.dapr.event.sent, datacontenttype
// application/octet-stream, the subscription's topic and pubsubName, and the bytes in
// data_base64; no time and no trace attributes.
//
// Otherwise data must be JSON: anything else is an error wrapping ErrCloudEvent. It is
// decoded with encoding/json defaults, as Dapr does here, so numbers become float64.
// Dapr does not check that the JSON is an object with CloudEvent attributes; a JSON null
// gives an empty event. Any other non-object is an error, as it is in Dapr.
//
// contentType, the broker's content type, is not used: Dapr 1.14 ignores it on delivery.
// topic is the subscribed topic without any namespace prefix.
func (e Env) Parse(data []byte, contentType string, raw bool, topic, pubsubName string) (map[string]any, error) {
	if raw {
		return map[string]any{
			FieldID:              e.newID(),
			FieldSpecVersion:     CloudEventsSpecVersion,
			FieldDataContentType: ContentTypeOctetStream,
			FieldSource:          DefaultSource,
			FieldType:            DefaultType,
			FieldTopic:           topic,
			FieldPubsubName:      pubsubName,
			FieldDataBase64:      base64.StdEncoding.EncodeToString(data),
		}, nil
	}
	var ev map[string]any
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("%w: message on topic %s of pubsub %s: %w", ErrCloudEvent, topic, pubsubName, err)
	}
	if ev == nil {
		ev = map[string]any{}
	}
	return ev, nil
}

// Body is the body of the HTTP POST to the app (content type
// application/cloudevents+json): Dapr forwards the broker's bytes untouched, or, for a
// raw subscription, the JSON of the wrapping event.
func Body(data []byte, raw bool, ev map[string]any) ([]byte, error) {
	if !raw {
		return data, nil
	}
	return json.Marshal(ev)
}

// Expired reports whether ev has an expiration attribute, in RFC 3339, before now. Dapr
// then drops the message (to the dead-letter topic, if any) without delivering it. An
// expiration that is not a string or does not parse never expires.
func Expired(ev map[string]any, now time.Time) bool {
	s, ok := ev[FieldExpiration].(string)
	if !ok || s == "" {
		return false
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return false
	}
	return t.UTC().Before(now.UTC())
}

// DataBytes returns the Data and DataContentType of a gRPC TopicEventRequest for ev
// (Dapr's GRPCEnvelopeFromSubscriptionMessage):
//
//   - data_base64, when present and not null, decoded; it must be a base64 string.
//   - else data, when present and not null: for a text/* or application/xml content
//     type it must be a string, taken as is; for application/json or
//     application/cloudevents+json it is marshalled back to JSON; for any other content
//     type Data is empty.
//
// Errors wrap ErrData; Dapr counts them as retriable failures.
func DataBytes(ev map[string]any) (data []byte, contentType string, err error) {
	contentType = DataContentType(ev)
	if v, ok := ev[FieldDataBase64]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			return nil, contentType, fmt.Errorf("%w: %s is %T, not a string", ErrData, FieldDataBase64, v)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, contentType, fmt.Errorf("%w: %s: %w", ErrData, FieldDataBase64, err)
		}
		return b, contentType, nil
	}
	v, ok := ev[FieldData]
	if !ok || v == nil {
		return nil, contentType, nil
	}
	switch {
	case isString(contentType):
		switch d := v.(type) {
		case string:
			return []byte(d), contentType, nil
		case []byte:
			return d, contentType, nil
		}
		return nil, contentType, fmt.Errorf("%w: data of content type %s is %T, not a string", ErrData, contentType, v)
	case isJSON(contentType) || IsCloudEventContentType(contentType):
		// Dapr ignores the marshal error; values decoded from JSON always marshal.
		b, _ := json.Marshal(v)
		return b, contentType, nil
	}
	return nil, contentType, nil
}

// Extensions returns the attributes of ev that a gRPC TopicEventRequest carries in its
// extensions field: all but id, source, datacontenttype, type, specversion, data and
// data_base64. topic, pubsubname, time and the trace attributes are among them.
func Extensions(ev map[string]any) map[string]any {
	ext := make(map[string]any, len(ev))
	for k, v := range ev {
		switch k {
		case FieldID, FieldSource, FieldDataContentType, FieldType, FieldSpecVersion, FieldData, FieldDataBase64:
			continue
		}
		ext[k] = v
	}
	return ext
}

// String returns the attribute name of ev when it is a string, else "".
func String(ev map[string]any, name string) string {
	s, _ := ev[name].(string)
	return s
}

// ID, Source, Type, SpecVersion and DataContentType are the string attributes a gRPC
// TopicEventRequest copies from the event; "" when missing or not a string.
func ID(ev map[string]any) string              { return String(ev, FieldID) }
func Source(ev map[string]any) string          { return String(ev, FieldSource) }
func Type(ev map[string]any) string            { return String(ev, FieldType) }
func SpecVersion(ev map[string]any) string     { return String(ev, FieldSpecVersion) }
func DataContentType(ev map[string]any) string { return String(ev, FieldDataContentType) }

// Topic and PubsubName read the event's own attributes. A TopicEventRequest does not
// use them: Dapr fills its topic and pubsub_name from the subscription.
func Topic(ev map[string]any) string      { return String(ev, FieldTopic) }
func PubsubName(ev map[string]any) string { return String(ev, FieldPubsubName) }

// TraceParent is the W3C trace context the delivery continues: traceparent, else
// traceid, as Dapr reads them; "" when neither is a string.
func TraceParent(ev map[string]any) string {
	if v, ok := ev[FieldTraceParent]; ok && v != nil {
		s, _ := v.(string)
		return s
	}
	return String(ev, FieldTraceID)
}
