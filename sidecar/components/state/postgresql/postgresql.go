// Package postgresql is the state.postgresql store (v1): Dapr's PostgreSQL state store
// on pgx, with Dapr's metadata, table layout and xmin ETags (see schema.go), so that
// Dapr and Outrigger sidecars can share a table. It offers ETags, TTL, transactions and
// the query API.
package postgresql

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// TypeName is the component type this package implements.
const TypeName = "state.postgresql"

// Register adds state.postgresql (v1) to a state store registry.
func Register(r *components.Registry[state.Store]) {
	r.Register(TypeName, func() state.Store { return New() }, "v1")
}

// Store is a PostgreSQL state store. Create it with New, then Init it.
type Store struct {
	// newTicker drives the periodic cleanup; tests replace it to tick by hand.
	newTicker func(d time.Duration) (<-chan time.Time, func())

	mu       sync.Mutex // guards pool and closed against Close racing Init
	pool     *pgxpool.Pool
	closed   bool
	opts     options
	features []state.Feature
	q        queries
	log      logr.Logger

	stopCleanup context.CancelFunc
	cleanupDone chan struct{}
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
	_ state.Querier       = (*Store)(nil)
)

// New returns an uninitialised store.
func New() *Store {
	return &Store{newTicker: func(d time.Duration) (<-chan time.Time, func()) {
		t := time.NewTicker(d)
		return t.C, t.Stop
	}}
}

