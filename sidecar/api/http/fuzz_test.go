package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/api/apitest"
	httpapi "github.com/outrigger-dev/outrigger/sidecar/api/http"
)

// FuzzStateHTTP feeds arbitrary methods, targets, headers and bodies to the HTTP API
// over the real state block: it must never panic, and every failure must carry a Dapr
// error body.
//
//	go test ./sidecar/api/http -run '^$' -fuzz FuzzStateHTTP -fuzztime 30s
func FuzzStateHTTP(f *testing.F) {
	seeds := []struct {
		method, target, ifMatch, body string
	}{
		{"GET", "/v1.0/state/statestore/existing", "", ""},
		{"GET", "/v1.0/state/statestore/a%2Fb?consistency=strong&metadata.k=v", "", ""},
		{"GET", "/v1.0/state/statestore/", "", ""},
		{"DELETE", "/v1.0/state/statestore/existing?concurrency=first-write", "1", ""},
		{"DELETE", "/v1.0/state/statestore/a+b", "", ""},
		{"POST", "/v1.0/state/statestore", "", `[{"key":"k","value":{"a":[1,2,{"b":null}]},"etag":"1","metadata":{"ttlInSeconds":"5","contentType":"application/json"},"options":{"concurrency":"first-write","consistency":"strong"}}]`},
		{"POST", "/v1.0/state/statestore?metadata.ttlInSeconds=-1", "", `[{"key":"k","value":"v"}]`},
		{"PUT", "/v1.0/state/basic", "", `[{"key":"k","value":1,"metadata":{"ttlInSeconds":"99999999999"}}]`},
		{"POST", "/v1.0/state/statestore", "", `[{"key":`},
		{"POST", "/v1.0/state/statestore", "", `[{"key":"a||b"}]`},
		{"POST", "/v1.0/state/statestore/bulk", "", `{"keys":["existing","nothing",""],"parallelism":-3,"metadata":{"a":"b"}}`},
		{"POST", "/v1.0/state/statestore/transaction", "", `{"operations":[{"operation":"upsert","request":{"key":"t","value":1}},{"operation":"delete","request":{"key":"existing","etag":"x"}},{"operation":"merge"}],"metadata":{"m":"n"}}`},
		{"POST", "/v1.0/state/basic/transaction", "", `{"operations":[{"operation":"upsert","request":null}]}`},
		{"POST", "/v1.0-alpha1/state/statestore/query", "", `{"filter":{"AND":[{"EQ":{"name":"bob"}},{"IN":{"age":[30,40]}}]},"sort":[{"key":"age","order":"DESC"}],"page":{"limit":1,"token":"1"}}`},
		{"PUT", "/v1.0-alpha1/state/statestore/query", "", `{"filter":{"OR":[]},"page":{"limit":-1}}`},
		{"POST", "/v1.0-alpha1/state/basic/query", "", `{}`},
		{"POST", "/v1.0/state/statestore", "", `[{"key":"big","value":"` + strings.Repeat("x", 5000) + `"}]`},
		{"GET", "/v1.0/state//x/../y", "", ""},
		{"PUT", "/v1.0/metadata/k", "", "v"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.ifMatch, []byte(s.body))
	}

	block, _ := apitest.NewStateBlock(f, "myapp")
	h := httpapi.New(apitest.NewRuntime(testMetadata), api.Blocks{State: block}, api.Options{MaxBodySize: 4096}, logr.Discard())
	seedReq := httptest.NewRequest("POST", "/v1.0/state/statestore", strings.NewReader(seed))
	h.ServeHTTP(httptest.NewRecorder(), seedReq)

	f.Fuzz(func(t *testing.T, method, target, ifMatch string, body []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+target, bytes.NewReader(body))
		if err != nil || req.URL.Host != "localhost" {
			t.Skip()
		}
		req.RequestURI = req.URL.RequestURI()
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		if rec.Code >= 400 {
			var e struct {
				ErrorCode string `json:"errorCode"`
				Message   string `json:"message"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.ErrorCode == "" {
				t.Fatalf("%s %q: status %d without an error body: %q", method, target, rec.Code, rec.Body.Bytes())
			}
			if e.ErrorCode == "ERR_INTERNAL" {
				t.Fatalf("%s %q: unclassified error: %s", method, target, e.Message)
			}
		}
		if rec.Code == http.StatusOK && rec.Header().Get("Content-Type") == "application/json" && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %q: 200 with invalid JSON %q", method, target, rec.Body.Bytes())
		}
	})
}
