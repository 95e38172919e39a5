package http_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/api/apitest"
	httpapi "github.com/outrigger-dev/outrigger/sidecar/api/http"
	stateblock "github.com/outrigger-dev/outrigger/sidecar/blocks/state"
	compstate "github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/memory"
)

const seed = `[
	{"key":"existing","value":{"a":1}},
	{"key":"greeting","value":"hello"},
	{"key":"a/b","value":1},
	{"key":"a b","value":2},
	{"key":"person1","value":{"name":"ann","age":30}},
	{"key":"person2","value":{"name":"bob","age":40}}
]`

// stateServer is the HTTP API over the real state block and in-memory stores, seeded.
func stateServer(t *testing.T, opts api.Options) (http.Handler, *memory.Store) {
	t.Helper()
	block, full := apitest.NewStateBlock(t, "myapp")
	rt := apitest.NewRuntime(testMetadata)
	// Seeded without the case's options (a body limit would refuse the seed).
	seeder := httpapi.New(rt, api.Blocks{State: block}, api.Options{}, logr.Discard())
	for _, store := range []string{apitest.FullStore, apitest.BasicStoreName} {
		if res := do(t, seeder, "POST", "/v1.0/state/"+store, seed, nil); res.status != 204 {
			t.Fatalf("seed %s: status %d: %s", store, res.status, res.body)
		}
	}
	return httpapi.New(rt, api.Blocks{State: block}, opts, logr.Discard()), full
}

// etagOf returns the ETag of a key of the full store.
func etagOf(t *testing.T, h http.Handler, key string) string {
	t.Helper()
	res := do(t, h, "GET", "/v1.0/state/statestore/"+key, "", nil)
	if res.status != 200 || res.header.Get("ETag") == "" {
		t.Fatalf("GET %s: status %d, ETag %q", key, res.status, res.header.Get("ETag"))
	}
	return res.header.Get("ETag")
}

// check is a request made after a case's request, to see its effect.
type check struct {
	method, target string
	wantStatus     int
	wantBody       string // exact, when set
}

