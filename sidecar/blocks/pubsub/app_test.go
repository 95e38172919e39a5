package pubsub

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger-dev/outrigger/sidecar/appchannel"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// A delivery the app refuses carries the app's status, for the retry policy's
// `matching`, as Dapr's deliveries do: the HTTP status, or the gRPC code.
func TestDeliveryCarriesTheAppStatus(t *testing.T) {
	type want struct {
		st   Status
		code int // -1: no status on the error (or no error)
		grpc bool
	}
	check := func(t *testing.T, st Status, err error, w want) {
		t.Helper()
		var se *resiliency.StatusError
		code, isGRPC := -1, false
		if errors.As(err, &se) {
			code, isGRPC = se.Code, se.GRPC
		}
		if st != w.st || code != w.code || isGRPC != w.grpc {
			t.Errorf("status %v, error %v; want %v with code %d (gRPC %v)", st, err, w.st, w.code, w.grpc)
		}
	}
	ev := map[string]any{"id": "1", "specversion": "1.0", "source": "s", "type": "t", "data": "x"}

	for _, tt := range []struct {
		status int
		body   string
		want   want
	}{
		{200, `{"status":"SUCCESS"}`, want{StatusSuccess, -1, false}},
		{200, `{"status":"RETRY"}`, want{StatusRetry, -1, false}},
		{404, "", want{StatusDrop, -1, false}},
		{503, "busy", want{StatusRetry, 503, false}},
		{500, "broken", want{StatusRetry, 500, false}},
	} {
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tt.status)
			_, _ = io.WriteString(w, tt.body)
		}))
		ch, err := appchannel.New(appchannel.Options{BaseURL: app.URL})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := HTTPApp{Channel: ch}.Deliver(ctx, &Delivery{Event: ev, Path: "orders"})
		cancel()
		app.Close()
		check(t, st, err, tt.want)
	}

	for _, tt := range []struct {
		err  error
		want want
	}{
		{status.Error(codes.Unavailable, "down"), want{StatusRetry, int(codes.Unavailable), true}},
		{status.Error(codes.Internal, "broken"), want{StatusRetry, int(codes.Internal), true}},
		{status.Error(codes.Unimplemented, "no"), want{StatusDrop, -1, false}},
		{errors.New("not a status"), want{StatusRetry, -1, false}},
	} {
		st, err := GRPCApp{Conn: failingConn{tt.err}}.Deliver(context.Background(), &Delivery{Event: ev, Path: "orders"})
		check(t, st, err, tt.want)
	}
}

// failingConn fails every call with err.
type failingConn struct{ err error }

func (c failingConn) Invoke(context.Context, string, any, any, ...grpc.CallOption) error {
	return c.err
}

func (c failingConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, c.err
}
