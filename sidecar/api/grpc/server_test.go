package grpc_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	daprclient "github.com/dapr/go-sdk/client"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger-dev/outrigger/sidecar/api"
	"github.com/outrigger-dev/outrigger/sidecar/api/apitest"
	grpcapi "github.com/outrigger-dev/outrigger/sidecar/api/grpc"
)

const testTimeout = 10 * time.Second

var testMetadata = api.Metadata{
	ID:              "myapp",
	RuntimeVersion:  "1.2.3",
	EnabledFeatures: []string{"FeatureA"},
	Components: []api.Component{
		{Name: "statestore", Type: "state.in-memory", Version: "v1", Capabilities: []string{"ETAG", "TRANSACTIONAL"}},
	},
	Extended: map[string]string{"app": "x"},
	AppConnectionProperties: api.AppConnectionProperties{
		Port: 8080, Protocol: "grpc", ChannelAddress: "127.0.0.1", MaxConcurrency: 4,
		Health: &api.AppHealth{HealthProbeInterval: "5s", HealthProbeTimeout: "500ms", HealthThreshold: 3},
	},
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// serve starts the API on a free loopback port and returns its address.
func serve(t *testing.T, rt api.Runtime, blocks api.Blocks, opts api.Options) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpcapi.New(rt, blocks, opts, logr.Discard())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// sdkClient connects the official Dapr Go SDK to addr.
func sdkClient(t *testing.T, addr string) daprclient.Client {
	t.Helper()
	c, err := daprclient.NewClientWithAddressContext(testContext(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// rawClient is the generated client, for what the SDK does not expose.
func rawClient(t *testing.T, addr string) runtimev1.DaprClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return runtimev1.NewDaprClient(conn)
}

// errorInfo returns the status code and ErrorInfo reason of a gRPC error.
func errorInfo(t *testing.T, err error) (codes.Code, string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a gRPC status: %v", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.GetDomain() != "dapr.io" {
				t.Errorf("ErrorInfo domain = %q, want dapr.io", info.GetDomain())
			}
			return st.Code(), info.GetReason()
		}
	}
	return st.Code(), ""
}

func TestMetadata(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	addr := serve(t, rt, api.Blocks{}, api.Options{})
	c := sdkClient(t, addr)
	ctx := testContext(t)

	if err := c.SetMetadata(ctx, "color", "blue"); err != nil {
		t.Fatal(err)
	}
	// The SDK refuses an empty key itself; Dapr ignores one.
	if _, err := rawClient(t, addr).SetMetadata(ctx, &runtimev1.SetMetadataRequest{Value: "ignored"}); err != nil {
		t.Fatal(err)
	}
	md, err := c.GetMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md.ID != "myapp" {
		t.Errorf("ID = %q", md.ID)
	}
	wantExt := map[string]string{"app": "x", "color": "blue", "daprRuntimeVersion": "1.2.3"}
	if len(md.ExtendedMetadata) != len(wantExt) {
		t.Errorf("ExtendedMetadata = %v, want %v", md.ExtendedMetadata, wantExt)
	}
	for k, v := range wantExt {
		if md.ExtendedMetadata[k] != v {
			t.Errorf("ExtendedMetadata[%q] = %q, want %q", k, md.ExtendedMetadata[k], v)
		}
	}
	if len(md.RegisteredComponents) != 1 {
		t.Fatalf("RegisteredComponents = %v", md.RegisteredComponents)
	}
	rc := md.RegisteredComponents[0]
	if rc.Name != "statestore" || rc.Type != "state.in-memory" || rc.Version != "v1" || strings.Join(rc.Capabilities, ",") != "ETAG,TRANSACTIONAL" {
		t.Errorf("component = %+v", rc)
	}

	raw, err := rawClient(t, addr).GetMetadata(ctx, &runtimev1.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if raw.GetRuntimeVersion() != "1.2.3" || raw.GetActorRuntime().GetRuntimeStatus() != runtimev1.ActorRuntime_DISABLED {
		t.Errorf("runtime version %q, actor runtime %v", raw.GetRuntimeVersion(), raw.GetActorRuntime())
	}
	acp := raw.GetAppConnectionProperties()
	if acp.GetPort() != 8080 || acp.GetProtocol() != "grpc" || acp.GetMaxConcurrency() != 4 || acp.GetHealth().GetHealthThreshold() != 3 {
		t.Errorf("app connection properties = %v", acp)
	}
}

func TestShutdown(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	c := sdkClient(t, serve(t, rt, api.Blocks{}, api.Options{}))
	ctx := testContext(t)
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rt.ShutdownCalled():
	case <-ctx.Done():
		t.Fatal("Shutdown was not called")
	}
}

