package runtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/memory"
	"github.com/outrigger-dev/outrigger/sidecar/compstore"
)

// gatedStore holds every Set until the test opens the gate.
type gatedStore struct {
	*memory.Store
	entered chan struct{}
	gate    chan struct{}
	saved   chan string
}

func (g *gatedStore) Set(ctx context.Context, req *state.SetRequest) error {
	g.entered <- struct{}{}
	<-g.gate
	if err := g.Store.Set(ctx, req); err != nil {
		return err
	}
	g.saved <- req.Key + "=" + string(req.Value)
	return nil
}

func freeConfig(t *testing.T, resources string) Config {
	t.Helper()
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	v := Flags(fs)
	if err := fs.Parse([]string{"--app-id", "graceful", "--resources-path", resources,
		"--dapr-http-port", "0", "--dapr-grpc-port", "0", "--dapr-public-port", "0", "--metrics-port", "0",
		"--dapr-internal-grpc-port", "0"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := v.Finish(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A shutdown lets the call in flight finish and answer before the sidecar stops: what
// the app was told was saved, is saved.
func TestShutdownLetsInFlightCallsFinish(t *testing.T) {
	dir := t.TempDir()
	manifest := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.gated\n  version: v1\n"
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	store := &gatedStore{Store: memory.New(), entered: make(chan struct{}, 1), gate: make(chan struct{}), saved: make(chan string, 1)}
	rt := New(freeConfig(t, dir), logr.Discard())
	rt.RegistryDir = t.TempDir()
	rt.Register = func(s *compstore.Store) {
		s.Registries.State = &components.Registry[state.Store]{}
		s.Registries.State.Register("state.gated", func() state.Store { return store })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	select {
	case <-rt.Ready:
	case err := <-done:
		t.Fatalf("sidecar stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("sidecar did not start")
	}

	url := fmt.Sprintf("http://%s/v1.0/state/statestore", rt.Addr("http"))
	saved := make(chan int, 1)
	go func() {
		resp, err := http.Post(url, "application/json", strings.NewReader(`[{"key":"order","value":1}]`))
		if err != nil {
			saved <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		saved <- resp.StatusCode
	}()
	select {
	case <-store.entered:
	case <-ctx.Done():
		t.Fatal("the save never reached the store")
	}
	rt.Shutdown()
	// Once the shutdown has closed the listener, the sidecar must still be waiting for
	// the save rather than have stopped under it.
	for {
		conn, err := net.DialTimeout("tcp", rt.Addr("http").String(), time.Second)
		if err != nil {
			break
		}
		_ = conn.Close()
		select {
		case <-ctx.Done():
			t.Fatal("the listener never closed")
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case err := <-done:
		t.Fatalf("sidecar stopped with a call in flight: %v", err)
	default:
	}
	close(store.gate)
	select {
	case code := <-saved:
		if code != http.StatusNoContent {
			t.Fatalf("in-flight save answered %d", code)
		}
	case <-ctx.Done():
		t.Fatal("in-flight save never answered")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("sidecar did not stop")
	}
	if got := <-store.saved; got != "graceful||order=1" {
		t.Errorf("the store saved %q", got)
	}
}