// Init reads the metadata, connects, creates or upgrades the table, and starts the
// periodic cleanup of expired rows.
func (s *Store) Init(ctx context.Context, md components.Metadata) error {
	opts, err := parseOptions(md)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	cfg, err := poolConfig(opts)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s %q: metadata \"connectionString\": %w", TypeName, md.Name, err)
	}

	initCtx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := pool.Ping(initCtx); err != nil {
		pool.Close()
		return fmt.Errorf("%s %q: cannot reach PostgreSQL at %s:%d (metadata \"connectionString\"): %w", TypeName, md.Name, cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.pool != nil {
		pool.Close()
		return fmt.Errorf("%s %q: store already initialised or closed", TypeName, md.Name)
	}
	s.opts = opts
	s.q = newQueries(opts.table, opts.metaTable)
	if err := s.migrate(initCtx, pool); err != nil {
		pool.Close()
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	s.pool = pool
	s.features = []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL, state.FeatureQueryAPI}
	if opts.ActorStateStore {
		s.features = append(s.features, state.FeatureActorStateStore)
	}
	s.log = logf.FromContext(ctx).WithValues("component", md.Name, "type", TypeName)
	if opts.CleanupInterval > 0 {
		loopCtx, stop := context.WithCancel(context.Background())
		s.stopCleanup, s.cleanupDone = stop, make(chan struct{})
		tick, stopTick := s.newTicker(opts.CleanupInterval)
		go s.cleanupLoop(loopCtx, tick, stopTick)
	}
	return nil
}

// poolConfig parses the connection string with pgxpool, as Dapr does, so that its
// pool_* parameters (pool_max_conns, pool_max_conn_idle_time, ...) apply; maxConns,
// connectionMaxIdleTime and queryExecMode override them when set.
func poolConfig(o options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(o.ConnectionString)
	if err != nil {
		// pgx's message quotes the connection string, and redacts passwords only on a
		// best-effort basis; so do the errors it wraps (a URL's, say).
		if _, err := pgx.ParseConfig(o.ConnectionString); err == nil {
			return nil, errors.New(`metadata "connectionString": a pool_* parameter has an invalid value (pool_max_conns, pool_min_conns and pool_min_idle_conns take whole numbers, pool_max_conns at least 1; the others durations such as 30m; not shown: the string may hold a password)`)
		}
		return nil, errors.New(`metadata "connectionString" cannot be parsed (not shown: it may hold a password)`)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.ConnectionMaxIdleTime > 0 {
		cfg.MaxConnIdleTime = o.ConnectionMaxIdleTime
	}
	if o.QueryExecMode != "" {
		cfg.ConnConfig.DefaultQueryExecMode = o.execMode
	}
	return cfg, nil
}

// Features lists ETAG, TRANSACTIONAL, TTL and QUERY_API, plus ACTOR when
// actorStateStore is true.
func (s *Store) Features() []state.Feature { return s.features }

// Close stops the cleanup and releases the connections. It is safe to call more than
// once.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	pool, stop, done := s.pool, s.stopCleanup, s.cleanupDone
	s.pool, s.stopCleanup = nil, nil
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	if pool != nil {
		pool.Close()
	}
	return nil
}

func (s *Store) db() (*pgxpool.Pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pool == nil {
		return nil, errors.New(TypeName + ": store is not initialised or is closed")
	}
	return s.pool, nil
}

// queries are the statements, built once from the quoted table names. Values only
// ever travel as parameters.
type queries struct {
	get, upsert, upsertFirstWrite, updateETag, del, delETag string
	cleanup, claimCleanup                                   string
}

// readValue picks what a read returns: for a binary value the base64 text, for JSON
// the bytes as written while no one else has rewritten the row, else the jsonb text.
const readValue = `CASE WHEN isbinary THEN value #>> '{}' WHEN rawxmin = xmin::text::bigint THEN rawvalue ELSE value::text END`

// Parameters of a write: $1 key, $2 value as text (JSON, or a JSON string holding
// base64), $3 isbinary, $4 TTL in seconds or NULL; $5 the expected xmin, for ETags.
// rawxmin is the low 32 bits of the writing transaction's id, which is what xmin
// shows for the row version this statement writes.
const (
	colValue    = `$2::text::jsonb`
	colExpiry   = `now() + make_interval(secs => $4::float8)`
	colRawValue = `CASE WHEN $3 THEN NULL ELSE $2::text END`
	colRawXmin  = `CASE WHEN $3 THEN NULL ELSE txid_current() % 4294967296 END`
	live        = `(expiredate IS NULL OR expiredate > now())`
)

func newQueries(table, meta string) queries {
	upsert := `INSERT INTO ` + table + ` AS t (key, value, isbinary, expiredate, rawvalue, rawxmin)
		VALUES ($1, ` + colValue + `, $3, ` + colExpiry + `, ` + colRawValue + `, ` + colRawXmin + `)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, isbinary = excluded.isbinary, updatedate = now(),
			expiredate = excluded.expiredate, rawvalue = excluded.rawvalue, rawxmin = excluded.rawxmin`
	return queries{
		get:    `SELECT ` + readValue + `, isbinary, xmin::text, expiredate FROM ` + table + ` WHERE key = $1 AND ` + live,
		upsert: upsert,
		// An expired row that the cleanup has not removed yet counts as missing.
		upsertFirstWrite: upsert + ` WHERE t.expiredate IS NOT NULL AND t.expiredate <= now()`,
		updateETag: `UPDATE ` + table + ` SET value = ` + colValue + `, isbinary = $3, updatedate = now(),
			expiredate = ` + colExpiry + `, rawvalue = ` + colRawValue + `, rawxmin = ` + colRawXmin + `
			WHERE key = $1 AND xmin::text = $5 AND ` + live,
		del:          `DELETE FROM ` + table + ` WHERE key = $1`,
		delETag:      `DELETE FROM ` + table + ` WHERE key = $1 AND xmin::text = $2 AND ` + live,
		cleanup:      `DELETE FROM ` + table + ` WHERE expiredate IS NOT NULL AND expiredate <= now()`,
		claimCleanup: claimCleanupQuery(meta),
	}
}

// Get reads a key; a missing or expired key is a nil response.
func (s *Store) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	db, err := s.db()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	var (
		data     []byte
		isBinary bool
		etag     string
		expiry   *time.Time
	)
	err = db.QueryRow(ctx, s.q.get, req.Key).Scan(&data, &isBinary, &etag, &expiry)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: get %q: %w", TypeName, req.Key, err)
	}
	if isBinary {
		if data, err = base64.StdEncoding.DecodeString(string(data)); err != nil {
			return nil, fmt.Errorf("%s: get %q: binary value is not base64: %w", TypeName, req.Key, err)
		}
	}
	resp := &state.GetResponse{Data: data, ETag: &etag}
	if expiry != nil {
		e := expiry.UTC()
		resp.Expiry = &e
	}
	return resp, nil
}

// Set writes a key. With an ETag it only updates the row of that xmin; with
// first-write and no ETag it only inserts.
func (s *Store) Set(ctx context.Context, req *state.SetRequest) error {
	db, err := s.db()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	return s.set(ctx, db, req, "")
}

