package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

var testNow = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func testEnv() Env {
	return Env{
		Now:   func() time.Time { return testNow },
		NewID: func() string { return "generated-id" },
	}
}

// decodeJSON decodes with json.Number so that expectations can check that large
// numbers are carried without loss.
func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// envelopeWith is the envelope Dapr builds for the base publish below, changed by
// the JSON object patch.
func envelopeWith(t *testing.T, patch string) map[string]any {
	t.Helper()
	m := decodeJSON(t, []byte(`{
		"id": "generated-id", "specversion": "1.0", "source": "publisher", "type": "com.dapr.event.sent",
		"datacontenttype": "application/json", "topic": "orders", "pubsubname": "pubsub",
		"traceid": "00-trace-span-01", "traceparent": "00-trace-span-01", "tracestate": "vendor=1",
		"time": "2024-05-06T07:08:09Z"}`))
	for k, v := range decodeJSON(t, []byte(patch)) {
		m[k] = v
	}
	return m
}

func basePublish() Publish {
	return Publish{
		Source: "publisher", Topic: "orders", PubsubName: "pubsub",
		ContentType: "application/json", Data: []byte(`{"orderId":1}`),
		TraceParent: "00-trace-span-01", TraceState: "vendor=1",
	}
}

// protoField appends a length-delimited field to b.
func protoField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func TestBuildEnvelope(t *testing.T) {
	protoCE := protoField(protoField(nil, 1, []byte("id")), 4, []byte("type"))
	notProtoCE := protoField(nil, 1, []byte{0xff, 0xfe}) // id must be UTF-8

	tests := []struct {
		name  string
		edit  func(*Publish)
		patch string // expected envelope, as a patch of envelopeWith
	}{
		{
			name:  "JSON body is embedded as JSON",
			patch: `{"data": {"orderId": 1}}`,
		},
		{
			name:  "large JSON numbers keep every digit",
			edit:  func(p *Publish) { p.Data = []byte(`{"n":12345678901234567890123}`) },
			patch: `{"data": {"n": 12345678901234567890123}}`,
		},
		{
			name:  "JSON with parameters and upper case",
			edit:  func(p *Publish) { p.ContentType = "Application/JSON; charset=utf-8" },
			patch: `{"datacontenttype": "Application/JSON; charset=utf-8", "data": {"orderId": 1}}`,
		},
		{
			name:  "JSON scalar body",
			edit:  func(p *Publish) { p.Data = []byte(`"hello"`) },
			patch: `{"data": "hello"}`,
		},
		{
			name:  "JSON null body is data null",
			edit:  func(p *Publish) { p.Data = []byte(`null`) },
			patch: `{"data": null}`,
		},
		{
			name:  "JSON content type with a body that is not JSON carries it as a string",
			edit:  func(p *Publish) { p.Data = []byte(`not json`) },
			patch: `{"data": "not json"}`,
		},
		{
			name:  "JSON content type with an empty body",
			edit:  func(p *Publish) { p.Data = nil },
			patch: `{"data": ""}`,
		},
		{
			name:  "only the first JSON value of the body is kept",
			edit:  func(p *Publish) { p.Data = []byte(`{"a":1} {"b":2}`) },
			patch: `{"data": {"a": 1}}`,
		},
		{
			name:  "a space before the parameters makes it not JSON",
			edit:  func(p *Publish) { p.ContentType = "application/json ; charset=utf-8" },
			patch: `{"datacontenttype": "application/json ; charset=utf-8", "data": "{\"orderId\":1}"}`,
		},
		{
			name:  "a +json type is not JSON",
			edit:  func(p *Publish) { p.ContentType = "application/vnd.api+json" },
			patch: `{"datacontenttype": "application/vnd.api+json", "data": "{\"orderId\":1}"}`,
		},
		{
			name:  "text is embedded as a string",
			edit:  func(p *Publish) { p.ContentType = "text/plain"; p.Data = []byte("hi <there>") },
			patch: `{"datacontenttype": "text/plain", "data": "hi <there>"}`,
		},
		{
			name:  "no content type means text/plain",
			edit:  func(p *Publish) { p.ContentType = ""; p.Data = []byte("hi") },
			patch: `{"datacontenttype": "text/plain", "data": "hi"}`,
		},
		{
			name:  "XML is a string",
			edit:  func(p *Publish) { p.ContentType = "application/xml"; p.Data = []byte("<a/>") },
			patch: `{"datacontenttype": "application/xml", "data": "<a/>"}`,
		},
		{
			name:  "octet-stream goes to data_base64",
			edit:  func(p *Publish) { p.ContentType = "application/octet-stream"; p.Data = []byte{0, 1, 0xff} },
			patch: `{"datacontenttype": "application/octet-stream", "data_base64": "AAH/"}`,
		},
		{
			name:  "CloudEvents protobuf goes to data_base64",
			edit:  func(p *Publish) { p.ContentType = "application/cloudevents+protobuf"; p.Data = []byte{0xff} },
			patch: `{"datacontenttype": "application/cloudevents+protobuf", "data_base64": "/w=="}`,
		},
		{
			name:  "x-protobuf that decodes as a protobuf CloudEvent goes to data_base64",
			edit:  func(p *Publish) { p.ContentType = "application/x-protobuf"; p.Data = protoCE },
			patch: `{"datacontenttype": "application/x-protobuf", "data_base64": "CgJpZCIEdHlwZQ=="}`,
		},
		{
			name:  "x-protobuf that does not decode is a string",
			edit:  func(p *Publish) { p.ContentType = "application/x-protobuf"; p.Data = notProtoCE },
			patch: `{"datacontenttype": "application/x-protobuf", "data": "\n\u0002\ufffd\ufffd"}`,
		},
		{
			name:  "other binary types are strings, as in Dapr",
			edit:  func(p *Publish) { p.ContentType = "image/png"; p.Data = []byte{'P', 0xff} },
			patch: `{"datacontenttype": "image/png", "data": "P\ufffd"}`,
		},
		{
			name:  "ID of the request is used",
			edit:  func(p *Publish) { p.ID = "request-id" },
			patch: `{"id": "request-id", "data": {"orderId": 1}}`,
		},
		{
			name:  "no trace gives empty trace attributes",
			edit:  func(p *Publish) { p.TraceParent, p.TraceState = "", "" },
			patch: `{"traceid": "", "traceparent": "", "tracestate": "", "data": {"orderId": 1}}`,
		},
		{
			name: "cloudevent.* metadata overrides id, source and type",
			edit: func(p *Publish) {
				p.ID = "request-id"
				p.Metadata = map[string]string{"cloudevent.id": "my-id", "cloudevent.source": "my-source", "cloudevent.type": "my.type"}
			},
			patch: `{"id": "my-id", "source": "my-source", "type": "my.type", "data": {"orderId": 1}}`,
		},
		{
			name:  "override keys match case-insensitively",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"CloudEvent.Type": "my.type"} },
			patch: `{"type": "my.type", "data": {"orderId": 1}}`,
		},
		{
			name: "the exact key wins over a case variant",
			edit: func(p *Publish) {
				p.Metadata = map[string]string{"CLOUDEVENT.TYPE": "upper", "cloudevent.type": "exact"}
			},
			patch: `{"type": "exact", "data": {"orderId": 1}}`,
		},
		{
			name:  "empty overrides fall back to Dapr's defaults",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"cloudevent.source": "", "cloudevent.id": ""} },
			patch: `{"source": "Dapr", "data": {"orderId": 1}}`,
		},
		{
			name: "traceid and tracestate overrides",
			edit: func(p *Publish) {
				p.Metadata = map[string]string{"cloudevent.traceid": "tid", "cloudevent.tracestate": "ts"}
			},
			patch: `{"traceid": "tid", "traceparent": "tid", "tracestate": "ts", "data": {"orderId": 1}}`,
		},
		{
			name: "traceparent override wins over traceid override",
			edit: func(p *Publish) {
				p.Metadata = map[string]string{"cloudevent.traceid": "tid", "cloudevent.traceparent": "tp"}
			},
			patch: `{"traceid": "tp", "traceparent": "tp", "data": {"orderId": 1}}`,
		},
		{
			name: "attributes Dapr 1.14 does not override stay",
			edit: func(p *Publish) {
				p.Metadata = map[string]string{"cloudevent.datacontenttype": "x/y", "cloudevent.subject": "s", "cloudevent.time": "t", "cloudevent.topic": "t", "cloudevent.specversion": "2"}
			},
			patch: `{"data": {"orderId": 1}}`,
		},
		{
			name:  "ttlInSeconds sets expiration in UTC",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"ttlInSeconds": "100"} },
			patch: `{"expiration": "2024-05-06T07:09:49Z", "data": {"orderId": 1}}`,
		},
		{
			name:  "ttl takes a Go duration",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"ttl": "1h30m"} },
			patch: `{"expiration": "2024-05-06T08:38:09Z", "data": {"orderId": 1}}`,
		},
		{
			name:  "ttl keys match case-insensitively",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"TTLINSECONDS": "1"} },
			patch: `{"expiration": "2024-05-06T07:08:10Z", "data": {"orderId": 1}}`,
		},
		{
			name:  "a negative duration expires now",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"ttl": "-5s"} },
			patch: `{"expiration": "2024-05-06T07:08:09Z", "data": {"orderId": 1}}`,
		},
		{
			name:  "ttl wins over ttlInSeconds, even when empty",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"ttl": "", "ttlInSeconds": "100"} },
			patch: `{"data": {"orderId": 1}}`,
		},
		{
			name:  "an unreadable ttl is ignored",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"ttlInSeconds": "soon"} },
			patch: `{"data": {"orderId": 1}}`,
		},
		{
			name:  "zero seconds is ignored",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"ttlInSeconds": "-3"} },
			patch: `{"data": {"orderId": 1}}`,
		},
		{
			name:  "a component with native TTL gets no expiration",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"ttlInSeconds": "100"}; p.NativeTTL = true },
			patch: `{"data": {"orderId": 1}}`,
		},
		{
			name:  "rawPayload=false still wraps",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"rawPayload": "false"} },
			patch: `{"data": {"orderId": 1}}`,
		},
		{
			name:  "rawPayload key is case-sensitive",
			edit:  func(p *Publish) { p.Metadata = map[string]string{"RawPayload": "true"} },
			patch: `{"data": {"orderId": 1}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := basePublish()
			if tt.edit != nil {
				tt.edit(&p)
			}
			data, ct, err := testEnv().Build(p)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if ct != ContentTypeCloudEvent {
				t.Errorf("content type = %q; want %q", ct, ContentTypeCloudEvent)
			}
			got, want := decodeJSON(t, data), envelopeWith(t, tt.patch)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("envelope\n got %s\nwant %s", data, mustJSON(t, want))
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildBytes(t *testing.T) {
	// The exact bytes matter to apps that sign or hash what they receive: sorted keys
	// and HTML escaping, as encoding/json gives Dapr.
	p := basePublish()
	p.ContentType = "text/plain"
	p.Data = []byte("a<b&c")
	data, _, err := testEnv().Build(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"data":"a\u003cb\u0026c","datacontenttype":"text/plain","id":"generated-id","pubsubname":"pubsub",` +
		`"source":"publisher","specversion":"1.0","time":"2024-05-06T07:08:09Z","topic":"orders",` +
		`"traceid":"00-trace-span-01","traceparent":"00-trace-span-01","tracestate":"vendor=1","type":"com.dapr.event.sent"}`
	if string(data) != want {
		t.Fatalf("got  %s\nwant %s", data, want)
	}
}

