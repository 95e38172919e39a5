package envelope

import "strings"

// Content types as Dapr's components-contrib contenttype package compares them: the
// lower-cased type, either whole or up to the first ';'. Nothing is trimmed, so
// "application/json ; charset=utf-8" is not JSON and "application/vnd.x+json" is not
// JSON either; both are carried as text, exactly as Dapr carries them.
const (
	ContentTypeCloudEvent         = "application/cloudevents+json"
	ContentTypeJSON               = "application/json"
	ContentTypeOctetStream        = "application/octet-stream"
	ContentTypeProtobuf           = "application/x-protobuf"
	ContentTypeCloudEventProtobuf = "application/cloudevents+protobuf"
)

func isContentType(contentType, want string) bool {
	ct := strings.ToLower(contentType)
	if ct == want {
		return true
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		return ct[:i] == want
	}
	return false
}

// IsCloudEventContentType reports whether a body of this content type is already a
// CloudEvent in the JSON format.
func IsCloudEventContentType(ct string) bool { return isContentType(ct, ContentTypeCloudEvent) }

func isJSON(ct string) bool   { return isContentType(ct, ContentTypeJSON) }
func isBinary(ct string) bool { return isContentType(ct, ContentTypeOctetStream) }

// isString is Dapr's IsStringContentType: text/* or application/xml.
func isString(ct string) bool {
	return strings.HasPrefix(strings.ToLower(ct), "text/") || isContentType(ct, "application/xml")
}

// isCloudEventProtobuf is Dapr's IsCloudEventProtobuf: the CloudEvents protobuf format
// by name, or an application/x-protobuf body that decodes as that format.
func isCloudEventProtobuf(ct string, data []byte) bool {
	if isContentType(ct, ContentTypeCloudEventProtobuf) {
		return true
	}
	return isContentType(ct, ContentTypeProtobuf) && decodesAsProtobufCloudEvent(data)
}
