package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// envNullSidecar makes the test binary serve as the null sidecar instead of running
// tests (TestMain).
const envNullSidecar = "OUTRIGGER_BENCH_NULL_SIDECAR"

// nullValue is what the null sidecar answers to every get.
var nullValue = []byte(`{"orderId":12345,"item":"widget","quantity":3}`)

// serveNullSidecar answers the state calls of BenchmarkStateSaveGet, over HTTP
// (net/http) and gRPC (the Dapr API), without doing anything: no parsing beyond the
// transport's own, no store. Driven by the benchmark's clients it shows the most that
// any sidecar built on these transports can reach on this machine, with the clients,
// the transport and Redis sharing its cores. It prints "<http addr> <grpc addr>".
func serveNullSidecar() error {
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(httpLn.Addr().String(), grpcLn.Addr().String())
	srv := grpc.NewServer()
	runtimev1.RegisterDaprServer(srv, nullDapr{})
	go func() { _ = srv.Serve(grpcLn) }()
	return http.Serve(httpLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodGet {
			w.Header().Set("ETag", "1")
			_, _ = w.Write(nullValue)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

type nullDapr struct {
	runtimev1.UnimplementedDaprServer
}

func (nullDapr) SaveState(context.Context, *runtimev1.SaveStateRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (nullDapr) GetState(context.Context, *runtimev1.GetStateRequest) (*runtimev1.GetStateResponse, error) {
	return &runtimev1.GetStateResponse{Data: nullValue, Etag: "1", Metadata: map[string]string{}}, nil
}

// startNullSidecar runs the null sidecar as a process of its own, as a sidecar is, and
// returns its HTTP and gRPC addresses.
func startNullSidecar(b *testing.B) (httpAddr, grpcAddr string) {
	l := startPeer(b, envNullSidecar)
	h, g, ok := strings.Cut(l, " ")
	if !ok {
		b.Fatalf("the null sidecar printed %q", l)
	}
	return h, g
}

// envNullProxy makes the test binary a null proxy to the URL it holds (TestMain).
const envNullProxy = "OUTRIGGER_BENCH_NULL_PROXY"

// serveNullProxy forwards every request to target with net/http's reverse proxy and
// nothing else, keeping as many idle connections as the load has; it prints its
// address.
func serveNullProxy(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = &http.Transport{MaxIdleConnsPerHost: invokeConns}
	return http.Serve(ln, p)
}
