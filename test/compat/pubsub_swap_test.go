package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

// A pub/sub component is swapped (its file rewritten) several times while messages are
// published through it and delivered from it: every message whose publish was
// acknowledged (204) reaches the app, and no publish or delivery fails because of the
// swaps.
func TestHotReloadPubsubSwapLosesNoMessage(t *testing.T) {
	db := filepath.Join(t.TempDir(), "pubsub.db")
	pubsubFile := func(poll string) string {
		return fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: %q
  - name: visibilityTimeout
    value: 2s
  - name: pollInterval
    value: %s
`, db, poll)
	}
	var mu sync.Mutex
	got := map[string]int{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/subscribe" {
			_, _ = w.Write([]byte(`[{"pubsubname":"pubsub","topic":"swap","route":"/swap"}]`))
			return
		}
		b, _ := io.ReadAll(r.Body)
		var ev struct {
			Data struct {
				N string `json:"n"`
			} `json:"data"`
		}
		_ = json.Unmarshal(b, &ev)
		mu.Lock()
		got[ev.Data.N]++
		mu.Unlock()
		_, _ = w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	t.Cleanup(app.Close)
	dir := testproc.WriteResources(t, map[string]string{"pubsub.yaml": pubsubFile("50ms")})
	sc := testproc.Start(t, "swapper", dir, nil, "--app-port", strconv.Itoa(app.Listener.Addr().(*net.TCPAddr).Port))
	sc.WaitHealthy(t)
	waitSubscribed(t, sc, "pubsub", "swap")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var acked []string
	var failed int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil && i < 600; i++ {
			n := strconv.Itoa(i)
			code, _, _ := testproc.Do(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/swap"), `{"n":"`+n+`"}`, "Content-Type", "application/json")
			if code == http.StatusNoContent {
				acked = append(acked, n)
			} else {
				failed++
			}
			time.Sleep(2 * time.Millisecond) // spread the publishes across the swaps
		}
	}()
	for i, poll := range []string{"40ms", "60ms", "30ms", "50ms"} {
		time.Sleep(150 * time.Millisecond)
		replaceFile(t, dir, "pubsub.yaml", pubsubFile(poll))
		// The next rewrite waits for this swap, so that each one really happens.
		pollUntil(ctx, t, "the swap", func() bool { return strings.Count(sc.Output(), "Component updated") > i })
	}
	<-done
	if failed > 0 {
		t.Errorf("%d publishes failed across the swaps", failed)
	}
	pollUntil(ctx, t, "every acknowledged message delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range acked {
			if got[n] == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, c := range got {
		dups += c - 1
	}
	t.Logf("%d messages acknowledged and delivered across 4 swaps, %d duplicates", len(acked), dups)
}
