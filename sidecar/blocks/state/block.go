package state

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/outrigger-dev/outrigger/sidecar/apierrors"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/resiliency"
)

// Operation names of the resiliency targets, for policies, metrics and traces.
const (
	OpGet         = "state.get"
	OpBulkGet     = "state.bulkget"
	OpSet         = "state.set"
	OpDelete      = "state.delete"
	OpTransaction = "state.transaction"
	OpQuery       = "state.query"
)

// Transaction operation types, Dapr's.
const (
	OperationUpsert = "upsert"
	OperationDelete = "delete"
)

// DefaultBulkParallelism bounds the store calls of one bulk request when neither the
// request nor the Block says. Dapr runs them all at once; a bound keeps one request
// for ten thousand keys from opening ten thousand connections.
const DefaultBulkParallelism = 100

// Block is the state building block.
type Block struct {
	AppID     string
	Namespace string
	Stores    Stores
	// Runner is the resiliency seam every store call goes through; nil runs calls as
	// they are.
	Runner resiliency.Runner
	// BulkParallelism bounds the concurrent store calls of one bulk get, save or
	// delete when the request does not; 0 means DefaultBulkParallelism.
	BulkParallelism int
}

var _ API = (*Block)(nil)

// acquired is a store taken for one call.
type acquired struct {
	name    string
	h       Handle
	prefix  string
	release func()
}

// acquire finds the store, or Dapr's error for a missing one. The caller must call
// release when err is nil.
func (b *Block) acquire(store string) (*acquired, error) {
	if b.Stores == nil {
		return nil, b.errNotConfigured(store)
	}
	h, release, ok := b.Stores.Acquire(store)
	if release == nil {
		release = func() {}
	}
	if !ok || h.Store == nil {
		// Released even when not ok: harmless for a no-op, and no leak for an
		// implementation that hands one back anyway.
		release()
		if len(b.Stores.Names()) == 0 {
			return nil, b.errNotConfigured(store)
		}
		return nil, b.errNotFound(store)
	}
	prefix, err := b.keyPrefix(store, h)
	if err != nil {
		release()
		return nil, err
	}
	return &acquired{name: store, h: h, prefix: prefix, release: release}, nil
}

func (b *Block) run(ctx context.Context, store, op string, fn func(ctx context.Context) error) error {
	r := b.Runner
	if r == nil {
		r = resiliency.Direct{}
	}
	return r.Run(ctx, resiliency.Target{Kind: "component", Name: store, Direction: resiliency.Outbound, Operation: op}, fn)
}

func (b *Block) parallelism(requested, n int) int {
	p := requested
	if p <= 0 {
		p = b.BulkParallelism
	}
	if p <= 0 {
		p = DefaultBulkParallelism
	}
	return min(p, max(n, 1))
}

// Get reads one key; a missing key is nil, nil.
func (b *Block) Get(ctx context.Context, store string, req GetRequest) (*Item, error) {
	a, err := b.acquire(store)
	if err != nil {
		return nil, err
	}
	defer a.release()
	key, err := storeKey(store, a.prefix, req.Key)
	if err != nil {
		return nil, err
	}
	if err := checkConsistency(apierrors.StateGet, req.Consistency); err != nil {
		return nil, err
	}
	var resp *state.GetResponse
	err = b.run(ctx, store, OpGet, func(ctx context.Context) error {
		var err error
		resp, err = a.h.Store.Get(ctx, &state.GetRequest{Key: key, Consistency: req.Consistency, Metadata: req.Metadata})
		return err
	})
	if err != nil {
		return nil, storeError(apierrors.StateGet, err, "fail to get %s from state store %s", req.Key, store)
	}
	// Dapr answers 204 for a stored nil as for a missing key.
	if resp == nil || resp.Data == nil {
		return nil, nil
	}
	return &Item{
		Key:         req.Key,
		Value:       resp.Data,
		ETag:        resp.ETag,
		ContentType: resp.ContentType,
		Metadata:    responseMetadata(resp.Metadata, resp.Expiry),
	}, nil
}