// Delete deletes a key; with an ETag, only the row of that xmin.
func (s *Store) Delete(ctx context.Context, req *state.DeleteRequest) error {
	db, err := s.db()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	return s.delete(ctx, db, req, "")
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func (s *Store) set(ctx context.Context, db execer, req *state.SetRequest, where string) error {
	etag, err := parseETag(req.ETag)
	if err != nil {
		return err
	}
	text, isBinary := encodeValue(req.Value)
	var ttl *float64
	if req.TTL != nil && *req.TTL > 0 {
		secs := req.TTL.Seconds()
		ttl = &secs
	}
	var tag pgconn.CommandTag
	switch {
	case etag != "":
		tag, err = db.Exec(ctx, s.q.updateETag, req.Key, text, isBinary, ttl, etag)
	case req.Options.Concurrency == state.FirstWrite:
		tag, err = db.Exec(ctx, s.q.upsertFirstWrite, req.Key, text, isBinary, ttl)
	default:
		tag, err = db.Exec(ctx, s.q.upsert, req.Key, text, isBinary, ttl)
	}
	if err != nil {
		return fmt.Errorf("%s: set %q%s: %w", TypeName, req.Key, where, err)
	}
	if tag.RowsAffected() == 0 {
		if etag != "" {
			return state.NewETagError(state.ETagMismatch, fmt.Errorf("key %q%s: stored ETag differs or key does not exist", req.Key, where))
		}
		return state.NewETagError(state.ETagMismatch, fmt.Errorf("key %q%s: first-write concurrency and the key already exists", req.Key, where))
	}
	return nil
}

func (s *Store) delete(ctx context.Context, db execer, req *state.DeleteRequest, where string) error {
	etag, err := parseETag(req.ETag)
	if err != nil {
		return err
	}
	if etag == "" {
		if _, err := db.Exec(ctx, s.q.del, req.Key); err != nil {
			return fmt.Errorf("%s: delete %q%s: %w", TypeName, req.Key, where, err)
		}
		return nil
	}
	tag, err := db.Exec(ctx, s.q.delETag, req.Key, etag)
	if err != nil {
		return fmt.Errorf("%s: delete %q%s: %w", TypeName, req.Key, where, err)
	}
	if tag.RowsAffected() == 0 {
		return state.NewETagError(state.ETagMismatch, fmt.Errorf("key %q%s: stored ETag differs or key does not exist", req.Key, where))
	}
	return nil
}

// Multi applies the operations in one SQL transaction, in order; any failure (an ETag
// or first-write check included) rolls all of them back.
func (s *Store) Multi(ctx context.Context, ops []state.Operation, _ map[string]string) error {
	if len(ops) == 0 {
		return nil
	}
	for i, op := range ops {
		if (op.Set == nil) == (op.Delete == nil) {
			return fmt.Errorf("%s: operation %d must have exactly one of Set and Delete", TypeName, i+1)
		}
	}
	db, err := s.db()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		for i, op := range ops {
			where := ""
			if len(ops) > 1 {
				where = fmt.Sprintf(" (operation %d)", i+1)
			}
			var err error
			if op.Set != nil {
				err = s.set(ctx, tx, op.Set, where)
			} else {
				err = s.delete(ctx, tx, op.Delete, where)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// encodeValue returns the text stored in the jsonb column: the value itself when it is
// JSON that PostgreSQL accepts, else a JSON string of its base64 (isBinary), as Dapr
// stores the values it cannot keep as JSON.
func encodeValue(v []byte) (text string, isBinary bool) {
	// jsonb refuses \u0000 in strings, and text refuses invalid UTF-8.
	if json.Valid(v) && utf8.Valid(v) && !bytes.Contains(v, []byte(`\u0000`)) {
		return string(v), false
	}
	b := make([]byte, 0, base64.StdEncoding.EncodedLen(len(v))+2)
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	b = append(b, '"')
	return string(b), true
}

// parseETag returns the canonical form of an ETag, or "" for none. ETags are xmin
// values, 32-bit transaction ids.
func parseETag(etag *string) (string, error) {
	if etag == nil || *etag == "" {
		return "", nil
	}
	v, err := strconv.ParseUint(*etag, 10, 32)
	if err != nil {
		return "", state.NewETagError(state.ETagInvalid, fmt.Errorf("%q is not a transaction id", *etag))
	}
	return strconv.FormatUint(v, 10), nil
}