func TestUnimplemented(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	c := sdkClient(t, serve(t, rt, api.Blocks{}, api.Options{}))
	ctx := testContext(t)

	_, err := c.GetSecret(ctx, "store", "key", nil)
	code, reason := errorInfo(t, errors.Unwrap(err))
	if code != codes.Unimplemented || reason != "ERR_NOT_IMPLEMENTED" {
		t.Errorf("GetSecret: code %v reason %q (%v), want Unimplemented ERR_NOT_IMPLEMENTED", code, reason, err)
	}
	if !strings.Contains(err.Error(), "dapr.proto.runtime.v1.Dapr/GetSecret is not implemented by Outrigger yet") {
		t.Errorf("GetSecret: message %q does not name the RPC", err)
	}

	// A streaming RPC.
	stream, err := rawClient(t, serve(t, rt, api.Blocks{}, api.Options{})).SubscribeConfiguration(ctx, &runtimev1.SubscribeConfigurationRequest{StoreName: "cfg"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("SubscribeConfiguration: %v, want Unimplemented", err)
	}
}

func TestAPIToken(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	addr := serve(t, rt, api.Blocks{}, api.Options{APIToken: "s3cret"})
	ctx := testContext(t)

	raw := rawClient(t, addr)
	_, err := raw.GetMetadata(ctx, &runtimev1.GetMetadataRequest{})
	if code, reason := errorInfo(t, err); code != codes.Unauthenticated || reason != "ERR_UNAUTHORIZED" {
		t.Errorf("without token: %v %q, want Unauthenticated ERR_UNAUTHORIZED", code, reason)
	}
	_, err = raw.GetMetadata(metadata.AppendToOutgoingContext(ctx, "dapr-api-token", "wrong"), &runtimev1.GetMetadataRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("wrong token: %v, want Unauthenticated", err)
	}
	stream, err := raw.SubscribeConfiguration(ctx, &runtimev1.SubscribeConfigurationRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("stream without token: %v, want Unauthenticated", err)
	}

	c := sdkClient(t, addr)
	c.WithAuthToken("s3cret")
	if _, err := c.GetMetadata(ctx); err != nil {
		t.Errorf("SDK with token: %v", err)
	}
}

func TestMaxBodySize(t *testing.T) {
	rt := apitest.NewRuntime(testMetadata)
	raw := rawClient(t, serve(t, rt, api.Blocks{}, api.Options{MaxBodySize: 1024}))
	_, err := raw.SetMetadata(testContext(t), &runtimev1.SetMetadataRequest{Key: "k", Value: strings.Repeat("x", 2048)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized message: %v, want ResourceExhausted", err)
	}
}

func TestAPILogging(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	log := funcr.New(func(_, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, args)
	}, funcr.Options{})
	rt := apitest.NewRuntime(testMetadata)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpcapi.New(rt, api.Blocks{}, api.Options{EnableAPILogging: true}, log)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	raw := rawClient(t, lis.Addr().String())
	ctx := testContext(t)
	if _, err := raw.GetMetadata(ctx, &runtimev1.GetMetadataRequest{}); err != nil {
		t.Fatal(err)
	}
	_, _ = raw.GetSecret(ctx, &runtimev1.GetSecretRequest{})

	mu.Lock()
	defer mu.Unlock()
	want := []string{
		`"msg"="gRPC API called" "method"="/dapr.proto.runtime.v1.Dapr/GetMetadata" "code"="OK"`,
		`"msg"="gRPC API called" "method"="/dapr.proto.runtime.v1.Dapr/GetSecret" "code"="Unimplemented"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("lines = %q", lines)
	}
	for i := range want {
		if !strings.Contains(lines[i], want[i]) || !strings.Contains(lines[i], `"duration"=`) {
			t.Errorf("line %d = %s, want %s and a duration", i, lines[i], want[i])
		}
	}
}
