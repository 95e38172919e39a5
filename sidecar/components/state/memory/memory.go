// Package memory is state.in-memory: a state store held in the sidecar's memory, with
// every feature (ETags, transactions, TTL, the query API), for tests and for apps that
// need no durability. Its data lives and dies with the instance: a hot swap or a
// restart starts empty, as Dapr's in-memory store does.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// TypeName is the component type this package implements.
const TypeName = "state.in-memory"

// Register adds state.in-memory to a registry. The runtime calls it explicitly (rather
// than an init side effect) so that a build, or a test, chooses what it ships.
func Register(r *components.Registry[state.Store]) {
	r.Register(TypeName, func() state.Store { return New() })
}

// Options are the component's metadata.
type Options struct {
	// ActorStateStore declares the store usable for actor state.
	ActorStateStore bool `metadata:"actorStateStore"`
}

// Store is the in-memory state store.
type Store struct {
	// Clock returns the current time, for TTL; nil means time.Now. Tests replace it to
	// expire items without waiting.
	Clock func() time.Time

	mu    sync.RWMutex
	items map[string]*item
	// version only grows, so an ETag is never reissued, not even for a key that was
	// deleted and written again.
	version uint64
	// writesSinceSweep amortises the removal of expired items over writes.
	writesSinceSweep int
	features         []state.Feature
}

type item struct {
	data        []byte
	version     uint64
	contentType *string
	expiry      *time.Time
}

// New returns an uninitialised store.
func New() *Store { return &Store{items: map[string]*item{}} }

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
	_ state.Querier       = (*Store)(nil)
)

// Init reads the metadata.
func (s *Store) Init(_ context.Context, md components.Metadata) error {
	var opts Options
	if err := metadata.Decode(md.Properties, &opts); err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.items == nil {
		s.items = map[string]*item{}
	}
	s.features = []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL, state.FeatureQueryAPI}
	if opts.ActorStateStore {
		s.features = append(s.features, state.FeatureActorStateStore)
	}
	return nil
}

// Features lists what the store supports.
func (s *Store) Features() []state.Feature {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]state.Feature(nil), s.features...)
}

// Close drops the data.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items = map[string]*item{}
	return nil
}

func (s *Store) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

// live returns the item under key unless it is absent or expired.
func (s *Store) live(key string, now time.Time) *item {
	it := s.items[key]
	if it == nil || (it.expiry != nil && !now.Before(*it.expiry)) {
		return nil
	}
	return it
}

// Get reads one key.
func (s *Store) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	it := s.live(req.Key, s.now())
	if it == nil {
		return nil, nil
	}
	return it.response(), nil
}

func (it *item) response() *state.GetResponse {
	etag := formatETag(it.version)
	resp := &state.GetResponse{Data: bytes.Clone(it.data), ETag: &etag, ContentType: cloneString(it.contentType)}
	if it.expiry != nil {
		e := *it.expiry
		resp.Expiry = &e
	}
	return resp
}

// Set writes one key.
func (s *Store) Set(ctx context.Context, req *state.SetRequest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := view{s: s, now: s.now()}
	if err := v.set(req); err != nil {
		return err
	}
	v.commit()
	return nil
}

// Delete deletes one key.
func (s *Store) Delete(ctx context.Context, req *state.DeleteRequest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := view{s: s, now: s.now()}
	if err := v.delete(req); err != nil {
		return err
	}
	v.commit()
	return nil
}

// Multi applies the operations in order, all or none: each sees the effects of the
// ones before it, and nothing reaches the map until every one has passed its checks.
func (s *Store) Multi(ctx context.Context, ops []state.Operation, _ map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := view{s: s, now: s.now()}
	for i, op := range ops {
		var err error
		switch {
		case op.Set != nil && op.Delete == nil:
			err = v.set(op.Set)
		case op.Delete != nil && op.Set == nil:
			err = v.delete(op.Delete)
		default:
			err = fmt.Errorf("%s: transaction operation %d must have exactly one of set and delete", TypeName, i)
		}
		if err != nil {
			return err
		}
	}
	v.commit()
	return nil
}

