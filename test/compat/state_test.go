// Package compat drives `outrigger sidecar`, started as a process from the built binary,
// with the official Dapr Go SDK and plain HTTP, as apps written for Dapr do.
package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/internal/testproc"
)

// stores are the state stores the SDK tests run against: the embedded one always,
// the real servers when they answer.
func stores(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string {
			return fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: %q
`, filepath.Join(t.TempDir(), "state.db"))
		},
		"redis": func(t *testing.T) string {
			testproc.RequireServer(t, "Redis", "127.0.0.1:6379")
			return testproc.RedisStateStore
		},
	}
}

func sdkClient(t *testing.T, s *testproc.Sidecar) dapr.Client {
	t.Helper()
	c, err := dapr.NewClientWithAddress(fmt.Sprintf("127.0.0.1:%d", s.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestSDKStateAgainstSidecarProcess(t *testing.T) {
	for name, component := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := testproc.Start(t, "sdkapp-"+name, testproc.WriteResources(t, map[string]string{"statestore.yaml": component(t)}), nil)
			s.WaitHealthy(t)
			c := sdkClient(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			key := fmt.Sprintf("order-%d", time.Now().UnixNano())

			// Save and get.
			if err := c.SaveState(ctx, "statestore", key, []byte(`{"orderId":1}`), nil); err != nil {
				t.Fatal(err)
			}
			item, err := c.GetState(ctx, "statestore", key, nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(item.Value) != `{"orderId":1}` || item.Etag == "" {
				t.Fatalf("got %q etag %q", item.Value, item.Etag)
			}

			// An update with the current ETag wins; a second one with the stale ETag
			// conflicts, as Dapr reports it: gRPC Aborted.
			if err := c.SaveStateWithETag(ctx, "statestore", key, []byte(`{"orderId":2}`), item.Etag, nil); err != nil {
				t.Fatalf("save with current etag: %v", err)
			}
			err = c.SaveStateWithETag(ctx, "statestore", key, []byte(`{"orderId":3}`), item.Etag, nil)
			if status.Code(err) != codes.Aborted {
				t.Fatalf("save with stale etag: %v, want Aborted", err)
			}
			err = c.DeleteStateWithETag(ctx, "statestore", key, &dapr.ETag{Value: item.Etag}, nil, nil)
			if status.Code(err) != codes.Aborted {
				t.Fatalf("delete with stale etag: %v, want Aborted", err)
			}

			// Bulk.
			other := key + "-b"
			if err := c.SaveBulkState(ctx, "statestore", &dapr.SetStateItem{Key: other, Value: []byte(`"b"`)}); err != nil {
				t.Fatal(err)
			}
			bulk, err := c.GetBulkState(ctx, "statestore", []string{key, other, key + "-missing"}, nil, 2)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, b := range bulk {
				got[b.Key] = string(b.Value)
			}
			if got[key] != `{"orderId":2}` || got[other] != `"b"` || got[key+"-missing"] != "" || len(bulk) != 3 {
				t.Errorf("bulk = %v", got)
			}

			// A transaction: upsert one, delete another, atomically.
			err = c.ExecuteStateTransaction(ctx, "statestore", nil, []*dapr.StateOperation{
				{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: key + "-tx", Value: []byte(`"tx"`)}},
				{Type: dapr.StateOperationTypeDelete, Item: &dapr.SetStateItem{Key: other}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if item, _ := c.GetState(ctx, "statestore", key+"-tx", nil); string(item.Value) != `"tx"` {
				t.Errorf("transaction upsert not applied: %q", item.Value)
			}
			if item, _ := c.GetState(ctx, "statestore", other, nil); len(item.Value) != 0 {
				t.Errorf("transaction delete not applied: %q", item.Value)
			}

			// Delete.
			if err := c.DeleteState(ctx, "statestore", key, nil); err != nil {
				t.Fatal(err)
			}
			if item, _ := c.GetState(ctx, "statestore", key, nil); len(item.Value) != 0 {
				t.Errorf("deleted key still reads %q", item.Value)
			}

			// Unknown store: Dapr's error code travels in the gRPC status.
			_, err = c.GetState(ctx, "nostore", key, nil)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "nostore") {
				t.Errorf("unknown store: %v", err)
			}

			md, err := c.GetMetadata(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if md.ID != "sdkapp-"+name || len(md.RegisteredComponents) != 1 || md.RegisteredComponents[0].Name != "statestore" {
				t.Errorf("metadata = %+v", md)
			}
		})
	}
}

// The same store reads the same through HTTP: keys are shared between the APIs.
func TestHTTPAndGRPCShareState(t *testing.T) {
	s := testproc.Start(t, "shared", testproc.WriteResources(t, map[string]string{"statestore.yaml": stores(t)["sqlite"](t)}), nil)
	s.WaitHealthy(t)
	code, _, body := testproc.Do(t, http.MethodPost, s.URL("/v1.0/state/statestore"), `[{"key":"k","value":{"n":1}}]`, "Content-Type", "application/json")
	if code != http.StatusNoContent {
		t.Fatalf("save: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	item, err := sdkClient(t, s).GetState(ctx, "statestore", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if err := json.Unmarshal(item.Value, &v); err != nil || v["n"] != 1 {
		t.Errorf("gRPC read %q (%v)", item.Value, err)
	}
	code, hdr, body := testproc.Do(t, http.MethodGet, s.URL("/v1.0/state/statestore/k"), "")
	if code != http.StatusOK || hdr.Get("ETag") != item.Etag || body != string(item.Value) {
		t.Errorf("HTTP read %d etag %q body %q; gRPC etag %q", code, hdr.Get("ETag"), body, item.Etag)
	}
}
