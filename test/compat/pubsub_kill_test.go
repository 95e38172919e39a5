package compat

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

// brokers are the shared brokers the cross-process tests run on; each returns a
// Component manifest named "pubsub" whose unacknowledged messages come back within a
// few seconds.
func brokers(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite (the embedded default)": func(t *testing.T) string {
			return `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: "` + filepath.Join(t.TempDir(), "pubsub.db") + `"
  - name: visibilityTimeout
    value: 2s
`
		},
		"redis": func(t *testing.T) string {
			testproc.RequireServer(t, "Redis", "127.0.0.1:6379")
			return `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:6379
  - name: processingTimeout
    value: 2s
  - name: redeliverInterval
    value: 500ms
`
		},
	}
}

// holdingApp subscribes to topic; the first delivery of each event is held until
// release is closed, every delivery is counted by event id.
type holdingApp struct {
	srv     *httptest.Server
	port    int
	held    chan string // the id of the first held delivery
	release chan struct{}
	mu      sync.Mutex
	seen    map[string]int
	changed chan struct{}
}

func newHoldingApp(t *testing.T, topic string) *holdingApp {
	a := &holdingApp{held: make(chan string, 1), release: make(chan struct{}), seen: map[string]int{}, changed: make(chan struct{}, 1)}
	var once sync.Once
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/subscribe" {
			_, _ = w.Write([]byte(`[{"pubsubname":"pubsub","topic":"` + topic + `","route":"/events"}]`))
			return
		}
		b, _ := io.ReadAll(r.Body)
		var ev struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		_ = json.Unmarshal(b, &ev)
		a.mu.Lock()
		a.seen[ev.Data.ID]++
		a.mu.Unlock()
		select {
		case a.changed <- struct{}{}:
		default:
		}
		first := false
		once.Do(func() { first = true })
		if first {
			a.held <- ev.Data.ID
			select {
			case <-a.release:
			case <-r.Context().Done():
			}
		}
		_, _ = w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	t.Cleanup(func() {
		select {
		case <-a.release:
		default:
			close(a.release)
		}
		a.srv.Close()
	})
	a.port = a.srv.Listener.Addr().(*net.TCPAddr).Port
	return a
}

func (a *holdingApp) count(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[id]
}

// A subscriber's sidecar is killed with SIGKILL while its app holds a delivery, before
// the acknowledgement: the message is not lost, and the restarted sidecar delivers it
// again. Publisher and subscriber are separate sidecar processes sharing the broker.
func TestPubsubSubscriberSidecarKilledBeforeAck(t *testing.T) {
	for name, manifest := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			resources := testproc.WriteResources(t, map[string]string{"pubsub.yaml": manifest(t)})
			topic := "kill-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			app := newHoldingApp(t, topic)
			sub := testproc.Start(t, "killsub", resources, nil, "--app-port", strconv.Itoa(app.port))
			pub := testproc.Start(t, "killpub", resources, nil)
			sub.WaitHealthy(t)
			pub.WaitHealthy(t)
			waitSubscribed(t, sub, "pubsub", topic)

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			code, _, body := testproc.Do(t, http.MethodPost, pub.URL("/v1.0/publish/pubsub/"+topic), `{"id":"order-1"}`, "Content-Type", "application/json")
			if code != http.StatusNoContent {
				t.Fatalf("publish: %d %s", code, body)
			}
			var id string
			select {
			case id = <-app.held:
			case <-ctx.Done():
				t.Fatal("the message never reached the app")
			}
			if err := sub.Cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-sub.Done()
			close(app.release)

			restarted := testproc.Start(t, "killsub", resources, nil, "--app-port", strconv.Itoa(app.port))
			restarted.WaitHealthy(t)
			for app.count(id) < 2 {
				select {
				case <-app.changed:
				case <-time.After(50 * time.Millisecond):
				case <-ctx.Done():
					t.Fatalf("message %s was delivered %d time(s); it never came back after the SIGKILL", id, app.count(id))
				}
			}
		})
	}
}
