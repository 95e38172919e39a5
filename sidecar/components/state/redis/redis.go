// Package redis is the state.redis store: Dapr's Redis state store on go-redis, with
// Dapr's metadata and Dapr's storage layout (see scripts.go), so that Dapr and Outrigger
// sidecars can share one Redis.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// TypeName is the component type this package implements.
const TypeName = "state.redis"

// Register adds state.redis (v1) to a state store registry.
func Register(r *components.Registry[state.Store]) {
	r.Register(TypeName, func() state.Store { return New() }, "v1")
}

// Store is a Redis state store. Create it with New, then Init it.
type Store struct {
	// now is the clock used to turn a key's remaining TTL into GetResponse.Expiry.
	now func() time.Time
	// The Lua scripts; tests give them a never-seen variant to exercise the EVAL
	// fallback without flushing the shared server's script cache.
	writeScript, getScript *goredis.Script

	mu       sync.Mutex      // guards client and closed against Close racing Init
	client   *goredis.Client // reads and WAIT, retried on a broken connection
	writer   *goredis.Client // the write script, never retried
	opts     options
	features []state.Feature
	// replicas is the number of connected replicas at Init; a strong-consistency write
	// waits for them, as Dapr's store does.
	replicas int
	closed   bool
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
)

// New returns an uninitialised store.
func New() *Store {
	return &Store{now: time.Now, writeScript: writeScript, getScript: getScript}
}

// Init reads the metadata, connects and pings the server.
func (s *Store) Init(ctx context.Context, md components.Metadata) error {
	opts, err := parseOptions(md)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	client, err := opts.newClient(true)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	writer, err := opts.newClient(false)
	if err != nil {
		_ = client.Close()
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		_ = writer.Close()
		return fmt.Errorf("%s %q: cannot reach Redis at redisHost %q: %w", TypeName, md.Name, opts.Host, err)
	}
	replicas, err := connectedReplicas(ctx, client)
	if err != nil {
		_ = client.Close()
		_ = writer.Close()
		return fmt.Errorf("%s %q: read replication info from redisHost %q: %w", TypeName, md.Name, opts.Host, err)
	}

	features := []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL}
	if opts.ActorStateStore {
		features = append(features, state.FeatureActorStateStore)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = client.Close()
		_ = writer.Close()
		return errors.New("state.redis: store closed during Init")
	}
	if s.client != nil {
		_ = client.Close()
		_ = writer.Close()
		return errors.New("state.redis: store already initialised")
	}
	s.client, s.writer, s.opts, s.features, s.replicas = client, writer, opts, features, replicas
	return nil
}

// connectedReplicas reads connected_slaves from INFO replication; a server that hides
// INFO (some managed services do) counts as having none.
func connectedReplicas(ctx context.Context, c *goredis.Client) (int, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "unknown command") || strings.HasPrefix(err.Error(), "NOPERM") {
			return 0, nil
		}
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("unexpected connected_slaves %q", v)
			}
			return n, nil
		}
	}
	return 0, nil
}

// Features lists ETAG, TRANSACTIONAL and TTL, plus ACTOR when actorStateStore is true.
func (s *Store) Features() []state.Feature { return s.features }

// Close releases the connections. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.client == nil {
		return nil
	}
	err := errors.Join(s.client.Close(), s.writer.Close())
	s.client, s.writer = nil, nil
	return err
}

func (s *Store) conn() (*goredis.Client, error) {
	c, _, err := s.conns()
	return c, err
}

// conns returns the retrying client and the write client.
func (s *Store) conns() (*goredis.Client, *goredis.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return nil, nil, errors.New("state.redis: store is not initialised or is closed")
	}
	return s.client, s.writer, nil
}

// Get reads a key. A missing or expired key is a nil response.
func (s *Store) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	res, err := s.getScript.Run(ctx, c, []string{req.Key}).Slice()
	if err != nil {
		if errors.Is(err, goredis.Nil) {
			return nil, nil
		}
		return nil, fmt.Errorf("state.redis: get %q: %w", req.Key, err)
	}
	if len(res) != 3 {
		return nil, fmt.Errorf("state.redis: get %q: unexpected reply of %d items", req.Key, len(res))
	}
	data, hasData := res[0].(string)
	version, hasVersion := res[1].(string)
	if !hasData && !hasVersion {
		return nil, nil
	}
	if !hasData || !hasVersion {
		// Dapr's store refuses such a hash too: it was not written by a state store.
		return nil, fmt.Errorf("state.redis: get %q: hash field 'data' or 'version' is missing", req.Key)
	}
	resp := &state.GetResponse{Data: []byte(data)}
	if version != "" {
		resp.ETag = &version
	}
	if pttl, ok := res[2].(int64); ok && pttl > 0 {
		exp := s.now().Add(time.Duration(pttl) * time.Millisecond).UTC()
		resp.Expiry = &exp
	}
	return resp, nil
}

// Set writes a key, checking its ETag or first-write condition atomically.
func (s *Store) Set(ctx context.Context, req *state.SetRequest) error {
	return s.write(ctx, []state.Operation{{Set: req}}, req.Options.Consistency)
}

