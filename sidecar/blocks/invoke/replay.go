package invoke

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// maxHeldAnswer bounds the failing answer kept in memory while its call is tried again;
// a larger one goes to the caller as it comes, and the call is not tried again.
const maxHeldAnswer = 1 << 20

// failing reports whether an answer's status makes the attempt a failure for the
// policies: Dapr's service invocation treats any status outside 200-399 so.
func failing(status int) bool { return status < 200 || status > 399 }

// runCall runs call under the runner for target and returns the last attempt's
// answer, as Dapr's service invocation does:
//   - An answer with a failing status is a failed attempt (resiliency.HTTPStatus): the
//     circuit breaker counts it, and a retry policy tries the call again when its
//     `matching` lists the status. When no attempt is left, that answer goes to the
//     caller as it is; an earlier one is dropped.
//   - The request body reaches every attempt whole. When the policy may retry and the
//     body's length is known, what the first attempt read of it is kept for the next
//     ones. Otherwise the body streams once, and no attempt follows one that read part
//     of it: the call would arrive truncated.
//
// call gets the body to send (nil when there is none).
func (b *Block) runCall(ctx context.Context, target resiliency.Target, body io.Reader, length int64,
	call func(ctx context.Context, body io.Reader) (*Response, error)) (*Response, error) {
	runner := b.runner()
	retry := resiliency.MayRetry(runner, target)
	bodies := newAttemptBodies(body, length, retry)
	var resp *Response // the last attempt's answer
	var last error
	err := runner.Run(ctx, target, func(ctx context.Context) error {
		send, ok := bodies.next()
		if !ok {
			return resiliency.Permanent(last)
		}
		if resp != nil {
			_ = resp.Body.Close()
			resp = nil
		}
		r, err := call(ctx, send)
		final := false // no other attempt can follow this one
		switch {
		case err != nil:
			if r != nil {
				_ = r.Body.Close()
			}
		case failing(r.Status):
			resp, err = r, resiliency.HTTPStatus(r.Status, nil)
			if !retry || bodies.spent() {
				final = true // the answer streams to the caller as it comes
			} else if herr := holdAnswer(r); errors.Is(herr, errAnswerTooLarge) {
				final = true
			} else if herr != nil {
				resp, err = nil, herr
			}
		default:
			resp = r
		}
		last = err
		if err != nil && (final || bodies.spent()) {
			return resiliency.Permanent(err)
		}
		return err
	})
	if err != nil {
		var se *resiliency.StatusError
		if resp != nil && errors.As(err, &se) {
			return resp, nil
		}
		if resp != nil {
			_ = resp.Body.Close()
		}
		return nil, err
	}
	return resp, nil
}

var errAnswerTooLarge = errors.New("the answer is too large to keep")

// holdAnswer reads a failing answer's body into memory, so that the connection is free
// while the call is tried again and the answer can still go to the caller. A body
// larger than maxHeldAnswer stays as it is (errAnswerTooLarge), after what was read.
func holdAnswer(r *Response) error {
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxHeldAnswer+1))
	if err != nil {
		_ = r.Body.Close()
		return err
	}
	if len(buf) > maxHeldAnswer {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return errAnswerTooLarge
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf))
	return nil
}

// attemptBodies gives each attempt of a call the request body to send.
type attemptBodies struct {
	replay  *replayBody // every attempt gets the whole body
	once    *onceBody   // the body streams once
	started bool
}

func newAttemptBodies(body io.Reader, length int64, retry bool) *attemptBodies {
	switch {
	case body == nil:
		return &attemptBodies{}
	case retry && length >= 0:
		return &attemptBodies{replay: &replayBody{src: body, buf: make([]byte, 0, min(length, 1<<20))}}
	}
	return &attemptBodies{once: &onceBody{r: body}}
}

// next is the body of the next attempt (nil when there is none); false when the body
// was partly sent and cannot be sent again.
func (a *attemptBodies) next() (io.Reader, bool) {
	switch {
	case a.replay != nil:
		return &replayReader{rb: a.replay}, true
	case a.once == nil:
		return nil, true
	case a.started && a.spent():
		return nil, false
	}
	a.started = true
	return a.once, true
}

// spent reports whether another attempt could not send the body whole.
func (a *attemptBodies) spent() bool {
	return a.once != nil && a.once.read.Load() > 0
}

// onceBody is a request body that streams once.
type onceBody struct {
	r    io.Reader
	read atomic.Int64
}

func (o *onceBody) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.read.Add(int64(n))
	return n, err
}

// replayBody keeps what was read of a request body, so that every attempt sends it
// from the start. An attempt that is over may still be reading (a transport that
// forwards the body after the answer came); each reader has its own place, and what
// any of them reads from the source is kept for all.
type replayBody struct {
	mu  sync.Mutex
	src io.Reader
	buf []byte
	err error // the source's last error: io.EOF once it is all read
}

type replayReader struct {
	rb  *replayBody
	off int
}

func (r *replayReader) Read(p []byte) (int, error) {
	rb := r.rb
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if r.off < len(rb.buf) {
		n := copy(p, rb.buf[r.off:])
		r.off += n
		return n, nil
	}
	if rb.err != nil {
		return 0, rb.err
	}
	n, err := rb.src.Read(p)
	rb.buf = append(rb.buf, p[:n]...)
	rb.err = err
	r.off += n
	return n, err
}
