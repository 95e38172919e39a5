package common

import (
	"encoding/json"
	"testing"

	sigsyaml "sigs.k8s.io/yaml"
)

func TestNameValuePairKeepsValueTypes(t *testing.T) {
	tests := []struct {
		name       string
		yaml       string
		wantJSON   string
		wantString string
	}{
		{name: "string", yaml: "name: redisHost\nvalue: localhost:6379\n", wantJSON: `{"name":"redisHost","value":"localhost:6379"}`, wantString: "localhost:6379"},
		{name: "quoted number", yaml: "name: maxRetries\nvalue: \"3\"\n", wantJSON: `{"name":"maxRetries","value":"3"}`, wantString: "3"},
		{name: "unquoted number", yaml: "name: maxRetries\nvalue: 3\n", wantJSON: `{"name":"maxRetries","value":3}`, wantString: "3"},
		{name: "unquoted bool", yaml: "name: enableTLS\nvalue: false\n", wantJSON: `{"name":"enableTLS","value":false}`, wantString: "false"},
		{name: "object", yaml: "name: labels\nvalue:\n  a: 1\n", wantJSON: `{"name":"labels","value":{"a":1}}`, wantString: `{"a":1}`},
		{name: "secret reference", yaml: "name: redisPassword\nsecretKeyRef:\n  name: redis\n  key: redis-password\n", wantJSON: `{"name":"redisPassword","secretKeyRef":{"name":"redis","key":"redis-password"}}`},
		{name: "environment reference", yaml: "name: token\nenvRef: TOKEN\n", wantJSON: `{"name":"token","envRef":"TOKEN"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var nvp NameValuePair
			if err := sigsyaml.UnmarshalStrict([]byte(tt.yaml), &nvp); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			got, err := json.Marshal(nvp)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if string(got) != tt.wantJSON {
				t.Errorf("JSON = %s, want %s", got, tt.wantJSON)
			}
			if s := nvp.Value.String(); s != tt.wantString {
				t.Errorf("Value.String() = %q, want %q", s, tt.wantString)
			}
		})
	}
}
