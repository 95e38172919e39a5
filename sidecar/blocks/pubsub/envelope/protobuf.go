package envelope

import (
	"net/url"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// decodesAsProtobufCloudEvent reports whether data would be accepted by the CloudEvents
// SDK's protobuf format (sdk-go binding/format/protobuf/v2 v2.14.0, Unmarshal then
// FromProto), which is what Dapr asks before it base64-encodes an application/x-protobuf
// body. Dapr carries a body that fails as a string instead.
//
// The SDK is not a dependency of ours, so this walks the wire format against the
// CloudEvent schema (cloudevents.proto, proto3) with the rules of Go's proto.Unmarshal:
//   - malformed wire data, a field number 0 or a stray end-group fails;
//   - a known field with another wire type is kept as an unknown field, not an error;
//   - proto3 strings must be valid UTF-8;
//   - repeated occurrences of a message field merge, of a scalar or a oneof replace;
//     a map entry replaces the previous one with the same key.
//
// and then FromProto's: every attribute value must have its oneof set, URIs must parse,
// and text data must have a content type the SDK can encode a string with.
func decodesAsProtobufCloudEvent(data []byte) bool {
	const (
		fieldID          = 1
		fieldSource      = 2
		fieldSpecVersion = 3
		fieldType        = 4
		fieldAttributes  = 5
		fieldBinaryData  = 6
		fieldTextData    = 7
		fieldProtoData   = 8
	)
	attrs := map[string]attrValue{}
	textData := false
	ok := walk(data, func(num protowire.Number, typ protowire.Type, b []byte) bool {
		switch num {
		case fieldID, fieldSource, fieldSpecVersion, fieldType:
			return utf8.Valid(b)
		case fieldAttributes:
			key, val, ok := decodeAttributeEntry(b)
			if ok {
				attrs[key] = val
			}
			return ok
		case fieldBinaryData:
			textData = false
		case fieldTextData:
			if !utf8.Valid(b) {
				return false
			}
			textData = true
		case fieldProtoData:
			textData = false
			return decodeAny(b)
		}
		return true
	}, fieldID, fieldSource, fieldSpecVersion, fieldType, fieldAttributes, fieldBinaryData, fieldTextData, fieldProtoData)
	if !ok {
		return false
	}
	for _, v := range attrs {
		if !v.valid() {
			return false
		}
	}
	if textData {
		ct := ""
		if v, ok := attrs["datacontenttype"]; ok && v.kind == attrString {
			ct = v.str
		}
		return sdkCanEncodeString(ct)
	}
	return true
}

// walk calls fn with the payload of every length-delimited field whose number is in
// lengthDelimited, and checks that every other field is well formed. A length-delimited
// number arriving with another wire type is an unknown field, as proto.Unmarshal treats
// it.
func walk(b []byte, fn func(protowire.Number, protowire.Type, []byte) bool, lengthDelimited ...protowire.Number) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		known := false
		if typ == protowire.BytesType {
			for _, k := range lengthDelimited {
				if k == num {
					known = true
					break
				}
			}
		}
		if !known {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if !fn(num, typ, v) {
			return false
		}
	}
	return true
}

type attrKind int

const (
	attrUnset attrKind = iota
	attrBool
	attrInt
	attrString
	attrBytes
	attrURI
	attrURIRef
	attrTimestamp
)

type attrValue struct {
	kind attrKind
	str  string // the value of a string, URI or URI reference
}

func (v attrValue) valid() bool {
	switch v.kind {
	case attrUnset:
		return false // FromProto: "unsupported attribute type"
	case attrURI, attrURIRef:
		_, err := url.Parse(v.str)
		return err == nil
	}
	return true
}

// decodeAttributeEntry decodes one map<string, CloudEventAttributeValue> entry. A
// missing value decodes as an empty message, whose oneof is unset.
func decodeAttributeEntry(b []byte) (string, attrValue, bool) {
	var (
		key string
		val attrValue
	)
	ok := walk(b, func(num protowire.Number, _ protowire.Type, v []byte) bool {
		if num == 1 {
			if !utf8.Valid(v) {
				return false
			}
			key = string(v)
			return true
		}
		var ok bool
		val, ok = decodeAttributeValue(v, val)
		return ok
	}, 1, 2)
	return key, val, ok
}

// decodeAttributeValue merges one encoded CloudEventAttributeValue into prev.
func decodeAttributeValue(b []byte, prev attrValue) (attrValue, bool) {
	v := prev
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return v, false
		}
		b = b[n:]
		switch {
		case (num == 1 || num == 2) && typ == protowire.VarintType:
			_, n = protowire.ConsumeVarint(b)
			if n < 0 {
				return v, false
			}
			v = attrValue{kind: attrBool}
			if num == 2 {
				v.kind = attrInt
			}
		case num >= 3 && num <= 7 && typ == protowire.BytesType:
			var s []byte
			s, n = protowire.ConsumeBytes(b)
			if n < 0 {
				return v, false
			}
			switch num {
			case 4:
				v = attrValue{kind: attrBytes}
			case 7:
				if !walk(s, nil) { // google.protobuf.Timestamp has only varints
					return v, false
				}
				v = attrValue{kind: attrTimestamp}
			default:
				if !utf8.Valid(s) {
					return v, false
				}
				v = attrValue{kind: attrString, str: string(s)}
				if num == 5 {
					v.kind = attrURI
				} else if num == 6 {
					v.kind = attrURIRef
				}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return v, false
			}
		}
		b = b[n:]
	}
	return v, true
}

// decodeAny checks a google.protobuf.Any: type_url (1) is a proto3 string.
func decodeAny(b []byte) bool {
	return walk(b, func(_ protowire.Number, _ protowire.Type, v []byte) bool {
		return utf8.Valid(v)
	}, 1)
}

// sdkCanEncodeString reports whether the SDK's Event.SetData(ct, string) succeeds: its
// data codecs are keyed by the media type (the part before ';', trimmed), and
// application/protobuf only encodes proto messages.
func sdkCanEncodeString(ct string) bool {
	mt := strings.TrimSpace(ct)
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	switch mt {
	case "", "application/json", "text/json", "application/xml", "text/xml", "text/plain":
		return true
	}
	return false
}
