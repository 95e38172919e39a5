// Package conformance is the behavioural suite every pub/sub component runs against its
// real broker: publish and receive, competing consumers in one group, fan-out across
// groups, redelivery after a failed handler, no redelivery after an acknowledged one,
// the concurrency bound, and no loss when the consuming process is killed with SIGKILL
// between delivery and acknowledgement. A component's test only says how to build an
// initialised instance.
package conformance

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// Config says how to build the component under test and what it promises.
type Config struct {
	// New returns an initialised instance whose subscriptions consume as the consumer
	// group named group (consumerID, or the broker's equivalent). Instances share the
	// broker. The suite closes each instance it gets.
	New func(t *testing.T, group string) pubsub.PubSub
	// Redelivery bounds how long the broker takes to deliver an unacknowledged message
	// again (after a handler error, or after its consumer died), with the settings New
	// uses. The suite waits this long, plus a margin, before failing.
	Redelivery time.Duration
	// NoCompetingConsumers marks a component whose consumers of one group do not
	// share the messages.
	NoCompetingConsumers bool
	// NotDurable marks a component that keeps nothing once its process dies (the
	// in-memory broker): the SIGKILL test is skipped.
	NotDurable bool
}

// waitMargin is added to every bound the suite waits on.
const waitMargin = 20 * time.Second

// childEnv carries the SIGKILL test's instructions to the child process.
const childEnv = "OUTRIGGER_PUBSUB_CONFORMANCE_CHILD"