func TestBuildRawPayload(t *testing.T) {
	tests := []struct {
		name  string
		value string
		ct    string
	}{
		{"true", "true", "application/json"},
		{"1", "1", "text/plain"},
		{"TRUE with no content type", "TRUE", ""},
		{"even a CloudEvent content type", "true", "application/cloudevents+json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := basePublish()
			p.ContentType = tt.ct
			p.Data = []byte("not json at all")
			p.Metadata = map[string]string{"rawPayload": tt.value, "ttlInSeconds": "10", "cloudevent.id": "x"}
			data, ct, err := testEnv().Build(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != "not json at all" || ct != tt.ct {
				t.Fatalf("Build = %q, %q; want the body and %q", data, ct, tt.ct)
			}
		})
	}
}

func TestBuildCloudEventBody(t *testing.T) {
	tests := []struct {
		name string
		ct   string
		body string
		md   map[string]string
		want string
	}{
		{
			name: "complete event: attributes kept, topic and pubsubname replaced",
			ct:   "application/cloudevents+json",
			body: `{"id":"e1","source":"s","type":"t","specversion":"1.0","datacontenttype":"application/json",
				"time":"2020-01-01T00:00:00Z","traceid":"app-trace","traceparent":"app-tp","tracestate":"app-ts",
				"topic":"other","pubsubname":"other","subject":"sub","myext":42,"data":{"x":1}}`,
			want: `{"id":"e1","source":"s","type":"t","specversion":"1.0","datacontenttype":"application/json",
				"time":"2020-01-01T00:00:00Z","traceid":"app-trace","traceparent":"app-tp","tracestate":"app-ts",
				"topic":"orders","pubsubname":"pubsub","subject":"sub","myext":42,"data":{"x":1}}`,
		},
		{
			name: "missing attributes filled; id and datacontenttype are not",
			ct:   "application/cloudevents+json; charset=utf-8",
			body: `{"data":"x"}`,
			want: `{"source":"Dapr","type":"com.dapr.event.sent","specversion":"1.0","time":"2024-05-06T07:08:09Z",
				"traceid":"00-trace-span-01","traceparent":"00-trace-span-01","tracestate":"vendor=1",
				"topic":"orders","pubsubname":"pubsub","data":"x"}`,
		},
		{
			name: "null source, type and specversion are filled; a null time is kept",
			ct:   "application/cloudevents+json",
			body: `{"id":"e1","source":null,"type":null,"specversion":null,"time":null}`,
			want: `{"id":"e1","source":"Dapr","type":"com.dapr.event.sent","specversion":"1.0","time":null,
				"traceid":"00-trace-span-01","traceparent":"00-trace-span-01","tracestate":"vendor=1",
				"topic":"orders","pubsubname":"pubsub"}`,
		},
		{
			name: "an existing traceid keeps the app's trace and leaves traceparent unset",
			ct:   "application/cloudevents+json",
			body: `{"id":"e1","traceid":"app-trace"}`,
			want: `{"id":"e1","source":"Dapr","type":"com.dapr.event.sent","specversion":"1.0","time":"2024-05-06T07:08:09Z",
				"traceid":"app-trace","tracestate":"vendor=1","topic":"orders","pubsubname":"pubsub"}`,
		},
		{
			name: "a traceparent without traceid is replaced",
			ct:   "application/cloudevents+json",
			body: `{"id":"e1","traceparent":"app-tp","tracestate":""}`,
			want: `{"id":"e1","source":"Dapr","type":"com.dapr.event.sent","specversion":"1.0","time":"2024-05-06T07:08:09Z",
				"traceid":"00-trace-span-01","traceparent":"00-trace-span-01","tracestate":"","topic":"orders","pubsubname":"pubsub"}`,
		},
		{
			name: "cloudevent.* metadata is ignored; ttl applies and replaces expiration",
			ct:   "application/cloudevents+json",
			body: `{"id":"e1","source":"s","type":"t","specversion":"1.0","expiration":"2000-01-01T00:00:00Z","n":12345678901234567890123}`,
			md:   map[string]string{"cloudevent.id": "override", "cloudevent.type": "override", "ttlInSeconds": "60"},
			want: `{"id":"e1","source":"s","type":"t","specversion":"1.0","time":"2024-05-06T07:08:09Z",
				"traceid":"00-trace-span-01","traceparent":"00-trace-span-01","tracestate":"vendor=1",
				"topic":"orders","pubsubname":"pubsub","expiration":"2024-05-06T07:09:09Z","n":12345678901234567890123}`,
		},
		{
			name: "whatever follows the object is ignored, as in Dapr",
			ct:   "application/cloudevents+json",
			body: `{"id":"e1"} trailing`,
			want: `{"id":"e1","source":"Dapr","type":"com.dapr.event.sent","specversion":"1.0","time":"2024-05-06T07:08:09Z",
				"traceid":"00-trace-span-01","traceparent":"00-trace-span-01","tracestate":"vendor=1","topic":"orders","pubsubname":"pubsub"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := basePublish()
			p.ContentType, p.Data, p.Metadata = tt.ct, []byte(tt.body), tt.md
			data, ct, err := testEnv().Build(p)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if ct != ContentTypeCloudEvent {
				t.Errorf("content type = %q", ct)
			}
			if got, want := decodeJSON(t, data), decodeJSON(t, []byte(tt.want)); !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %s\nwant %s", data, mustJSON(t, want))
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		ct      string
		body    string
		md      map[string]string
		wantErr error
		wantMsg string
	}{
		{"rawPayload not a boolean", "application/json", `{}`, map[string]string{"rawPayload": "yes"}, ErrMetadata, "rawPayload value must be a valid boolean: actual is 'yes'"},
		{"CloudEvent body not JSON", "application/cloudevents+json", `{"id":`, nil, ErrCloudEvent, "is not JSON"},
		{"CloudEvent body empty", "application/cloudevents+json", ``, nil, ErrCloudEvent, "is not JSON"},
		{"CloudEvent body an array", "application/cloudevents+json", `[{"id":"x"}]`, nil, ErrCloudEvent, "is an array, not a JSON object"},
		{"CloudEvent body a string", "application/cloudevents+json; charset=utf-8", `"x"`, nil, ErrCloudEvent, "is a string, not a JSON object"},
		{"CloudEvent body a number", "application/cloudevents+json", `12`, nil, ErrCloudEvent, "is a number"},
		{"CloudEvent body null", "APPLICATION/CLOUDEVENTS+JSON", `null`, nil, ErrCloudEvent, "is null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := basePublish()
			p.ContentType, p.Data, p.Metadata = tt.ct, []byte(tt.body), tt.md
			data, ct, err := testEnv().Build(p)
			if err == nil {
				t.Fatalf("Build = %s, %q; want an error", data, ct)
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error = %v; want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

func TestBuildDefaults(t *testing.T) {
	// A zero Env still works: a real clock and random UUIDs.
	p := basePublish()
	a, _, err := Env{}.Build(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := Env{}.Build(p)
	ea, eb := decodeJSON(t, a), decodeJSON(t, b)
	if ea["id"] == eb["id"] || len(ea["id"].(string)) != 36 {
		t.Fatalf("ids %v and %v; want two different UUIDs", ea["id"], eb["id"])
	}
	if _, err := time.Parse(time.RFC3339, ea["time"].(string)); err != nil {
		t.Fatalf("time: %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		raw     bool
		want    map[string]any
		wantErr string
	}{
		{
			name: "raw bytes are wrapped",
			data: "\x00binary\xff",
			raw:  true,
			want: map[string]any{
				"id": "generated-id", "specversion": "1.0", "datacontenttype": "application/octet-stream",
				"source": "Dapr", "type": "com.dapr.event.sent", "topic": "orders", "pubsubname": "pubsub",
				"data_base64": "AGJpbmFyef8=",
			},
		},
		{
			name: "raw wraps even a CloudEvent",
			data: `{"id":"x"}`,
			raw:  true,
			want: map[string]any{
				"id": "generated-id", "specversion": "1.0", "datacontenttype": "application/octet-stream",
				"source": "Dapr", "type": "com.dapr.event.sent", "topic": "orders", "pubsubname": "pubsub",
				"data_base64": "eyJpZCI6IngifQ==",
			},
		},
		{
			name: "a CloudEvent is decoded, numbers as float64",
			data: `{"id":"e1","topic":"orders","data":{"n":3}}`,
			want: map[string]any{"id": "e1", "topic": "orders", "data": map[string]any{"n": float64(3)}},
		},
		{
			name: "any JSON object is accepted",
			data: `{"hello":"world"}`,
			want: map[string]any{"hello": "world"},
		},
		{
			name: "null is an empty event",
			data: `null`,
			want: map[string]any{},
		},
		{name: "not JSON", data: `hello`, wantErr: "invalid character"},
		{name: "trailing data", data: `{"id":"e1"} x`, wantErr: "invalid character"},
		{name: "empty", data: ``, wantErr: "unexpected end of JSON input"},
		{name: "an array", data: `[1]`, wantErr: "cannot unmarshal array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testEnv().Parse([]byte(tt.data), "application/octet-stream", tt.raw, "orders", "pubsub")
			if tt.wantErr != "" {
				if !errors.Is(err, ErrCloudEvent) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v; want ErrCloudEvent containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestBody(t *testing.T) {
	orig := []byte(`{"id":"e1",  "data":1}`)
	b, err := Body(orig, false, map[string]any{"id": "other"})
	if err != nil || !bytes.Equal(b, orig) {
		t.Fatalf("non-raw body = %s, %v; want the broker's bytes", b, err)
	}
	ev, err := testEnv().Parse([]byte("x"), "", true, "t", "p")
	if err != nil {
		t.Fatal(err)
	}
	b, err = Body([]byte("x"), true, ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"data_base64":"eA==","datacontenttype":"application/octet-stream","id":"generated-id","pubsubname":"p",` +
		`"source":"Dapr","specversion":"1.0","topic":"t","type":"com.dapr.event.sent"}`
	if string(b) != want {
		t.Fatalf("raw body = %s\nwant %s", b, want)
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name       string
		expiration any // nil: attribute absent
		want       bool
	}{
		{"absent", nil, false},
		{"in the past", "2024-05-06T07:08:08Z", true},
		{"exactly now is not expired", "2024-05-06T07:08:09Z", false},
		{"in the future", "2024-05-06T07:08:10Z", false},
		{"offset zone in the past", "2024-05-06T08:08:08+01:00", true},
		{"offset zone in the future", "2024-05-06T06:08:10-01:00", false},
		{"fractional seconds", "2024-05-06T07:08:08.999Z", true},
		{"empty", "", false},
		{"unparsable", "yesterday", false},
		{"not a string", float64(0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := map[string]any{"id": "e1"}
			if tt.expiration != nil {
				ev["expiration"] = tt.expiration
			}
			if got := Expired(ev, now); got != tt.want {
				t.Fatalf("Expired = %v; want %v", got, tt.want)
			}
		})
	}
	// What Build writes expires ttl later.
	p := basePublish()
	p.Metadata = map[string]string{"ttlInSeconds": "10"}
	data, _, err := testEnv().Build(p)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := testEnv().Parse(data, ContentTypeCloudEvent, false, "orders", "pubsub")
	if err != nil {
		t.Fatal(err)
	}
	if Expired(ev, testNow.Add(10*time.Second)) || !Expired(ev, testNow.Add(11*time.Second)) {
		t.Fatalf("expiration %v does not fall between 10 and 11 seconds", ev["expiration"])
	}
}

func TestDataBytes(t *testing.T) {
	tests := []struct {
		name    string
		event   string
		want    string
		wantCT  string
		wantErr string
	}{
		{"data_base64", `{"datacontenttype":"application/octet-stream","data_base64":"AAH/"}`, "\x00\x01\xff", "application/octet-stream", ""},
		{"data_base64 wins over data", `{"datacontenttype":"text/plain","data_base64":"eA==","data":"y"}`, "x", "text/plain", ""},
		{"null data_base64 falls back to data", `{"datacontenttype":"text/plain","data_base64":null,"data":"y"}`, "y", "text/plain", ""},
		{"bad base64", `{"data_base64":"!!"}`, "", "", "illegal base64"},
		{"data_base64 not a string", `{"data_base64":5}`, "", "", "not a string"},
		{"text", `{"datacontenttype":"text/plain; charset=utf-8","data":"hello"}`, "hello", "text/plain; charset=utf-8", ""},
		{"XML", `{"datacontenttype":"application/xml","data":"<a/>"}`, "<a/>", "application/xml", ""},
		{"text that is not a string", `{"datacontenttype":"text/plain","data":{"a":1}}`, "", "text/plain", "not a string"},
		{"JSON object", `{"datacontenttype":"application/json","data":{"b":2,"a":"<"}}`, `{"a":"\u003c","b":2}`, "application/json", ""},
		{"JSON string", `{"datacontenttype":"application/json","data":"s"}`, `"s"`, "application/json", ""},
		{"CloudEvent content type", `{"datacontenttype":"application/cloudevents+json","data":[1]}`, `[1]`, "application/cloudevents+json", ""},
		{"other content type with data gives nothing", `{"datacontenttype":"image/png","data":"x"}`, "", "image/png", ""},
		{"no content type with data gives nothing", `{"data":"x"}`, "", "", ""},
		{"null data", `{"datacontenttype":"application/json","data":null}`, "", "application/json", ""},
		{"no data", `{"datacontenttype":"application/json"}`, "", "application/json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev map[string]any
			if err := json.Unmarshal([]byte(tt.event), &ev); err != nil {
				t.Fatal(err)
			}
			got, ct, err := DataBytes(ev)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrData) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v; want ErrData containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want || ct != tt.wantCT {
				t.Fatalf("DataBytes = %q, %q; want %q, %q", got, ct, tt.want, tt.wantCT)
			}
		})
	}
}

// TestRoundTrip publishes, delivers and hands a gRPC app its data: what the app gets
// is what was published.
func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		ct   string
		data string
		want string
	}{
		{"JSON", "application/json", `{"z":1,"a":[true,null]}`, `{"a":[true,null],"z":1}`},
		{"text", "text/plain", "hello", "hello"},
		{"binary", "application/octet-stream", "\x00\xff\x10", "\x00\xff\x10"},
		{"default content type", "", "plain", "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := basePublish()
			p.ContentType, p.Data = tt.ct, []byte(tt.data)
			msg, _, err := testEnv().Build(p)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := testEnv().Parse(msg, ContentTypeCloudEvent, false, "orders", "pubsub")
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := DataBytes(ev)
			if err != nil || string(got) != tt.want {
				t.Fatalf("DataBytes = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	var ev map[string]any
	if err := json.Unmarshal([]byte(`{"id":"e1","source":"s","type":"t","specversion":"1.0","datacontenttype":"text/plain",
		"topic":"orders","pubsubname":"pubsub","traceid":"tid","data":"x","data_base64":"eA==","ext":1,"time":"now","subject":5}`), &ev); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][2]string{
		"ID":              {ID(ev), "e1"},
		"Source":          {Source(ev), "s"},
		"Type":            {Type(ev), "t"},
		"SpecVersion":     {SpecVersion(ev), "1.0"},
		"DataContentType": {DataContentType(ev), "text/plain"},
		"Topic":           {Topic(ev), "orders"},
		"PubsubName":      {PubsubName(ev), "pubsub"},
		"non-string":      {String(ev, "subject"), ""},
		"missing":         {String(ev, "nope"), ""},
		"nil event":       {ID(nil), ""},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %q; want %q", name, got[0], got[1])
		}
	}

	wantExt := map[string]any{"topic": "orders", "pubsubname": "pubsub", "traceid": "tid", "ext": float64(1), "time": "now", "subject": float64(5)}
	if got := Extensions(ev); !reflect.DeepEqual(got, wantExt) {
		t.Errorf("Extensions = %v; want %v", got, wantExt)
	}
}

func TestTraceParent(t *testing.T) {
	tests := []struct {
		name string
		ev   map[string]any
		want string
	}{
		{"traceparent", map[string]any{"traceparent": "tp", "traceid": "tid"}, "tp"},
		{"empty traceparent is used as is", map[string]any{"traceparent": "", "traceid": "tid"}, ""},
		{"null traceparent falls back to traceid", map[string]any{"traceparent": nil, "traceid": "tid"}, "tid"},
		{"traceid only", map[string]any{"traceid": "tid"}, "tid"},
		{"not a string", map[string]any{"traceparent": 1.0}, ""},
		{"none", map[string]any{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TraceParent(tt.ev); got != tt.want {
				t.Fatalf("TraceParent = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestIsRawPayload(t *testing.T) {
	tests := []struct {
		md      map[string]string
		want    bool
		wantErr bool
	}{
		{nil, false, false},
		{map[string]string{"rawPayload": ""}, false, false},
		{map[string]string{"rawPayload": "true"}, true, false},
		{map[string]string{"rawPayload": "f"}, false, false},
		{map[string]string{"rawpayload": "true"}, false, false},
		{map[string]string{"rawPayload": "on"}, false, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join([]string{tt.md["rawPayload"], tt.md["rawpayload"]}, "|"), func(t *testing.T) {
			got, err := IsRawPayload(tt.md)
			if got != tt.want || (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrMetadata)) {
				t.Fatalf("IsRawPayload = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestContentTypes(t *testing.T) {
	tests := []struct {
		ct                         string
		cloudEvent, json, bin, str bool
	}{
		{ct: "application/cloudevents+json", cloudEvent: true},
		{ct: "Application/CloudEvents+JSON; charset=utf-8", cloudEvent: true},
		{ct: "application/cloudevents+json ;x"},
		{ct: "application/json", json: true},
		{ct: "application/json;charset=utf-8", json: true},
		{ct: "application/problem+json"},
		{ct: "application/octet-stream", bin: true},
		{ct: "text/plain", str: true},
		{ct: "TEXT/csv", str: true},
		{ct: "application/xml; charset=utf-8", str: true},
		{ct: "application/atom+xml"},
		{ct: ""},
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			if IsCloudEventContentType(tt.ct) != tt.cloudEvent || isJSON(tt.ct) != tt.json || isBinary(tt.ct) != tt.bin || isString(tt.ct) != tt.str {
				t.Fatalf("cloudEvent=%v json=%v binary=%v string=%v", IsCloudEventContentType(tt.ct), isJSON(tt.ct), isBinary(tt.ct), isString(tt.ct))
			}
		})
	}
}
