package http_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/api/apitest"
	httpapi "github.com/outrigger-dev/outrigger/sidecar/api/http"
)

// BenchmarkSaveGet measures the transport's own cost of a save and a get (no network),
// over the real block and the in-memory store.
func BenchmarkSaveGet(b *testing.B) {
	block, _ := apitest.NewStateBlock(b, "myapp")
	h := httpapi.New(apitest.NewRuntime(testMetadata), api.Blocks{State: block}, api.Options{MaxBodySize: 4 << 20}, logr.Discard())
	const body = `[{"key":"order","value":{"id":42,"item":"book","qty":1}}]`
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1.0/state/statestore", strings.NewReader(body)))
		if rec.Code != 204 {
			b.Fatalf("save: %d %s", rec.Code, rec.Body)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1.0/state/statestore/order", nil))
		if rec.Code != 200 {
			b.Fatalf("get: %d", rec.Code)
		}
	}
}
