package memory

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
	"github.com/outrigger-dev/outrigger/sidecar/components/state/conformance"
)

func newStore(t *testing.T, props map[string]string) *Store {
	t.Helper()
	s := New()
	if err := s.Init(context.Background(), components.Metadata{Name: "statestore", Type: TypeName, Properties: props}); err != nil {
		t.Fatalf("init: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) state.Store { return newStore(t, nil) })
}

// fakeClock is a settable clock for expiring items without waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestTTLWithClock(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s := newStore(t, nil)
	s.Clock = clock.Now
	ttl := 10 * time.Second
	if err := s.Set(ctx, &state.SetRequest{Key: "k", Value: []byte("v"), TTL: &ttl}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Get(ctx, &state.GetRequest{Key: "k"})
	if err != nil || resp == nil || resp.Expiry == nil || !resp.Expiry.Equal(clock.Now().Add(ttl)) {
		t.Fatalf("get before expiry = %+v, %v", resp, err)
	}
	clock.Advance(ttl)
	if resp, _ := s.Get(ctx, &state.GetRequest{Key: "k"}); resp != nil {
		t.Fatalf("item readable at its expiry time: %q", resp.Data)
	}
	etag := "1"
	err = s.Set(ctx, &state.SetRequest{Key: "k", Value: []byte("w"), ETag: &etag})
	if _, ok := err.(*state.ETagError); !ok {
		t.Fatalf("etag write on an expired item: %v, want a mismatch", err)
	}
}

func TestSweepRemovesExpired(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s := newStore(t, nil)
	s.Clock = clock.Now
	ttl := time.Second
	for i := range 10 {
		if err := s.Set(ctx, &state.SetRequest{Key: string(rune('a' + i)), Value: []byte("v"), TTL: &ttl}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Second)
	for range 100 {
		if err := s.Set(ctx, &state.SetRequest{Key: "live", Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.RLock()
	n := len(s.items)
	s.mu.RUnlock()
	if n != 1 {
		t.Fatalf("%d items held after expiry and many writes, want 1", n)
	}
}

func TestFeatures(t *testing.T) {
	for _, tc := range []struct {
		props map[string]string
		actor bool
	}{
		{nil, false},
		{map[string]string{"actorStateStore": "true"}, true},
		{map[string]string{"ACTORSTATESTORE": "1"}, true},
		{map[string]string{"actorStateStore": "false"}, false},
	} {
		s := newStore(t, tc.props)
		for _, f := range []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL, state.FeatureQueryAPI} {
			if !state.Has(s, f) {
				t.Errorf("%v: missing %s", tc.props, f)
			}
		}
		if state.Has(s, state.FeatureActorStateStore) != tc.actor {
			t.Errorf("%v: ACTOR = %v, want %v", tc.props, !tc.actor, tc.actor)
		}
	}
	s := New()
	err := s.Init(context.Background(), components.Metadata{Name: "x", Properties: map[string]string{"actorStateStore": "maybe"}})
	if err == nil {
		t.Fatal("init accepted actorStateStore: maybe")
	}
}

func TestRegister(t *testing.T) {
	r := &components.Registry[state.Store]{}
	Register(r)
	s, err := r.Create("state.in-memory", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*Store); !ok {
		t.Fatalf("created %T", s)
	}
}
