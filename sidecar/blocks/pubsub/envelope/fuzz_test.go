package envelope

import (
	"encoding/json"
	"testing"
	"time"
)

// Whatever an app publishes, and whatever a broker hands back, building and reading
// envelopes returns an error or a valid result; it never panics, and a built envelope
// reads back with the topic and pub/sub it was published to.
func FuzzEnvelope(f *testing.F) {
	f.Add([]byte(`{"orderId":1}`), "application/json", "", false)
	f.Add([]byte(`null`), "application/cloudevents+json", "", false)
	f.Add([]byte(`{"specversion":"1.0","id":"x","data":{"a":1}}`), "application/cloudevents+json; charset=utf-8", "60", false)
	f.Add([]byte("\x00\xff"), "application/octet-stream", "", true)
	f.Add([]byte(`{"specversion":`), "application/cloudevents+json", "x", false)
	env := Env{Now: func() time.Time { return time.Unix(1700000000, 0) }, NewID: func() string { return "id" }}
	f.Fuzz(func(t *testing.T, data []byte, contentType, ttl string, raw bool) {
		md := map[string]string{"ttlInSeconds": ttl}
		if raw {
			md["rawPayload"] = "true"
		}
		out, ct, err := env.Build(Publish{Source: "app", Topic: "t", PubsubName: "ps", ContentType: contentType, Data: data, Metadata: md})
		if err != nil {
			return
		}
		ev, err := env.Parse(out, ct, raw, "t", "ps")
		if err != nil {
			if raw {
				t.Fatalf("a raw message did not parse: %v", err)
			}
			return
		}
		if !raw && json.Valid(out) {
			if ev[FieldTopic] != "t" || ev[FieldPubsubName] != "ps" {
				t.Fatalf("built envelope %s reads back with topic %v and pubsubname %v", out, ev[FieldTopic], ev[FieldPubsubName])
			}
		}
		_, _, _ = DataBytes(ev)
		_ = Expired(ev, time.Now())
		_, _ = Body(out, raw, ev)
	})
}