// BulkGet reads several keys concurrently. A key the store fails on carries the error
// in its item; the request fails only for what fails them all (store, keys).
func (b *Block) BulkGet(ctx context.Context, store string, req BulkGetRequest) ([]BulkItem, error) {
	a, err := b.acquire(store)
	if err != nil {
		return nil, err
	}
	defer a.release()
	keys := make([]string, len(req.Keys))
	for i, k := range req.Keys {
		if keys[i], err = storeKey(store, a.prefix, k); err != nil {
			return nil, err
		}
	}
	out := make([]BulkItem, len(keys))
	sem := make(chan struct{}, b.parallelism(req.Parallelism, len(keys)))
	var wg sync.WaitGroup
	for i := range keys {
		out[i].Key = req.Keys[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, apierrors.Wrap(apierrors.StateBulkGet, ctx.Err(), "bulk get from state store %s", store)
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var resp *state.GetResponse
			err := b.run(ctx, store, OpBulkGet, func(ctx context.Context) error {
				var err error
				resp, err = a.h.Store.Get(ctx, &state.GetRequest{Key: keys[i], Metadata: req.Metadata})
				return err
			})
			switch {
			case err != nil:
				out[i].Error = err.Error()
			case resp != nil:
				out[i].Value = resp.Data
				out[i].ETag = resp.ETag
				out[i].ContentType = resp.ContentType
				out[i].Metadata = responseMetadata(resp.Metadata, resp.Expiry)
			}
		}()
	}
	wg.Wait()
	return out, nil
}

// Save writes each item, concurrently when there are several; every item is checked
// before any is written. Like Dapr, a failure does not stop the other writes, and the
// first failed item (in request order) decides the error.
func (b *Block) Save(ctx context.Context, store string, items []SaveRequest) error {
	a, err := b.acquire(store)
	if err != nil {
		return err
	}
	defer a.release()
	if len(items) == 0 {
		return nil
	}
	reqs := make([]*state.SetRequest, len(items))
	for i := range items {
		key, err := storeKey(store, a.prefix, items[i].Key)
		if err != nil {
			return err
		}
		if reqs[i], err = b.setRequest(apierrors.StateSave, store, a.h, key, &items[i]); err != nil {
			return err
		}
	}
	errs := b.each(ctx, len(reqs), func(ctx context.Context, i int) error {
		return b.run(ctx, store, OpSet, func(ctx context.Context) error { return a.h.Store.Set(ctx, reqs[i]) })
	})
	if err := firstError(errs); err != nil {
		return storeError(apierrors.StateSave, err, "failed saving state in state store %s", store)
	}
	return nil
}

// Delete deletes one key.
func (b *Block) Delete(ctx context.Context, store string, req DeleteRequest) error {
	a, err := b.acquire(store)
	if err != nil {
		return err
	}
	defer a.release()
	key, err := storeKey(store, a.prefix, req.Key)
	if err != nil {
		return err
	}
	dr, err := b.deleteRequest(apierrors.StateDelete, key, &req)
	if err != nil {
		return err
	}
	err = b.run(ctx, store, OpDelete, func(ctx context.Context) error { return a.h.Store.Delete(ctx, dr) })
	if err != nil {
		return storeError(apierrors.StateDelete, err, "failed deleting state with key %s", req.Key)
	}
	return nil
}

// DeleteBulk deletes several keys, as Save writes several.
func (b *Block) DeleteBulk(ctx context.Context, store string, reqs []DeleteRequest) error {
	a, err := b.acquire(store)
	if err != nil {
		return err
	}
	defer a.release()
	drs := make([]*state.DeleteRequest, len(reqs))
	for i := range reqs {
		key, err := storeKey(store, a.prefix, reqs[i].Key)
		if err != nil {
			return err
		}
		if drs[i], err = b.deleteRequest(apierrors.StateDelete, key, &reqs[i]); err != nil {
			return err
		}
	}
	errs := b.each(ctx, len(drs), func(ctx context.Context, i int) error {
		return b.run(ctx, store, OpDelete, func(ctx context.Context) error { return a.h.Store.Delete(ctx, drs[i]) })
	})
	if err := firstError(errs); err != nil {
		return storeError(apierrors.StateDelete, err, "failed deleting state in state store %s", store)
	}
	return nil
}

