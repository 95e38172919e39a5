package invoke

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// onceBody is a request body that streams once. A retry policy may run a call again,
// but not after any of the body went out: the call would arrive with a truncated body.
// Such a retry fails with the previous attempt's error instead.
type onceBody struct {
	r    io.Reader
	read atomic.Int64
}

func (o *onceBody) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.read.Add(int64(n))
	return n, err
}

// runOnce runs call under the runner for target, with body wrapped so that no attempt
// after the first re-sends a body that was partly read. call gets the body to send
// (nil when there is none).
func (b *Block) runOnce(ctx context.Context, target resiliency.Target, body io.Reader, call func(ctx context.Context, body io.Reader) error) error {
	var ob *onceBody
	var send io.Reader
	if body != nil {
		ob = &onceBody{r: body}
		send = ob
	}
	var last error
	return b.runner().Run(ctx, target, func(ctx context.Context) error {
		if last != nil && ob != nil && ob.read.Load() > 0 {
			return resiliency.Permanent(last)
		}
		last = call(ctx, send)
		return last
	})
}