// Delete deletes a key; with an ETag, only if the stored version matches.
func (s *Store) Delete(ctx context.Context, req *state.DeleteRequest) error {
	return s.write(ctx, []state.Operation{{Delete: req}}, req.Options.Consistency)
}

// Multi applies the operations atomically in one Lua script: every ETag and
// first-write check passes before anything is written, or nothing is.
func (s *Store) Multi(ctx context.Context, ops []state.Operation, _ map[string]string) error {
	if len(ops) == 0 {
		return nil
	}
	consistency := ""
	for _, op := range ops {
		if (op.Set != nil && op.Set.Options.Consistency == state.Strong) ||
			(op.Delete != nil && op.Delete.Options.Consistency == state.Strong) {
			consistency = state.Strong
		}
	}
	return s.write(ctx, ops, consistency)
}

func (s *Store) write(ctx context.Context, ops []state.Operation, consistency string) error {
	c, w, err := s.conns()
	if err != nil {
		return err
	}
	keys := make([]string, len(ops))
	args := make([]any, 0, len(ops)*argsPerOp)
	for i, op := range ops {
		var a [argsPerOp]any
		switch {
		case op.Set != nil && op.Delete == nil:
			etag, err := parseETag(op.Set.ETag)
			if err != nil {
				return err
			}
			keys[i] = op.Set.Key
			a[argKind], a[argETag], a[argData] = "S", etag, op.Set.Value
			a[argFirstWrite] = flag(op.Set.Options.Concurrency == state.FirstWrite)
			a[argTTL] = s.ttlMillis(op.Set.TTL)
		case op.Delete != nil && op.Set == nil:
			etag, err := parseETag(op.Delete.ETag)
			if err != nil {
				return err
			}
			keys[i] = op.Delete.Key
			a[argKind], a[argETag], a[argFirstWrite], a[argTTL], a[argData] = "D", etag, "0", "0", ""
		default:
			return fmt.Errorf("state.redis: operation %d must have exactly one of Set and Delete", i+1)
		}
		args = append(args, a[:]...)
	}
	if err := s.writeScript.Run(ctx, w, keys, args...).Err(); err != nil {
		return scriptError(err, keys)
	}
	if consistency == state.Strong && s.replicas > 0 {
		// As Dapr's store: wait up to a second for the replicas seen at Init to confirm.
		if err := c.Wait(ctx, s.replicas, time.Second).Err(); err != nil {
			return fmt.Errorf("state.redis: wait for %d replicas: %w", s.replicas, err)
		}
	}
	return nil
}

// ttlMillis is the expiry a set applies, in milliseconds; 0 means none. A request
// without a TTL gets the component's ttlInSeconds; a non-positive TTL, in the request
// or the component, means none (Dapr's ttlInSeconds: -1). Unlike Dapr, a write without
// any TTL clears an earlier expiry: the value is kept until deleted, as the state
// contract says, rather than inheriting a deadline from the value it replaced.
func (s *Store) ttlMillis(ttl *time.Duration) string {
	var d time.Duration
	switch {
	case ttl != nil:
		d = *ttl
	case s.opts.TTLInSeconds != nil:
		d = time.Duration(*s.opts.TTLInSeconds) * time.Second
	}
	if d <= 0 {
		return "0"
	}
	ms := d.Milliseconds()
	if ms == 0 {
		ms = 1
	}
	return strconv.FormatInt(ms, 10)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// parseETag returns the canonical form of an ETag, or "" for none. ETags are the
// decimal versions this store issues; anything else can never match.
func parseETag(etag *string) (string, error) {
	if etag == nil || *etag == "" {
		return "", nil
	}
	v, err := strconv.ParseUint(*etag, 10, 63)
	if err != nil {
		return "", state.NewETagError(state.ETagInvalid, fmt.Errorf("%q is not a version number", *etag))
	}
	return strconv.FormatUint(v, 10), nil
}

// scriptError turns writeScript's error replies into the state package's errors.
func scriptError(err error, keys []string) error {
	msg := err.Error()
	code, idx, ok := strings.Cut(msg, " ")
	i, convErr := strconv.Atoi(idx)
	if !ok || convErr != nil || i < 1 || i > len(keys) {
		return fmt.Errorf("state.redis: write: %w", err)
	}
	key := keys[i-1]
	where := fmt.Sprintf("key %q", key)
	if len(keys) > 1 {
		where = fmt.Sprintf("operation %d (key %q)", i, key)
	}
	switch code {
	case errETagMismatch:
		return state.NewETagError(state.ETagMismatch, fmt.Errorf("%s: stored version differs or key does not exist", where))
	case errKeyExists:
		return state.NewETagError(state.ETagMismatch, fmt.Errorf("%s: first-write concurrency and the key already exists", where))
	case errBadVersion:
		return fmt.Errorf("state.redis: %s: the hash's version field is not a number", where)
	}
	return fmt.Errorf("state.redis: write: %w", err)
}