// Run runs the suite. It must be called from a top-level test function; the SIGKILL
// test re-runs that function in a child process.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	if spec := os.Getenv(childEnv); spec != "" {
		runChild(t, cfg, spec)
		return
	}
	if cfg.Redelivery <= 0 {
		cfg.Redelivery = 10 * time.Second
	}
	open := func(t *testing.T, group string) pubsub.PubSub {
		t.Helper()
		p := cfg.New(t, group)
		t.Cleanup(func() {
			if err := p.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return p
	}

	t.Run("features are declared", func(t *testing.T) {
		p := open(t, uniq("g"))
		for _, f := range p.Features() {
			if f == "" {
				t.Fatalf("Features() holds an empty feature: %v", p.Features())
			}
		}
	})

	t.Run("publish then receive", func(t *testing.T) {
		ctx := testCtx(t, cfg.Redelivery)
		p := open(t, uniq("g"))
		topic := uniq("t")
		rec := newRecorder()
		subscribe(ctx, t, p, topic, rec.handler(nil))
		want := publishN(ctx, t, p, topic, 10)
		rec.waitAll(ctx, t, want)
		for _, m := range rec.messages() {
			if m.Topic != topic {
				t.Errorf("delivered message's Topic = %q, want %q", m.Topic, topic)
			}
		}
	})

	t.Run("binary payload", func(t *testing.T) {
		ctx := testCtx(t, cfg.Redelivery)
		p := open(t, uniq("g"))
		topic := uniq("t")
		rec := newRecorder()
		subscribe(ctx, t, p, topic, rec.handler(nil))
		payload := make([]byte, 256)
		for i := range payload {
			payload[i] = byte(i)
		}
		big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
		for _, d := range [][]byte{payload, []byte(big)} {
			if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: d, ContentType: "application/octet-stream"}); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
		rec.waitAll(ctx, t, []string{string(payload), big})
	})

	t.Run("competing consumers share a group", func(t *testing.T) {
		if cfg.NoCompetingConsumers {
			t.Skip("the component's consumers of one group do not share messages")
		}
		ctx := testCtx(t, cfg.Redelivery)
		group, topic := uniq("g"), uniq("t")
		a, b := open(t, group), open(t, group)
		rec := newRecorder()
		var byA, byB atomic.Int64
		subscribe(ctx, t, a, topic, rec.handler(func(*pubsub.Message) error { byA.Add(1); return nil }))
		subscribe(ctx, t, b, topic, rec.handler(func(*pubsub.Message) error { byB.Add(1); return nil }))
		want := publishN(ctx, t, a, topic, 40)
		rec.waitAll(ctx, t, want)
		if dup := rec.duplicates(); dup != 0 {
			t.Errorf("%d messages were delivered to the group more than once with no failure", dup)
		}
		t.Logf("split between the two consumers: %d and %d", byA.Load(), byB.Load())
	})

	t.Run("fan-out across groups", func(t *testing.T) {
		ctx := testCtx(t, cfg.Redelivery)
		topic := uniq("t")
		a, b := open(t, uniq("g")), open(t, uniq("g"))
		recA, recB := newRecorder(), newRecorder()
		subscribe(ctx, t, a, topic, recA.handler(nil))
		subscribe(ctx, t, b, topic, recB.handler(nil))
		want := publishN(ctx, t, a, topic, 10)
		recA.waitAll(ctx, t, want)
		recB.waitAll(ctx, t, want)
	})

	t.Run("a failed handler gets the message again", func(t *testing.T) {
		ctx := testCtx(t, cfg.Redelivery)
		p := open(t, uniq("g"))
		topic := uniq("t")
		rec := newRecorder()
		var failed sync.Map
		subscribe(ctx, t, p, topic, rec.handler(func(m *pubsub.Message) error {
			if _, again := failed.LoadOrStore(string(m.Data), true); !again {
				return fmt.Errorf("first delivery of %q fails on purpose", m.Data)
			}
			return nil
		}))
		want := publishN(ctx, t, p, topic, 3)
		// Each message must be handled twice: once failing, once acknowledged.
		rec.waitCount(ctx, t, want, 2)
	})

	t.Run("an acknowledged message is not delivered again", func(t *testing.T) {
		ctx := testCtx(t, cfg.Redelivery)
		group, topic := uniq("g"), uniq("t")
		first := open(t, group)
		rec := newRecorder()
		subCtx, stop := context.WithCancel(ctx)
		subscribe(subCtx, t, first, topic, rec.handler(nil))
		want := publishN(ctx, t, first, topic, 5)
		rec.waitAll(ctx, t, want)
		stop()
		if err := first.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		// A new consumer of the same group would get any message the first one had not
		// acknowledged, within the redelivery bound; it must get only what is published
		// now.
		second := open(t, group)
		rec2 := newRecorder()
		subscribe(ctx, t, second, topic, rec2.handler(nil))
		sentinel := uniq("sentinel")
		if err := second.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(sentinel)}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		rec2.waitAll(ctx, t, []string{sentinel})
		// Brokers that reclaim a dead consumer's messages do so after the redelivery
		// bound: give them that long to show a message that was not acknowledged.
		time.Sleep(cfg.Redelivery)
		for _, m := range rec2.messages() {
			if slices.Contains(want, string(m.Data)) {
				t.Errorf("acknowledged message %q was delivered again to the group", m.Data)
			}
		}
	})

	t.Run("handler calls are bounded by MaxConcurrency", func(t *testing.T) {
		ctx := testCtx(t, cfg.Redelivery)
		p := open(t, uniq("g"))
		topic := uniq("t")
		var running, peak atomic.Int64
		release := make(chan struct{})
		rec := newRecorder()
		if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, MaxConcurrency: 2}, rec.handler(func(*pubsub.Message) error {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		want := publishN(ctx, t, p, topic, 6)
		// Wait until two handlers are blocked, then give the component the chance to
		// start more before releasing them.
		for running.Load() < 2 {
			select {
			case <-ctx.Done():
				t.Fatalf("never had 2 handler calls at once: %d", running.Load())
			case <-time.After(10 * time.Millisecond):
			}
		}
		// Give an unbounded component the chance to start more calls; a bounded one
		// cannot, however long this is.
		time.Sleep(200 * time.Millisecond)
		close(release)
		rec.waitAll(ctx, t, want)
		if got := peak.Load(); got > 2 {
			t.Fatalf("%d handler calls ran at once, MaxConcurrency is 2", got)
		}
	})

	t.Run("no loss when the consumer is killed before acknowledging", func(t *testing.T) {
		if cfg.NotDurable {
			t.Skip("the component keeps nothing once its process dies")
		}
		ctx := testCtx(t, cfg.Redelivery)
		group, topic := uniq("g"), uniq("t")
		msg := uniq("m")

		top, _, _ := strings.Cut(t.Name(), "/")
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+top+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"="+group+" "+topic)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatalf("start the consuming child: %v", err)
		}
		killed := false
		t.Cleanup(func() {
			if !killed {
				_ = cmd.Process.Kill()
			}
			_ = cmd.Wait()
		})
		lines := make(chan string, 64)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		await := func(prefix string) string {
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("the child exited before printing %q", prefix)
					}
					if rest, found := strings.CutPrefix(l, prefix); found {
						return rest
					}
					t.Logf("child: %s", l)
				case <-ctx.Done():
					t.Fatalf("the child never printed %q: %v", prefix, ctx.Err())
				}
			}
		}
		await("SUBSCRIBED")
		pub := open(t, uniq("g"))
		if err := pub.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(msg)}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		if got := await("RECEIVED "); got != msg {
			t.Fatalf("child received %q, want %q", got, msg)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL the child: %v", err)
		}
		killed = true
		go func() { _, _ = io.Copy(io.Discard, out) }()

		// A new consumer of the group gets the message the dead one never acknowledged.
		next := open(t, group)
		rec := newRecorder()
		subscribe(ctx, t, next, topic, rec.handler(nil))
		rec.waitAll(ctx, t, []string{msg})
	})
}