// each runs fn for 0..n-1, at most the block's parallelism at a time, and returns
// each call's error. A single call runs on the caller's goroutine.
func (b *Block) each(ctx context.Context, n int, fn func(ctx context.Context, i int) error) []error {
	errs := make([]error, n)
	if n == 1 {
		errs[0] = fn(ctx, 0)
		return errs
	}
	sem := make(chan struct{}, b.parallelism(0, n))
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < n; j++ {
				errs[j] = ctx.Err()
			}
			wg.Wait()
			return errs
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fn(ctx, i)
		}()
	}
	wg.Wait()
	return errs
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Transact applies the operations atomically on a transactional store.
func (b *Block) Transact(ctx context.Context, store string, req TransactionRequest) error {
	a, err := b.acquire(store)
	if err != nil {
		return err
	}
	defer a.release()
	tx, ok := a.h.Store.(state.Transactional)
	if !ok || !state.Has(a.h.Store, state.FeatureTransactional) {
		return errTransactionsNotSupported(store)
	}
	if len(req.Operations) == 0 {
		return nil
	}
	ops := make([]state.Operation, len(req.Operations))
	for i, o := range req.Operations {
		switch o.Operation {
		case OperationUpsert:
			if o.Save == nil {
				return apierrors.New(apierrors.MalformedRequest, "operation %d: upsert has no request", i)
			}
			key, err := storeKey(store, a.prefix, o.Save.Key)
			if err != nil {
				return err
			}
			if ops[i].Set, err = b.setRequest(apierrors.StateTransaction, store, a.h, key, o.Save); err != nil {
				return err
			}
		case OperationDelete:
			if o.Delete == nil {
				return apierrors.New(apierrors.MalformedRequest, "operation %d: delete has no request", i)
			}
			key, err := storeKey(store, a.prefix, o.Delete.Key)
			if err != nil {
				return err
			}
			if ops[i].Delete, err = b.deleteRequest(apierrors.StateTransaction, key, o.Delete); err != nil {
				return err
			}
		default:
			return apierrors.New(apierrors.NotSupportedStateOp, "operation type %s not supported", o.Operation)
		}
	}
	err = b.run(ctx, store, OpTransaction, func(ctx context.Context) error { return tx.Multi(ctx, ops, req.Metadata) })
	if err != nil {
		// Dapr 1.14 answers every failed transaction 500/Internal, an ETag mismatch
		// included (unlike save and delete), so this keeps the plain code.
		return apierrors.Wrap(apierrors.StateTransaction, err, "error while executing state transaction")
	}
	return nil
}

// Query runs a state query on a store with the query API, over the app's keys only.
func (b *Block) Query(ctx context.Context, store string, req QueryRequest) (*QueryResult, error) {
	a, err := b.acquire(store)
	if err != nil {
		return nil, err
	}
	defer a.release()
	querier, ok := a.h.Store.(state.Querier)
	if !ok || !state.Has(a.h.Store, state.FeatureQueryAPI) {
		return nil, errQueryNotSupported()
	}
	q, err := ParseQuery(req.Query)
	if err != nil {
		// Dapr answers a query it cannot parse with ERR_STATE_QUERY and 500; we keep
		// the code and answer 400, the request being at fault.
		return nil, errQueryFailed(store, true, err)
	}
	scope := ""
	if a.prefix != "" {
		scope = a.prefix + Separator
	}
	q.KeyPrefix = scope
	var resp *state.QueryResponse
	err = b.run(ctx, store, OpQuery, func(ctx context.Context) error {
		var err error
		resp, err = querier.Query(ctx, q, req.Metadata)
		return err
	})
	if err != nil {
		if errors.Is(err, state.ErrInvalidQuery) {
			return nil, errQueryFailed(store, true, err)
		}
		return nil, errQueryFailed(store, false, err)
	}
	out := &QueryResult{}
	if resp == nil {
		return out, nil
	}
	out.Token, out.Metadata = resp.Token, resp.Metadata
	for _, r := range resp.Results {
		// A store that ignored KeyPrefix must still not leak other apps' items. With
		// keyPrefix none the app's keys are those without a separator, since the
		// block refuses it in keys.
		if scope != "" {
			rest, ok := strings.CutPrefix(r.Key, scope)
			if !ok {
				continue
			}
			r.Key = rest
		} else if strings.Contains(r.Key, Separator) {
			continue
		}
		out.Results = append(out.Results, r)
	}
	return out, nil
}
