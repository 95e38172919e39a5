// Package sqlite is state.sqlite: a state store in one SQLite file (modernc.org/sqlite,
// pure Go), the embedded default of self-hosted mode. Several sidecar processes may
// share the file: every check-then-write runs in a single statement or in a
// transaction that takes the write lock first (BEGIN IMMEDIATE), and writers wait for
// each other up to busyTimeout.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/state"
)

// TypeName is the component type this package implements.
const TypeName = "state.sqlite"

// Register adds state.sqlite to a registry. The runtime calls it explicitly (rather
// than an init side effect) so that a build, or a test, chooses what it ships.
func Register(r *components.Registry[state.Store]) {
	r.Register(TypeName, func() state.Store { return New() })
}

// schemaVersion is recorded in the metadata table, for future migrations.
const schemaVersion = "1"

// Store is the SQLite state store.
type Store struct {
	// Clock returns the current time, for TTL; nil means time.Now. Expiry is computed
	// here rather than by SQLite so that tests control it.
	Clock func() time.Time

	name     string
	opts     Options
	db       *sql.DB
	q        queries
	features []state.Feature

	stop     context.CancelFunc
	cleaning sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
}

// queries are the statements, with the configured table names.
type queries struct {
	get, upsert, insertIfAbsent, updateIfETag, deleteAny, deleteIfETag, deleteExpired string
	getMeta, setMeta                                                                  string
}