// runChild is the consuming process of the SIGKILL test: it subscribes, says so,
// reports the first message it gets and then holds it unacknowledged until killed.
func runChild(t *testing.T, cfg Config, spec string) {
	group, topic, ok := strings.Cut(spec, " ")
	if !ok {
		t.Fatalf("%s=%q: want \"<group> <topic>\"", childEnv, spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := cfg.New(t, group)
	got := make(chan string, 1)
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(hctx context.Context, m *pubsub.Message) error {
		select {
		case got <- string(m.Data):
		default:
		}
		<-hctx.Done()
		return hctx.Err()
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	fmt.Println("SUBSCRIBED")
	select {
	case m := <-got:
		fmt.Println("RECEIVED " + m)
	case <-ctx.Done():
		t.Fatal("no message reached the child")
	}
	<-ctx.Done()
}

func testCtx(t *testing.T, redelivery time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*redelivery+waitMargin)
	t.Cleanup(cancel)
	return ctx
}

func uniq(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "conf-" + prefix + "-" + hex.EncodeToString(b)
}

func subscribe(ctx context.Context, t *testing.T, p pubsub.PubSub, topic string, h pubsub.Handler) {
	t.Helper()
	if err := p.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, h); err != nil {
		t.Fatalf("subscribe to %q: %v", topic, err)
	}
}

func publishN(ctx context.Context, t *testing.T, p pubsub.PubSub, topic string, n int) []string {
	t.Helper()
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("%s-msg-%03d", topic, i)
		if err := p.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(want[i]), ContentType: "text/plain"}); err != nil {
			t.Fatalf("publish message %d to %q: %v", i, topic, err)
		}
	}
	return want
}

// recorder counts what handlers were given.
type recorder struct {
	mu      sync.Mutex
	counts  map[string]int
	msgs    []*pubsub.Message
	changed chan struct{}
}

func newRecorder() *recorder {
	return &recorder{counts: map[string]int{}, changed: make(chan struct{}, 1)}
}

// handler records each delivery, then returns what then returns (nil when then is
// nil).
func (r *recorder) handler(then func(*pubsub.Message) error) pubsub.Handler {
	return func(ctx context.Context, m *pubsub.Message) error {
		// A subscription that has ended takes nothing more: what reaches it now goes
		// back to the broker, as a real app's sidecar would leave it.
		if err := ctx.Err(); err != nil {
			return err
		}
		r.mu.Lock()
		r.counts[string(m.Data)]++
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
		var err error
		if then != nil {
			err = then(m)
		}
		select {
		case r.changed <- struct{}{}:
		default:
		}
		return err
	}
}

func (r *recorder) messages() []*pubsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

func (r *recorder) duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.counts {
		n += c - 1
	}
	return n
}

func (r *recorder) waitAll(ctx context.Context, t *testing.T, want []string) {
	t.Helper()
	r.waitCount(ctx, t, want, 1)
}

// waitCount waits until every message of want was delivered at least n times.
func (r *recorder) waitCount(ctx context.Context, t *testing.T, want []string, n int) {
	t.Helper()
	for {
		r.mu.Lock()
		var missing []string
		for _, w := range want {
			if r.counts[w] < n {
				missing = append(missing, w)
			}
		}
		r.mu.Unlock()
		if len(missing) == 0 {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("%d of %d messages were not delivered %d time(s) in time, e.g. %q: %v", len(missing), len(want), n, missing[0], ctx.Err())
		}
	}
}