func TestStateRoutes(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		target     string
		header     map[string]string
		body       string
		opts       api.Options
		wantStatus int
		wantCode   string
		wantBody   string            // exact, when set
		wantMsg    string            // substring of the error message, when set
		wantHeader map[string]string // "" means present, any value
		then       []check
	}{
		// Get.
		{name: "get object", method: "GET", target: "/v1.0/state/statestore/existing", wantStatus: 200, wantBody: `{"a":1}`,
			wantHeader: map[string]string{"ETag": "", "Content-Type": "application/json"}},
		{name: "get string is its JSON", method: "GET", target: "/v1.0/state/statestore/greeting", wantStatus: 200, wantBody: `"hello"`},
		{name: "get escaped slash in key", method: "GET", target: "/v1.0/state/statestore/a%2Fb", wantStatus: 200, wantBody: `1`},
		{name: "get plus is a space, as in Dapr", method: "GET", target: "/v1.0/state/statestore/a+b", wantStatus: 200, wantBody: `2`},
		{name: "get missing", method: "GET", target: "/v1.0/state/statestore/nothing", wantStatus: 204, wantBody: ""},
		{name: "get with consistency and metadata", method: "GET", target: "/v1.0/state/statestore/existing?consistency=strong&metadata.partitionKey=p", wantStatus: 200, wantBody: `{"a":1}`},
		{name: "get bad consistency", method: "GET", target: "/v1.0/state/statestore/existing?consistency=sometimes", wantStatus: 400, wantCode: "ERR_STATE_GET"},
		{name: "get unknown store", method: "GET", target: "/v1.0/state/nostore/existing", wantStatus: 400, wantCode: "ERR_STATE_STORE_NOT_FOUND", wantMsg: "nostore"},
		{name: "get empty key", method: "GET", target: "/v1.0/state/statestore/", wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST"},
		{name: "get key with separator", method: "GET", target: "/v1.0/state/statestore/a%7C%7Cb", wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST"},
		{name: "get trailing slash after key", method: "GET", target: "/v1.0/state/statestore/existing/", wantStatus: 200, wantBody: `{"a":1}`},

		// Save.
		{name: "save", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"k1","value":{"x": [1, 2]}},{"key":"k2","value":"v"}]`, wantStatus: 204,
			then: []check{{"GET", "/v1.0/state/statestore/k1", 200, `{"x":[1,2]}`}, {"GET", "/v1.0/state/statestore/k2", 200, `"v"`}}},
		{name: "save with PUT", method: "PUT", target: "/v1.0/state/statestore", body: `[{"key":"k1","value":3}]`, wantStatus: 204,
			then: []check{{"GET", "/v1.0/state/statestore/k1", 200, `3`}}},
		{name: "save without value stores null", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"k1"}]`, wantStatus: 204,
			then: []check{{"GET", "/v1.0/state/statestore/k1", 200, `null`}}},
		{name: "save trailing slash", method: "POST", target: "/v1.0/state/statestore/", body: `[{"key":"k1","value":1}]`, wantStatus: 204},
		{name: "save empty array", method: "POST", target: "/v1.0/state/statestore", body: `[]`, wantStatus: 204},
		{name: "save malformed JSON", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST", wantMsg: "failed deserializing HTTP body: unexpected end of JSON input"},
		{name: "save not an array", method: "POST", target: "/v1.0/state/statestore", body: `{"key":"k"}`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST", wantMsg: "cannot unmarshal object"},
		{name: "save empty body", method: "POST", target: "/v1.0/state/statestore", wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST"},
		{name: "save numeric metadata", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"k","value":1,"metadata":{"ttlInSeconds":5}}]`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST"},
		{name: "save empty key", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"","value":1}]`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST", wantMsg: `"key" is a required field`},
		{name: "save unknown store", method: "POST", target: "/v1.0/state/nostore", body: `[{"key":"k","value":1}]`, wantStatus: 400, wantCode: "ERR_STATE_STORE_NOT_FOUND"},
		{name: "save ETag match", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"existing","value":2,"etag":"{{etag}}"}]`, wantStatus: 204,
			then: []check{{"GET", "/v1.0/state/statestore/existing", 200, `2`}}},
		{name: "save ETag mismatch", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"existing","value":2,"etag":"12345"}]`, wantStatus: 409, wantCode: "ERR_STATE_SAVE",
			then: []check{{"GET", "/v1.0/state/statestore/existing", 200, `{"a":1}`}}},
		{name: "save invalid ETag", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"existing","value":2,"etag":"not-a-version"}]`, wantStatus: 400, wantCode: "ERR_STATE_SAVE"},
		{name: "save first-write on existing key", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"existing","value":2,"options":{"concurrency":"first-write"}}]`, wantStatus: 409, wantCode: "ERR_STATE_SAVE"},
		{name: "save first-write on new key", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"fresh","value":2,"options":{"concurrency":"first-write","consistency":"strong"}}]`, wantStatus: 204},
		{name: "save bad concurrency", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"k","value":2,"options":{"concurrency":"sometimes"}}]`, wantStatus: 400, wantCode: "ERR_STATE_SAVE"},
		{name: "save TTL", method: "POST", target: "/v1.0/state/statestore", body: `[{"key":"k","value":1,"metadata":{"ttlInSeconds":"60"}}]`, wantStatus: 204,
			then: []check{{method: "GET", target: "/v1.0/state/statestore/k", wantStatus: 200}}},
		{name: "save TTL from query", method: "POST", target: "/v1.0/state/statestore?metadata.ttlInSeconds=60", body: `[{"key":"k","value":1}]`, wantStatus: 204},
		{name: "save TTL on store without TTL", method: "POST", target: "/v1.0/state/basic", body: `[{"key":"k","value":1,"metadata":{"ttlInSeconds":"60"}}]`, wantStatus: 400, wantCode: "ERR_STATE_STORE_NOT_SUPPORTED", wantMsg: "TTL"},
		{name: "save TTL in query on store without TTL", method: "POST", target: "/v1.0/state/basic?metadata.ttlInSeconds=60", body: `[{"key":"k","value":1}]`, wantStatus: 400, wantCode: "ERR_STATE_STORE_NOT_SUPPORTED"},
		{name: "save body over the limit", method: "POST", target: "/v1.0/state/statestore", opts: api.Options{MaxBodySize: 64},
			body: `[{"key":"k","value":"` + strings.Repeat("x", 100) + `"}]`, wantStatus: 413, wantCode: "ERR_BODY_TOO_LARGE", wantMsg: "64 bytes"},
		{name: "save body at the limit", method: "POST", target: "/v1.0/state/statestore", opts: api.Options{MaxBodySize: 64},
			body: `[{"key":"k","value":"` + strings.Repeat("x", 64-len(`[{"key":"k","value":""}]`)) + `"}]`, wantStatus: 204},

		// Delete.
		{name: "delete", method: "DELETE", target: "/v1.0/state/statestore/existing", wantStatus: 204,
			then: []check{{"GET", "/v1.0/state/statestore/existing", 204, ""}}},
		{name: "delete missing", method: "DELETE", target: "/v1.0/state/statestore/nothing", wantStatus: 204},
		{name: "delete If-Match", method: "DELETE", target: "/v1.0/state/statestore/existing", header: map[string]string{"If-Match": "{{etag}}"}, wantStatus: 204,
			then: []check{{"GET", "/v1.0/state/statestore/existing", 204, ""}}},
		{name: "delete If-Match mismatch", method: "DELETE", target: "/v1.0/state/statestore/existing", header: map[string]string{"If-Match": "12345"}, wantStatus: 409, wantCode: "ERR_STATE_DELETE",
			then: []check{{"GET", "/v1.0/state/statestore/existing", 200, `{"a":1}`}}},
		{name: "delete with options", method: "DELETE", target: "/v1.0/state/statestore/existing?concurrency=first-write&consistency=eventual&metadata.x=y", wantStatus: 204},
		{name: "delete bad concurrency", method: "DELETE", target: "/v1.0/state/statestore/existing?concurrency=x", wantStatus: 400, wantCode: "ERR_STATE_DELETE"},
		{name: "delete unknown store", method: "DELETE", target: "/v1.0/state/nostore/existing", wantStatus: 400, wantCode: "ERR_STATE_STORE_NOT_FOUND"},
		{name: "delete empty key", method: "DELETE", target: "/v1.0/state/statestore/", wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST"},

		// Bulk get.
		{name: "bulk", method: "POST", target: "/v1.0/state/statestore/bulk", body: `{"keys":["greeting","nothing"],"parallelism":2}`, wantStatus: 200,
			wantBody: `[{"key":"greeting","data":"hello","etag":"{{etag:greeting}}"},{"key":"nothing"}]`},
		{name: "bulk with PUT", method: "PUT", target: "/v1.0/state/statestore/bulk", body: `{"keys":["existing"]}`, wantStatus: 200,
			wantBody: `[{"key":"existing","data":{"a":1},"etag":"{{etag}}"}]`},
		{name: "bulk no keys", method: "POST", target: "/v1.0/state/statestore/bulk", body: `{"keys":[]}`, wantStatus: 200, wantBody: `[]`},
		{name: "bulk malformed", method: "POST", target: "/v1.0/state/statestore/bulk", body: `{"keys":"k"}`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST"},
		{name: "bulk unknown store", method: "POST", target: "/v1.0/state/nostore/bulk", body: `{"keys":["k"]}`, wantStatus: 400, wantCode: "ERR_STATE_STORE_NOT_FOUND"},
		{name: "bulk key with separator", method: "POST", target: "/v1.0/state/statestore/bulk", body: `{"keys":["a||b"]}`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST"},

		// Transaction.
		{name: "transaction", method: "POST", target: "/v1.0/state/statestore/transaction",
			body: `{"operations":[{"operation":"upsert","request":{"key":"t1","value":{"v":1}}},{"operation":"delete","request":{"key":"existing"}}]}`, wantStatus: 204,
			then: []check{{"GET", "/v1.0/state/statestore/t1", 200, `{"v":1}`}, {"GET", "/v1.0/state/statestore/existing", 204, ""}}},
		{name: "transaction ETag mismatch is atomic", method: "POST", target: "/v1.0/state/statestore/transaction",
			body:       `{"operations":[{"operation":"upsert","request":{"key":"t1","value":1}},{"operation":"delete","request":{"key":"existing","etag":"12345"}}]}`,
			wantStatus: 500, wantCode: "ERR_STATE_TRANSACTION",
			then: []check{{"GET", "/v1.0/state/statestore/t1", 204, ""}, {"GET", "/v1.0/state/statestore/existing", 200, `{"a":1}`}}},
		{name: "transaction with TTL", method: "PUT", target: "/v1.0/state/statestore/transaction",
			body: `{"operations":[{"operation":"upsert","request":{"key":"t1","value":1,"metadata":{"ttlInSeconds":"30"}}}]}`, wantStatus: 204},
		{name: "transaction empty", method: "POST", target: "/v1.0/state/statestore/transaction", body: `{"operations":[]}`, wantStatus: 204},
		{name: "transaction unknown operation", method: "POST", target: "/v1.0/state/statestore/transaction",
			body: `{"operations":[{"operation":"merge","request":{"key":"t1"}}]}`, wantStatus: 400, wantCode: "ERR_NOT_SUPPORTED_STATE_OPERATION", wantMsg: "merge"},
		{name: "transaction malformed", method: "POST", target: "/v1.0/state/statestore/transaction", body: `{"operations":{}}`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST"},
		{name: "transaction malformed request", method: "POST", target: "/v1.0/state/statestore/transaction",
			body: `{"operations":[{"operation":"upsert","request":"k"}]}`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST", wantMsg: "operations[0].request"},
		{name: "transaction empty key", method: "POST", target: "/v1.0/state/statestore/transaction",
			body: `{"operations":[{"operation":"upsert","request":{"value":1}}]}`, wantStatus: 400, wantCode: "ERR_MALFORMED_REQUEST"},
		{name: "transaction on store without transactions", method: "POST", target: "/v1.0/state/basic/transaction",
			body: `{"operations":[{"operation":"upsert","request":{"key":"t1","value":1}}]}`, wantStatus: 500, wantCode: "ERR_STATE_STORE_NOT_SUPPORTED", wantMsg: "transactions"},
		{name: "transaction unknown store", method: "POST", target: "/v1.0/state/nostore/transaction", body: `{"operations":[]}`, wantStatus: 400, wantCode: "ERR_STATE_STORE_NOT_FOUND"},

		// Query.
		{name: "query", method: "POST", target: "/v1.0-alpha1/state/statestore/query",
			body: `{"filter":{"EQ":{"name":"bob"}}}`, wantStatus: 200,
			wantBody: `{"results":[{"key":"person2","data":{"name":"bob","age":40},"etag":"{{etag:person2}}"}]}`},
		{name: "query sorted with PUT", method: "PUT", target: "/v1.0-alpha1/state/statestore/query",
			body: `{"filter":{"GTE":{"age":30}},"sort":[{"key":"age","order":"DESC"}]}`, wantStatus: 200,
			wantBody: `{"results":[{"key":"person2","data":{"name":"bob","age":40},"etag":"{{etag:person2}}"},{"key":"person1","data":{"name":"ann","age":30},"etag":"{{etag:person1}}"}]}`},
		{name: "query no results", method: "POST", target: "/v1.0-alpha1/state/statestore/query", body: `{"filter":{"EQ":{"name":"nobody"}}}`, wantStatus: 204},
		{name: "query malformed", method: "POST", target: "/v1.0-alpha1/state/statestore/query", body: `{"filter":`, wantStatus: 400, wantCode: "ERR_STATE_QUERY"},
		{name: "query on store without query API", method: "POST", target: "/v1.0-alpha1/state/basic/query", body: `{}`, wantStatus: 500, wantCode: "ERR_STATE_STORE_NOT_SUPPORTED"},
		{name: "query unknown store", method: "POST", target: "/v1.0-alpha1/state/nostore/query", body: `{}`, wantStatus: 400, wantCode: "ERR_STATE_STORE_NOT_FOUND"},
		{name: "query route is alpha only", method: "POST", target: "/v1.0/state/statestore/query", body: `{}`, wantStatus: 404, wantCode: "ERR_DIRECT_INVOKE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := stateServer(t, tc.opts)
			expand := func(s string) string {
				for _, key := range []string{"greeting", "person1", "person2"} {
					if strings.Contains(s, "{{etag:"+key+"}}") {
						s = strings.ReplaceAll(s, "{{etag:"+key+"}}", etagOf(t, h, key))
					}
				}
				if strings.Contains(s, "{{etag}}") {
					s = strings.ReplaceAll(s, "{{etag}}", etagOf(t, h, "existing"))
				}
				return s
			}
			hdr := http.Header{}
			for k, v := range tc.header {
				hdr.Set(k, expand(v))
			}
			res := do(t, h, tc.method, tc.target, expand(tc.body), hdr)
			if res.status != tc.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", res.status, tc.wantStatus, res.body)
			}
			if got := res.errorCode(t); got != tc.wantCode {
				t.Errorf("errorCode = %q, want %q (body %s)", got, tc.wantCode, res.body)
			}
			if tc.wantMsg != "" {
				var e struct{ Message string }
				_ = json.Unmarshal(res.body, &e)
				if !strings.Contains(e.Message, tc.wantMsg) {
					t.Errorf("message %q does not contain %q", e.Message, tc.wantMsg)
				}
			}
			if tc.wantBody != "" || tc.wantStatus == 204 {
				if got, want := strings.TrimSpace(string(res.body)), expand(tc.wantBody); got != want {
					t.Errorf("body = %s, want %s", got, want)
				}
			}
			for k, v := range tc.wantHeader {
				if got := res.header.Get(k); got == "" || (v != "" && got != v) {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			for _, c := range tc.then {
				res := do(t, h, c.method, c.target, "", nil)
				if res.status != c.wantStatus {
					t.Errorf("then %s %s: status = %d, want %d (body %s)", c.method, c.target, res.status, c.wantStatus, res.body)
				}
				if c.wantBody != "" || c.wantStatus == 204 {
					if string(res.body) != c.wantBody {
						t.Errorf("then %s %s: body = %s, want %s", c.method, c.target, res.body, c.wantBody)
					}
				}
			}
		})
	}
}

// TestStateTTLMetadata checks that a read of an expiring item reports ttlExpireTime as a
// metadata.* header, as Dapr does, and that the item expires.
func TestStateTTLMetadata(t *testing.T) {
	h, full := stateServer(t, api.Options{})
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := now
	full.Clock = func() time.Time { return clock }

	if res := do(t, h, "POST", "/v1.0/state/statestore", `[{"key":"k","value":1,"metadata":{"ttlInSeconds":"60"}}]`, nil); res.status != 204 {
		t.Fatalf("save: %d %s", res.status, res.body)
	}
	res := do(t, h, "GET", "/v1.0/state/statestore/k", "", nil)
	if res.status != 200 {
		t.Fatalf("get: %d %s", res.status, res.body)
	}
	if got, want := res.header.Get("metadata.ttlExpireTime"), now.Add(time.Minute).Format(time.RFC3339); got != want {
		t.Errorf("metadata.ttlExpireTime = %q, want %q", got, want)
	}
	res = do(t, h, "POST", "/v1.0/state/statestore/bulk", `{"keys":["k"]}`, nil)
	var items []struct {
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(res.body, &items); err != nil || len(items) != 1 || items[0].Metadata["ttlExpireTime"] == "" {
		t.Errorf("bulk: %s (%v), want ttlExpireTime in metadata", res.body, err)
	}

	clock = now.Add(2 * time.Minute)
	if res := do(t, h, "GET", "/v1.0/state/statestore/k", "", nil); res.status != 204 {
		t.Errorf("after expiry: status %d, want 204", res.status)
	}
}

// TestStateKeysArePrefixed checks the <appid>||<key> layout in the store.
func TestStateKeysArePrefixed(t *testing.T) {
	_, full := stateServer(t, api.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for key, want := range map[string]bool{"myapp||existing": true, "existing": false} {
		resp, err := full.Get(ctx, &compstate.GetRequest{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp != nil; got != want {
			t.Errorf("store has %q: %v, want %v", key, got, want)
		}
	}
}

// TestStateNonJSONValues reads values that were not saved through HTTP (gRPC saves the
// app's bytes as they are): GET returns them as stored, bulk and query responses embed
// them as JSON strings rather than producing invalid JSON.
func TestStateNonJSONValues(t *testing.T) {
	block, _ := apitest.NewStateBlock(t, "myapp")
	h := httpapi.New(apitest.NewRuntime(testMetadata), api.Blocks{State: block}, api.Options{}, logr.Discard())
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := block.Save(ctx, apitest.FullStore, []stateblock.SaveRequest{
		{Key: "txt", Value: []byte("plain text")},
		{Key: "bin", Value: []byte{0xff, 0x00}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := do(t, h, "GET", "/v1.0/state/statestore/txt", "", nil); res.status != 200 || string(res.body) != "plain text" {
		t.Errorf("GET txt: %d %q", res.status, res.body)
	}
	res := do(t, h, "POST", "/v1.0/state/statestore/bulk", `{"keys":["txt","bin"]}`, nil)
	var items []struct {
		Key  string `json:"key"`
		Data any    `json:"data"`
	}
	if err := json.Unmarshal(res.body, &items); err != nil {
		t.Fatalf("bulk: %v: %s", err, res.body)
	}
	if len(items) != 2 || items[0].Data != "plain text" || items[1].Data != "/wA=" {
		t.Errorf("bulk = %+v, want the text as a string and the bytes as base64", items)
	}
}