func newQueries(table, meta string) queries {
	t := `"` + table + `"`
	live := `(expires_at IS NULL OR expires_at > ?)`
	const cols = `(key, value, content_type, etag, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`
	const set = `value = excluded.value, content_type = excluded.content_type, etag = excluded.etag,
		expires_at = excluded.expires_at, updated_at = excluded.updated_at`
	return queries{
		get:    `SELECT value, content_type, etag, expires_at FROM ` + t + ` WHERE key = ? AND ` + live,
		upsert: `INSERT INTO ` + t + ` ` + cols + ` ON CONFLICT (key) DO UPDATE SET ` + set,
		// A row that has expired counts as absent: it may be replaced.
		insertIfAbsent: `INSERT INTO ` + t + ` ` + cols + ` ON CONFLICT (key) DO UPDATE SET ` + set +
			` WHERE ` + t + `.expires_at IS NOT NULL AND ` + t + `.expires_at <= ?`,
		updateIfETag: `UPDATE ` + t + ` SET value = ?, content_type = ?, etag = ?, expires_at = ?, updated_at = ?
			WHERE key = ? AND etag = ? AND ` + live,
		deleteAny:     `DELETE FROM ` + t + ` WHERE key = ?`,
		deleteIfETag:  `DELETE FROM ` + t + ` WHERE key = ? AND etag = ? AND ` + live,
		deleteExpired: `DELETE FROM ` + t + ` WHERE expires_at IS NOT NULL AND expires_at <= ?`,
		getMeta:       `SELECT value FROM "` + meta + `" WHERE key = ?`,
		setMeta:       `INSERT INTO "` + meta + `" (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
	}
}

// New returns an uninitialised store.
func New() *Store { return &Store{} }

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
)

// Init opens the database, creates the tables if missing and starts the cleanup of
// expired rows.
func (s *Store) Init(ctx context.Context, md components.Metadata) error {
	opts, err := parseOptions(md.Properties)
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	dsn, err := opts.dsn()
	if err != nil {
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("%s %q: open %q: %w", TypeName, md.Name, opts.ConnectionString, err)
	}
	if opts.isMemory() {
		// Each connection to ":memory:" is a database of its own; one connection, never
		// recycled, keeps the data in one place.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
	}
	s.name, s.opts, s.db = md.Name, opts, db
	s.q = newQueries(opts.TableName, opts.MetadataTableName)
	initCtx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := s.migrate(initCtx); err != nil {
		_ = db.Close()
		return fmt.Errorf("%s %q: %w", TypeName, md.Name, err)
	}
	s.features = []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL}
	if opts.ActorStateStore {
		s.features = append(s.features, state.FeatureActorStateStore)
	}
	if opts.CleanupInterval > 0 {
		loopCtx, stop := context.WithCancel(context.Background())
		s.stop = stop
		s.cleaning.Add(1)
		go s.cleanupLoop(loopCtx, time.NewTicker(opts.CleanupInterval))
	}
	return nil
}

// migrate creates the tables, in one write transaction so that sidecars starting
// together on a new file do not race, and refuses a table of the same name that has
// another layout (such as one Dapr created) rather than fail later on each call.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("open %q: %w", s.opts.ConnectionString, err)
	}
	defer func() { _ = tx.Rollback() }()
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS "` + s.opts.MetadataTableName + `" (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS "` + s.opts.TableName + `" (
			key TEXT NOT NULL PRIMARY KEY,
			value BLOB NOT NULL,
			content_type TEXT,
			etag TEXT NOT NULL,
			expires_at INTEGER,
			updated_at INTEGER NOT NULL
		)`,
	}
	for _, st := range stmts {
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("create tables %q and %q: %w", s.opts.TableName, s.opts.MetadataTableName, err)
		}
	}
	if err := checkColumns(ctx, tx, s.opts.TableName,
		[]string{"key", "value", "content_type", "etag", "expires_at", "updated_at"}); err != nil {
		return err
	}
	if err := checkColumns(ctx, tx, s.opts.MetadataTableName, []string{"key", "value"}); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS "`+s.opts.TableName+`_expires_at" ON "`+s.opts.TableName+`" (expires_at) WHERE expires_at IS NOT NULL`); err != nil {
		return fmt.Errorf("create index on %q: %w", s.opts.TableName, err)
	}
	if _, err := tx.ExecContext(ctx, s.q.setMeta, "outrigger-schema-"+s.opts.TableName, schemaVersion); err != nil {
		return fmt.Errorf("record schema version in %q: %w", s.opts.MetadataTableName, err)
	}
	return tx.Commit()
}

func checkColumns(ctx context.Context, tx *sql.Tx, table string, want []string) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return fmt.Errorf("inspect table %q: %w", table, err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("inspect table %q: %w", table, err)
		}
		have[n] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inspect table %q: %w", table, err)
	}
	for _, c := range want {
		if !have[c] {
			return fmt.Errorf("table %q exists without column %q: it was not created by this store; set metadata \"tableName\" or \"metadataTableName\" to another table", table, c)
		}
	}
	return nil
}

// Features lists what the store supports.
func (s *Store) Features() []state.Feature { return append([]state.Feature(nil), s.features...) }

// Close stops the cleanup and closes the database.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed || s.db == nil {
		return nil
	}
	s.closed = true
	if s.stop != nil {
		s.stop()
	}
	s.cleaning.Wait()
	return s.db.Close()
}

func (s *Store) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.Timeout)
}

func (s *Store) wrap(op, key string, err error) error {
	var ee *state.ETagError
	if errors.As(err, &ee) {
		return err
	}
	return fmt.Errorf("%s %q: %s %q: %w", TypeName, s.name, op, key, err)
}

// Get reads one key; an expired row reads as missing.
func (s *Store) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var (
		value   []byte
		ct      sql.NullString
		etag    string
		expires sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, s.q.get, req.Key, s.now().UnixMilli()).Scan(&value, &ct, &etag, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, s.wrap("get", req.Key, err)
	}
	resp := &state.GetResponse{Data: value, ETag: &etag}
	if resp.Data == nil {
		resp.Data = []byte{}
	}
	if ct.Valid {
		resp.ContentType = &ct.String
	}
	if expires.Valid {
		e := time.UnixMilli(expires.Int64)
		resp.Expiry = &e
	}
	return resp, nil
}

// execer is what a single write needs, from the database or from a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Set writes one key; its ETag check and write are one statement.
func (s *Store) Set(ctx context.Context, req *state.SetRequest) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return s.set(ctx, s.db, req)
}

func (s *Store) set(ctx context.Context, x execer, req *state.SetRequest) error {
	now := s.now()
	newETag, err := randomETag()
	if err != nil {
		return s.wrap("set", req.Key, err)
	}
	var expires sql.NullInt64
	if req.TTL != nil {
		expires = sql.NullInt64{Int64: now.Add(*req.TTL).UnixMilli(), Valid: true}
	}
	var ct sql.NullString
	if req.ContentType != nil {
		ct = sql.NullString{String: *req.ContentType, Valid: true}
	}
	value := req.Value
	if value == nil {
		value = []byte{}
	}
	nowMs := now.UnixMilli()
	var res sql.Result
	switch {
	case req.ETag != nil && *req.ETag != "":
		if err := checkETagFormat(*req.ETag); err != nil {
			return err
		}
		res, err = x.ExecContext(ctx, s.q.updateIfETag, value, ct, newETag, expires, nowMs, req.Key, *req.ETag, nowMs)
	case req.Options.Concurrency == state.FirstWrite:
		res, err = x.ExecContext(ctx, s.q.insertIfAbsent, req.Key, value, ct, newETag, expires, nowMs, nowMs)
	default:
		_, err = x.ExecContext(ctx, s.q.upsert, req.Key, value, ct, newETag, expires, nowMs)
		if err != nil {
			return s.wrap("set", req.Key, err)
		}
		return nil
	}
	if err != nil {
		return s.wrap("set", req.Key, err)
	}
	return expectOneRow(res, req.Key)
}

// Delete deletes one key; with an ETag, only if it matches.
func (s *Store) Delete(ctx context.Context, req *state.DeleteRequest) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return s.delete(ctx, s.db, req)
}

func (s *Store) delete(ctx context.Context, x execer, req *state.DeleteRequest) error {
	if req.ETag == nil || *req.ETag == "" {
		if _, err := x.ExecContext(ctx, s.q.deleteAny, req.Key); err != nil {
			return s.wrap("delete", req.Key, err)
		}
		return nil
	}
	if err := checkETagFormat(*req.ETag); err != nil {
		return err
	}
	res, err := x.ExecContext(ctx, s.q.deleteIfETag, req.Key, *req.ETag, s.now().UnixMilli())
	if err != nil {
		return s.wrap("delete", req.Key, err)
	}
	return expectOneRow(res, req.Key)
}

func expectOneRow(res sql.Result, key string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: rows affected for %q: %w", TypeName, key, err)
	}
	if n == 0 {
		return state.NewETagError(state.ETagMismatch, nil)
	}
	return nil
}

// Multi applies the operations in one transaction. The driver opens it with BEGIN
// IMMEDIATE, so the write lock is held from the first check to the commit.
func (s *Store) Multi(ctx context.Context, ops []state.Operation, _ map[string]string) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s %q: begin transaction: %w", TypeName, s.name, err)
	}
	defer func() { _ = tx.Rollback() }()
	for i, op := range ops {
		switch {
		case op.Set != nil && op.Delete == nil:
			err = s.set(ctx, tx, op.Set)
		case op.Delete != nil && op.Set == nil:
			err = s.delete(ctx, tx, op.Delete)
		default:
			err = fmt.Errorf("%s: transaction operation %d must have exactly one of set and delete", TypeName, i)
		}
		if err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s %q: commit: %w", TypeName, s.name, err)
	}
	return nil
}

// cleanupLoop deletes expired rows on each tick until Close.
func (s *Store) cleanupLoop(ctx context.Context, tick *time.Ticker) {
	defer s.cleaning.Done()
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// An error here is retried on the next tick; expired rows are invisible
			// to reads meanwhile, so nothing is served wrong.
			_, _ = s.maybeCleanup(ctx)
		}
	}
}

// maybeCleanup deletes expired rows unless another sidecar sharing the file did so
// less than an interval ago, so that N sidecars do not clean N times as often. The
// check and the delete share one write transaction.
func (s *Store) maybeCleanup(ctx context.Context) (int64, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("%s %q: cleanup: %w", TypeName, s.name, err)
	}
	defer func() { _ = tx.Rollback() }()
	now := s.now()
	metaKey := "outrigger-last-cleanup-" + s.opts.TableName
	var last string
	switch err := tx.QueryRowContext(ctx, s.q.getMeta, metaKey).Scan(&last); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, fmt.Errorf("%s %q: cleanup: %w", TypeName, s.name, err)
	default:
		// Tolerate a tenth of the interval of jitter between the sidecars' tickers.
		if ms, perr := strconv.ParseInt(last, 10, 64); perr == nil &&
			now.Sub(time.UnixMilli(ms)) < s.opts.CleanupInterval-s.opts.CleanupInterval/10 {
			return 0, nil
		}
	}
	n, err := s.deleteExpired(ctx, tx, now)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, s.q.setMeta, metaKey, strconv.FormatInt(now.UnixMilli(), 10)); err != nil {
		return 0, fmt.Errorf("%s %q: cleanup: %w", TypeName, s.name, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("%s %q: cleanup: %w", TypeName, s.name, err)
	}
	return n, nil
}

// cleanupExpired deletes every expired row now, whatever other sidecars did.
func (s *Store) cleanupExpired(ctx context.Context) (int64, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return s.deleteExpired(ctx, s.db, s.now())
}

func (s *Store) deleteExpired(ctx context.Context, x execer, now time.Time) (int64, error) {
	res, err := x.ExecContext(ctx, s.q.deleteExpired, now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("%s %q: delete expired rows: %w", TypeName, s.name, err)
	}
	return res.RowsAffected()
}

// ETags are random rather than counters: a counter kept per row would restart when a
// key is deleted and written again, and a stale ETag from before would match.
func randomETag() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate etag: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func checkETagFormat(etag string) error {
	if len(etag) != 32 {
		return state.NewETagError(state.ETagInvalid, fmt.Errorf("%s issues 32-character hex etags, got %q", TypeName, etag))
	}
	if _, err := hex.DecodeString(etag); err != nil {
		return state.NewETagError(state.ETagInvalid, fmt.Errorf("%s issues 32-character hex etags, got %q", TypeName, etag))
	}
	return nil
}
