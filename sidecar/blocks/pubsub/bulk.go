package pubsub

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// batcher gathers the messages of a bulk subscription into batches for the app. The
// component calls the handler once per message, up to max at once; each call waits for
// its batch to be delivered and returns its entry's outcome, so that acknowledgement
// stays per message.
type batcher struct {
	b       *Block
	r       *running
	p       pubsub.PubSub
	max     int
	await   time.Duration
	in      chan *bulkItem
	once    sync.Once
	entries atomic.Uint64
}

type bulkItem struct {
	msg  *pubsub.Message
	ev   map[string]any
	path string
	id   string
	done chan error
}

func newBatcher(b *Block, r *running, p pubsub.PubSub, s BulkSubscribe) *batcher {
	return &batcher{b: b, r: r, p: p, max: s.MaxMessages, await: s.MaxAwait, in: make(chan *bulkItem)}
}

// handler is the component's handler for the subscription; ctx is the subscription's.
func (bt *batcher) handler(ctx context.Context) pubsub.Handler {
	bt.once.Do(func() { go bt.loop(ctx) })
	return func(hctx context.Context, msg *pubsub.Message) error {
		bt.b.deliveries.Add(1)
		defer bt.b.deliveries.Done()
		ev, path, ok, err := bt.b.prepare(bt.r, msg)
		if err != nil || !ok {
			return bt.b.undeliverable(hctx, bt.r, bt.p, msg, ev, err)
		}
		it := &bulkItem{msg: msg, ev: ev, path: path, id: strconv.FormatUint(bt.entries.Add(1), 10), done: make(chan error, 1)}
		select {
		case bt.in <- it:
		case <-hctx.Done():
			return hctx.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case err := <-it.done:
			return err
		case <-hctx.Done():
			return hctx.Err()
		}
	}
}

// loop fills a batch until it holds max messages or the first has waited await, then
// delivers it.
func (bt *batcher) loop(ctx context.Context) {
	var batch []*bulkItem
	var timer <-chan time.Time
	flush := func() {
		if len(batch) > 0 {
			go bt.deliver(ctx, batch)
		}
		batch, timer = nil, nil
	}
	for {
		select {
		case it := <-bt.in:
			batch = append(batch, it)
			if len(batch) == 1 {
				timer = time.After(bt.await)
			}
			if len(batch) >= bt.max {
				flush()
			}
		case <-timer:
			flush()
		case <-ctx.Done():
			for _, it := range batch {
				it.done <- ctx.Err()
			}
			return
		}
	}
}

// deliver sends a batch, one app call per path, and settles each entry.
func (bt *batcher) deliver(ctx context.Context, batch []*bulkItem) {
	byPath := map[string][]*bulkItem{}
	var order []string
	for _, it := range batch {
		if _, ok := byPath[it.path]; !ok {
			order = append(order, it.path)
		}
		byPath[it.path] = append(byPath[it.path], it)
	}
	for _, path := range order {
		items := byPath[path]
		d := &BulkDelivery{ID: uuid.NewString(), Path: path, PubsubName: bt.r.sub.PubsubName, Topic: bt.r.sub.Topic}
		for _, it := range items {
			d.Entries = append(d.Entries, BulkEntry{EntryID: it.id, Event: it.ev, Metadata: it.msg.Metadata})
		}
		var statuses map[string]Status
		err := bt.b.runDelivery(ctx, bt.r, func(ctx context.Context) error {
			if bt.b.App == nil {
				return errNoApp
			}
			var err error
			statuses, err = bt.b.App.DeliverBulk(ctx, d)
			return err
		})
		for _, it := range items {
			var res error
			switch {
			case err != nil:
				res = err
			default:
				st, ok := statuses[it.id]
				switch {
				case !ok:
					res = fmt.Errorf("the app gave no status for entry %s of the batch", it.id)
				case st == StatusDrop:
					res = errDropped
				case st == StatusRetry:
					res = fmt.Errorf("the app answered RETRY for entry %s of the batch", it.id)
				}
			}
			it.done <- bt.b.settle(ctx, bt.r, bt.p, it.msg, it.ev, res)
		}
	}
}
