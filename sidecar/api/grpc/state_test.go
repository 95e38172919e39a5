package grpc_test

import (
	"bytes"
	"strings"
	"testing"

	daprclient "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/api/apitest"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

const store = apitest.FullStore

// stateClient serves the real state block over in-memory stores and connects the
// official SDK to it.
func stateClient(t *testing.T, opts api.Options) (daprclient.Client, runtimev1.DaprClient) {
	t.Helper()
	block, _ := apitest.NewStateBlock(t, "myapp")
	addr := serve(t, apitest.NewRuntime(testMetadata), api.Blocks{State: block}, opts)
	return sdkClient(t, addr), rawClient(t, addr)
}

// wantCode checks an SDK error's status code (the SDK wraps the status with %w).
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

func TestStateSDK(t *testing.T) {
	c, _ := stateClient(t, api.Options{})
	ctx := testContext(t)

	// Save and get: values are the app's bytes, with no JSON encoding.
	if err := c.SaveState(ctx, store, "order", []byte("raw bytes"), map[string]string{"contentType": "text/plain"}); err != nil {
		t.Fatal(err)
	}
	item, err := c.GetState(ctx, store, "order", nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(item.Value) != "raw bytes" || item.Etag == "" {
		t.Fatalf("GetState = %q, ETag %q", item.Value, item.Etag)
	}
	etag := item.Etag

	// A missing key is an empty item.
	missing, err := c.GetState(ctx, store, "nothing", nil)
	if err != nil || missing.Value != nil || missing.Etag != "" {
		t.Errorf("missing key: %+v, %v", missing, err)
	}

	// ETag conflict: Aborted, and nothing written.
	err = c.SaveStateWithETag(ctx, store, "order", []byte("v2"), "999999", nil)
	wantCode(t, "save with a stale ETag", err, codes.Aborted)
	err = c.SaveState(ctx, store, "order", []byte("v2"), nil, daprclient.WithConcurrency(daprclient.StateConcurrencyFirstWrite))
	wantCode(t, "first-write on an existing key", err, codes.Aborted)
	if item, _ := c.GetState(ctx, store, "order", nil); string(item.Value) != "raw bytes" {
		t.Errorf("after conflicts: %q", item.Value)
	}
	// The right ETag succeeds and changes it.
	if err := c.SaveStateWithETag(ctx, store, "order", []byte("v2"), etag, nil); err != nil {
		t.Fatalf("save with current ETag: %v", err)
	}
	item, _ = c.GetState(ctx, store, "order", nil)
	if string(item.Value) != "v2" || item.Etag == etag {
		t.Errorf("after ETag save: %q, ETag %q (was %q)", item.Value, item.Etag, etag)
	}

	// Bulk save and bulk get.
	err = c.SaveBulkState(ctx, store,
		&daprclient.SetStateItem{Key: "b1", Value: []byte(`{"n":1}`)},
		&daprclient.SetStateItem{Key: "b2", Value: []byte{0, 1, 2}},
	)
	if err != nil {
		t.Fatal(err)
	}
	items, err := c.GetBulkState(ctx, store, []string{"b1", "b2", "nothing"}, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*daprclient.BulkStateItem{}
	for _, it := range items {
		got[it.Key] = it
	}
	if len(items) != 3 || string(got["b1"].Value) != `{"n":1}` || !bytes.Equal(got["b2"].Value, []byte{0, 1, 2}) ||
		got["b1"].Etag == "" || got["nothing"].Value != nil || got["nothing"].Error != "" {
		t.Errorf("GetBulkState = %+v", items)
	}

	// Delete: a stale ETag is Aborted; the right one deletes.
	err = c.DeleteStateWithETag(ctx, store, "order", &daprclient.ETag{Value: etag}, nil, nil)
	wantCode(t, "delete with a stale ETag", err, codes.Aborted)
	item, _ = c.GetState(ctx, store, "order", nil)
	if err := c.DeleteStateWithETag(ctx, store, "order", &daprclient.ETag{Value: item.Etag}, nil, nil); err != nil {
		t.Fatalf("delete with current ETag: %v", err)
	}
	if item, _ := c.GetState(ctx, store, "order", nil); item.Value != nil {
		t.Errorf("after delete: %q", item.Value)
	}
	if err := c.DeleteState(ctx, store, "nothing", nil); err != nil {
		t.Errorf("delete missing key: %v", err)
	}
	if err := c.DeleteBulkState(ctx, store, []string{"b1", "b2"}, nil); err != nil {
		t.Fatal(err)
	}
	if items, _ := c.GetBulkState(ctx, store, []string{"b1", "b2"}, nil, 0); items[0].Value != nil || items[1].Value != nil {
		t.Errorf("after bulk delete: %+v %+v", items[0], items[1])
	}

	// Transaction: upsert and delete together.
	if err := c.SaveState(ctx, store, "gone", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	err = c.ExecuteStateTransaction(ctx, store, nil, []*daprclient.StateOperation{
		{Type: daprclient.StateOperationTypeUpsert, Item: &daprclient.SetStateItem{Key: "t1", Value: []byte(`{"name":"ann","age":30}`)}},
		{Type: daprclient.StateOperationTypeUpsert, Item: &daprclient.SetStateItem{Key: "t2", Value: []byte(`{"name":"bob","age":40}`)}},
		{Type: daprclient.StateOperationTypeDelete, Item: &daprclient.SetStateItem{Key: "gone"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if item, _ := c.GetState(ctx, store, "gone", nil); item.Value != nil {
		t.Errorf("transaction did not delete: %q", item.Value)
	}
	// A failing operation rolls the whole transaction back.
	err = c.ExecuteStateTransaction(ctx, store, nil, []*daprclient.StateOperation{
		{Type: daprclient.StateOperationTypeUpsert, Item: &daprclient.SetStateItem{Key: "t3", Value: []byte(`3`)}},
		{Type: daprclient.StateOperationTypeDelete, Item: &daprclient.SetStateItem{Key: "t1", Etag: &daprclient.ETag{Value: "999999"}}},
	})
	wantCode(t, "transaction with a stale ETag", err, codes.Internal)
	if item, _ := c.GetState(ctx, store, "t3", nil); item.Value != nil {
		t.Errorf("failed transaction wrote t3: %q", item.Value)
	}

	// Query.
	res, err := c.QueryStateAlpha1(ctx, store, `{"filter":{"EQ":{"name":"bob"}}}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Results[0].Key != "t2" || string(res.Results[0].Value) != `{"name":"bob","age":40}` || res.Results[0].Etag == "" {
		t.Errorf("QueryStateAlpha1 = %+v", res.Results)
	}
	res, err = c.QueryStateAlpha1(ctx, store, `{"filter":{"EQ":{"name":"nobody"}}}`, nil)
	if err != nil || len(res.Results) != 0 {
		t.Errorf("empty query: %+v, %v", res, err)
	}
}

func TestStateErrors(t *testing.T) {
	c, raw := stateClient(t, api.Options{MaxBodySize: 4096})
	ctx := testContext(t)

	tests := []struct {
		name       string
		call       func() error
		wantCode   codes.Code
		wantReason string
	}{
		{"unknown store", func() error { _, err := c.GetState(ctx, "nostore", "k", nil); return err }, codes.InvalidArgument, "DAPR_STATE_NOT_FOUND"},
		{"empty key", func() error {
			_, err := raw.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: store, States: []*commonv1.StateItem{{Value: []byte("v")}}})
			return err
		}, codes.InvalidArgument, "DAPR_STATE_ILLEGAL_KEY"},
		{"key with separator", func() error { _, err := c.GetState(ctx, store, "a||b", nil); return err }, codes.InvalidArgument, "DAPR_STATE_ILLEGAL_KEY"},
		{"transaction on store without transactions", func() error {
			return c.ExecuteStateTransaction(ctx, apitest.BasicStoreName, nil, []*daprclient.StateOperation{
				{Type: daprclient.StateOperationTypeUpsert, Item: &daprclient.SetStateItem{Key: "k", Value: []byte("v")}},
			})
		}, codes.Unimplemented, "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"},
		{"TTL on store without TTL", func() error {
			return c.SaveState(ctx, apitest.BasicStoreName, "k", []byte("v"), map[string]string{"ttlInSeconds": "60"})
		}, codes.InvalidArgument, "DAPR_STATE_TTL_NOT_SUPPORTED"},
		{"query on store without query API", func() error {
			_, err := c.QueryStateAlpha1(ctx, apitest.BasicStoreName, `{}`, nil)
			return err
		}, codes.Internal, "DAPR_STATE_QUERYING_NOT_SUPPORTED"},
		{"unknown transaction operation", func() error {
			_, err := raw.ExecuteStateTransaction(ctx, &runtimev1.ExecuteStateTransactionRequest{StoreName: store, Operations: []*runtimev1.TransactionalStateOperation{
				{OperationType: "merge", Request: &commonv1.StateItem{Key: "k"}},
			}})
			return err
		}, codes.Unimplemented, "ERR_NOT_SUPPORTED_STATE_OPERATION"},
		{"message over the limit", func() error {
			return c.SaveState(ctx, store, "k", []byte(strings.Repeat("x", 5000)), nil)
		}, codes.ResourceExhausted, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("no error")
			}
			st, _ := status.FromError(err)
			code, reason := errorInfo(t, st.Err())
			if code != tc.wantCode || reason != tc.wantReason {
				t.Errorf("got %v %q, want %v %q (%v)", code, reason, tc.wantCode, tc.wantReason, err)
			}
		})
	}
}

// TestStateOptionsReachTheStore checks the enum conversions of the options.
func TestStateOptionsReachTheStore(t *testing.T) {
	_, raw := stateClient(t, api.Options{})
	ctx := testContext(t)
	first := &commonv1.StateOptions{Concurrency: commonv1.StateOptions_CONCURRENCY_FIRST_WRITE, Consistency: commonv1.StateOptions_CONSISTENCY_STRONG}
	save := func() error {
		_, err := raw.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: store, States: []*commonv1.StateItem{{Key: "k", Value: []byte("v"), Options: first}}})
		return err
	}
	if err := save(); err != nil {
		t.Fatalf("first %s write: %v", state.FirstWrite, err)
	}
	wantCode(t, "second first-write", save(), codes.Aborted)
	_, err := raw.GetState(ctx, &runtimev1.GetStateRequest{StoreName: store, Key: "k", Consistency: commonv1.StateOptions_CONSISTENCY_EVENTUAL})
	if err != nil {
		t.Errorf("eventual get: %v", err)
	}
}
