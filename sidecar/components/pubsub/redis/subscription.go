package redis

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// subscription is one consumer of a group on a stream. A single loop fetches: it reads
// new entries, and every redeliverInterval it reclaims the entries that have been
// pending on any consumer of the group for processingTimeout. It takes from Redis no
// more than it has free handler slots for, so that nothing it holds sits waiting, ages
// past processingTimeout and is reclaimed while still queued here.
type subscription struct {
	client    goredis.UniversalClient // everything but the blocking read
	reader    goredis.UniversalClient // the blocking read, closed to stop it
	opts      *options
	now       func() time.Time
	pruneIdle time.Duration
	log       logr.Logger

	stream, group, consumer string
	handler                 pubsub.Handler

	slots    chan struct{} // one per handler call running or about to
	handlers sync.WaitGroup

	mu sync.Mutex
	// inflight holds the ids being handled here: a handler that outlives
	// processingTimeout has its entry reclaimed, maybe by this very consumer, which must
	// not start it a second time alongside.
	inflight map[string]struct{}

	lastPrune time.Time
}

func (s *subscription) run(ctx context.Context) {
	defer s.finish()
	var (
		// A first pass at once picks up what consumers that died left behind.
		reclaiming  = s.opts.redelivery()
		cursor      = "0-0"
		nextReclaim time.Time
		retry       backoff
	)
	for {
		n, ok := s.acquire(ctx)
		if !ok {
			return
		}
		var (
			msgs []goredis.XMessage
			err  error
		)
		switch {
		case reclaiming:
			var next string
			msgs, next, err = s.client.XAutoClaim(ctx, &goredis.XAutoClaimArgs{
				Stream: s.stream, Group: s.group, Consumer: s.consumer,
				MinIdle: s.opts.ProcessingTimeout, Start: cursor, Count: int64(n),
			}).Result()
			if err == nil && next != "0-0" {
				cursor = next
				break
			}
			reclaiming, cursor = false, "0-0"
			nextReclaim = s.now().Add(s.opts.RedeliverInterval)
			if err == nil {
				s.prune(ctx)
			}
		case s.opts.redelivery() && !s.now().Before(nextReclaim):
			s.release(n)
			reclaiming = true
			continue
		default:
			block := maxBlock
			if s.opts.redelivery() {
				block = min(block, nextReclaim.Sub(s.now()))
			}
			// BLOCK 0 would wait for ever.
			block = max(block, time.Millisecond)
			var streams []goredis.XStream
			streams, err = s.reader.XReadGroup(ctx, &goredis.XReadGroupArgs{
				Group: s.group, Consumer: s.consumer, Streams: []string{s.stream, ">"},
				Count: int64(n), Block: block,
			}).Result()
			if errors.Is(err, goredis.Nil) {
				err = nil
			}
			for _, st := range streams {
				msgs = append(msgs, st.Messages...)
			}
		}
		if err != nil {
			s.release(n)
			if ctx.Err() != nil {
				return
			}
			s.recover(ctx, err)
			if !retry.wait(ctx) {
				return
			}
			continue
		}
		retry.reset()
		s.release(n - s.dispatch(ctx, msgs))
	}
}

// recover logs a failed read or reclaim, and recreates the group when it is gone (the
// stream was deleted, or the server lost its data) so that delivery resumes.
func (s *subscription) recover(ctx context.Context, err error) {
	if !isNoGroup(err) {
		if strings.Contains(strings.ToLower(err.Error()), "unknown command") {
			err = errors.Join(err, errors.New("pubsub.redis needs Redis 6.2 or later"))
		}
		s.log.Error(err, "Read from stream failed")
		return
	}
	s.log.Info("Consumer group is gone, recreating it")
	if err := createGroup(ctx, s.client, s.stream, s.group); err != nil && ctx.Err() == nil {
		s.log.Error(err, "Recreate consumer group failed")
	}
}

// acquire takes one handler slot, waiting for it, and then as many more as are free,
// up to queueDepth. It reports false when ctx ended first.
func (s *subscription) acquire(ctx context.Context) (int, bool) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}
	if ctx.Err() != nil {
		s.release(1)
		return 0, false
	}
	n := 1
	for n < cap(s.slots) && uint(n) < s.opts.QueueDepth {
		select {
		case s.slots <- struct{}{}:
			n++
		default:
			return n, true
		}
	}
	return n, true
}

func (s *subscription) release(n int) {
	for range n {
		<-s.slots
	}
}