// Query answers the state query API over a snapshot of the items.
func (s *Store) Query(ctx context.Context, q *state.Query, _ map[string]string) (*state.QueryResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	now := s.now()
	cands := make([]state.QueryCandidate, 0, len(s.items))
	for k := range s.items {
		it := s.live(k, now)
		if it == nil {
			continue
		}
		etag := formatETag(it.version)
		// The data is never mutated in place (writes replace the item), so sharing
		// the slice with the evaluator is safe; it copies what it returns.
		cands = append(cands, state.QueryCandidate{Key: k, Data: it.data, ETag: &etag, ContentType: cloneString(it.contentType)})
	}
	s.mu.RUnlock()
	return state.EvaluateQuery(q, cands)
}

// view stages writes over the map under the store's lock; commit publishes them.
type view struct {
	s       *Store
	now     time.Time
	pending map[string]*item // nil value: deleted
	order   []string
}

func (v *view) get(key string) *item {
	if it, ok := v.pending[key]; ok {
		return it
	}
	return v.s.live(key, v.now)
}

func (v *view) put(key string, it *item) {
	if v.pending == nil {
		v.pending = map[string]*item{}
	}
	if _, seen := v.pending[key]; !seen {
		v.order = append(v.order, key)
	}
	v.pending[key] = it
}

func (v *view) set(req *state.SetRequest) error {
	cur := v.get(req.Key)
	if err := checkETag(req.ETag, cur, req.Options.Concurrency == state.FirstWrite); err != nil {
		return err
	}
	v.s.version++
	it := &item{data: bytes.Clone(req.Value), version: v.s.version, contentType: cloneString(req.ContentType)}
	if it.data == nil {
		it.data = []byte{}
	}
	if req.TTL != nil {
		e := v.now.Add(*req.TTL)
		it.expiry = &e
	}
	v.put(req.Key, it)
	return nil
}

func (v *view) delete(req *state.DeleteRequest) error {
	cur := v.get(req.Key)
	if req.ETag != nil && *req.ETag != "" {
		if err := checkETag(req.ETag, cur, false); err != nil {
			return err
		}
	}
	if cur != nil {
		v.put(req.Key, nil)
	}
	return nil
}

func (v *view) commit() {
	for _, k := range v.order {
		if it := v.pending[k]; it != nil {
			v.s.items[k] = it
		} else {
			delete(v.s.items, k)
		}
	}
	v.s.writesSinceSweep += len(v.order)
	if v.s.writesSinceSweep > len(v.s.items)+64 {
		v.s.sweep(v.now)
	}
}

// sweep removes expired items; run as often as there have been as many writes as
// items, its cost per write stays constant.
func (s *Store) sweep(now time.Time) {
	for k, it := range s.items {
		if it.expiry != nil && !now.Before(*it.expiry) {
			delete(s.items, k)
		}
	}
	s.writesSinceSweep = 0
}

// checkETag applies the ETag rules shared by set and delete: a given ETag must be one
// this store issued and match the live item; first-write without an ETag only writes a
// key that does not exist.
func checkETag(etag *string, cur *item, firstWrite bool) error {
	if etag != nil && *etag != "" {
		want, err := parseETag(*etag)
		if err != nil {
			return err
		}
		if cur == nil || cur.version != want {
			return state.NewETagError(state.ETagMismatch, nil)
		}
		return nil
	}
	if firstWrite && cur != nil {
		return state.NewETagError(state.ETagMismatch, fmt.Errorf("key exists and first-write was asked without an etag"))
	}
	return nil
}

func formatETag(v uint64) string { return strconv.FormatUint(v, 10) }

func parseETag(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, state.NewETagError(state.ETagInvalid, fmt.Errorf("%s issues numeric etags, got %q", TypeName, s))
	}
	return v, nil
}

func cloneString(p *string) *string {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
