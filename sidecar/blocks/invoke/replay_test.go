package invoke

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/static"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// retryThrice retries every failed call up to three times, honouring Permanent.
type retryThrice struct{}

func (retryThrice) Run(ctx context.Context, t resiliency.Target, op func(context.Context) error) error {
	var err error
	for range 4 {
		if err = (resiliency.Direct{}).Run(ctx, t, op); err == nil {
			return nil
		}
		if !errors.Is(err, errPartial) {
			return err
		}
	}
	return err
}

var errPartial = errors.New("connection reset after part of the body")

// readingRemote reads some of the body and fails, as a connection lost mid-upload does.
type readingRemote struct{ calls int }

func (r *readingRemote) Call(_ context.Context, _ string, call *Call) (*Response, error) {
	r.calls++
	if call.Body != nil {
		_, _ = io.ReadFull(call.Body, make([]byte, 3))
	}
	return nil, errPartial
}

func (r *readingRemote) Conn(string, string, string) (grpc.ClientConnInterface, error) {
	return nil, errors.New("no conn")
}

// A retry policy never re-sends a body that was partly sent: the call would arrive
// truncated. A call without a body is retried as the policy says.
func TestRetryDoesNotReplayAPartlySentBody(t *testing.T) {
	for _, tt := range []struct {
		name  string
		body  io.Reader
		calls int
	}{
		{"body partly sent", strings.NewReader("order 42"), 1},
		{"no body", nil, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			remote := &readingRemote{}
			b := &Block{AppID: "a", Remote: remote, Runner: retryThrice{}, Resolver: static.Resolver{"b": "127.0.0.1:1"}}
			_, err := b.Invoke(context.Background(), &Request{Target: "b", Verb: http.MethodPost, Method: "orders", Header: http.Header{}, Body: tt.body, ContentLength: -1})
			if err == nil || remote.calls != tt.calls {
				t.Fatalf("calls = %d (want %d), err = %v", remote.calls, tt.calls, err)
			}
		})
	}
}