// dispatch starts a handler call for each message and returns how many slots they
// took. Messages it does not start stay pending on this consumer, for a reclaim to
// deliver later.
func (s *subscription) dispatch(ctx context.Context, msgs []goredis.XMessage) int {
	used := 0
	for _, m := range msgs {
		if ctx.Err() != nil {
			break
		}
		if len(m.Values) == 0 {
			// Trimmed or deleted after it was delivered (Redis 6.2 still lists such an
			// entry as pending): there is nothing left to hand over, only the pending
			// entry to clear.
			s.ack(ctx, m.ID)
			continue
		}
		s.mu.Lock()
		_, busy := s.inflight[m.ID]
		if !busy {
			s.inflight[m.ID] = struct{}{}
		}
		s.mu.Unlock()
		if busy {
			continue
		}
		used++
		s.handlers.Add(1)
		go s.handle(ctx, m)
	}
	return used
}

// handle runs the handler on one message and acknowledges it when the handler
// succeeded (or always, with ackOnError).
func (s *subscription) handle(ctx context.Context, m goredis.XMessage) {
	defer s.handlers.Done()
	defer s.release(1)
	defer func() {
		s.mu.Lock()
		delete(s.inflight, m.ID)
		s.mu.Unlock()
	}()
	hctx := ctx
	if s.opts.redelivery() {
		// Past processingTimeout another consumer may take the message; as in Dapr,
		// the handler is told to stop rather than work on alongside it.
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, s.opts.ProcessingTimeout)
		defer cancel()
	}
	if err := s.handler(hctx, s.message(m)); err != nil {
		s.log.V(1).Info("Handler failed, the message stays pending", "id", m.ID, "error", err.Error())
		if !s.opts.AckOnError {
			return
		}
	}
	s.ack(ctx, m.ID)
}

// ack acknowledges an entry even when ctx has ended: the work is done, and an
// acknowledgement lost here would only mean a needless redelivery.
func (s *subscription) ack(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.client.XAck(ctx, s.stream, s.group, id).Err(); err != nil {
		s.log.Error(err, "Acknowledge message failed, it will be delivered again", "id", id)
	}
}

func (s *subscription) message(m goredis.XMessage) *pubsub.Message {
	msg := &pubsub.Message{Topic: s.stream}
	if v, ok := m.Values[fieldData].(string); ok {
		msg.Data = []byte(v)
	}
	if v, ok := m.Values[fieldContentType].(string); ok {
		msg.ContentType = v
	}
	if v, ok := m.Values[fieldMetadata].(string); ok && v != "" {
		if err := json.Unmarshal([]byte(v), &msg.Metadata); err != nil {
			// Dapr delivers such a message without its metadata too.
			s.log.Info("Message metadata is not a JSON object of strings, delivering without it", "id", m.ID, "error", err.Error())
			msg.Metadata = nil
		}
	}
	return msg
}

// prune removes the group's consumers that hold nothing and have been silent for
// pruneIdle: the leftovers of processes that died, whose entries were reclaimed.
func (s *subscription) prune(ctx context.Context) {
	now := s.now()
	if now.Sub(s.lastPrune) < pruneEvery {
		return
	}
	s.lastPrune = now
	consumers, err := s.client.XInfoConsumers(ctx, s.stream, s.group).Result()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error(err, "List consumers failed")
		}
		return
	}
	for _, c := range consumers {
		if c.Name == s.consumer || c.Pending > 0 || c.Idle < s.pruneIdle {
			continue
		}
		if err := dropIfEmpty.Run(ctx, s.client, []string{s.stream}, s.group, c.Name).Err(); err != nil && ctx.Err() == nil {
			s.log.Error(err, "Remove idle consumer failed", "idleConsumer", c.Name)
		}
	}
}

// finish waits for the handler calls, then removes this consumer from the group unless
// something is still pending on it, which a live consumer will reclaim.
func (s *subscription) finish() {
	s.handlers.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := dropIfEmpty.Run(ctx, s.client, []string{s.stream}, s.group, s.consumer).Err(); err != nil && !isNoGroup(err) {
		s.log.Error(err, "Remove consumer failed")
	}
}

// backoff spaces out retries after a failed read: 100ms, doubling up to 5s.
type backoff struct{ d time.Duration }

func (b *backoff) reset() { b.d = 0 }

func (b *backoff) wait(ctx context.Context) bool {
	b.d = min(max(2*b.d, 100*time.Millisecond), 5*time.Second)
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
