package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	sqlitedrv "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/outrigger-dev/outrigger/sidecar/components/pubsub"
)

// schemaVersion is recorded in the meta table, for future migrations.
const schemaVersion = "1"

// Times in the tables are Unix milliseconds from the component's clock, so that every
// process on the machine compares them against the same wall clock and tests can move
// it.
func tables(p string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS "` + p + `meta" (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)`,
		// AUTOINCREMENT, because a group's read position is a message id: an id reused
		// after a prune would be skipped by every group already past it.
		`CREATE TABLE IF NOT EXISTS "` + p + `messages" (
			id INTEGER PRIMARY KEY AUTOINCREMENT,
			topic TEXT NOT NULL,
			data BLOB NOT NULL,
			content_type TEXT,
			metadata TEXT,
			created_at INTEGER NOT NULL,
			expires_at INTEGER
		)`,
		// last_id is the highest message id the group has taken; everything above it is
		// still to be delivered to the group.
		`CREATE TABLE IF NOT EXISTS "` + p + `groups" (
			topic TEXT NOT NULL,
			grp TEXT NOT NULL,
			last_id INTEGER NOT NULL,
			created_at INTEGER NOT NULL,
			PRIMARY KEY (topic, grp)
		) WITHOUT ROWID`,
		// A lease is a message taken by a group but not yet acknowledged. owner names the
		// subscription handling it, and is NULL while the message waits for redelivery;
		// once lease_until has passed any consumer of the group may take it.
		`CREATE TABLE IF NOT EXISTS "` + p + `leases" (
			topic TEXT NOT NULL,
			grp TEXT NOT NULL,
			msg_id INTEGER NOT NULL,
			lease_until INTEGER NOT NULL,
			owner TEXT,
			attempts INTEGER NOT NULL,
			PRIMARY KEY (topic, grp, msg_id)
		) WITHOUT ROWID`,
	}
}

// indexes are created once the tables are known to be the component's own.
func indexes(p string) []string {
	return []string{
		`CREATE INDEX IF NOT EXISTS "` + p + `messages_topic_id" ON "` + p + `messages" (topic, id)`,
		`CREATE INDEX IF NOT EXISTS "` + p + `messages_created_at" ON "` + p + `messages" (created_at)`,
		`CREATE INDEX IF NOT EXISTS "` + p + `messages_expires_at" ON "` + p + `messages" (expires_at) WHERE expires_at IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS "` + p + `leases_due" ON "` + p + `leases" (topic, grp, lease_until)`,
		`CREATE INDEX IF NOT EXISTS "` + p + `leases_msg_id" ON "` + p + `leases" (msg_id)`,
	}
}

var schemaColumns = map[string][]string{
	"meta":     {"key", "value"},
	"messages": {"id", "topic", "data", "content_type", "metadata", "created_at", "expires_at"},
	"groups":   {"topic", "grp", "last_id", "created_at"},
	"leases":   {"topic", "grp", "msg_id", "lease_until", "owner", "attempts"},
}

type queries struct {
	publish, join, hasWork, dueLeases, retake, lastID, fresh, lease, advance string
	ack, release, renew                                                      string
	getMeta, setMeta                                                         string
	pruneOld, pruneExpired, pruneConsumed, pruneLeases                       string
}

func newQueries(p string) queries {
	m, g, l := `"`+p+`messages"`, `"`+p+`groups"`, `"`+p+`leases"`
	const live = `(m.expires_at IS NULL OR m.expires_at > ?)`
	return queries{
		publish: `INSERT INTO ` + m + ` (topic, data, content_type, metadata, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
		// A new group starts after the newest message: ids only grow, so every message
		// committed after this statement is above it.
		join: `INSERT INTO ` + g + ` (topic, grp, last_id, created_at)
			VALUES (?, ?, COALESCE((SELECT MAX(id) FROM ` + m + `), 0), ?) ON CONFLICT (topic, grp) DO NOTHING`,
		// hasWork is what claim's write transaction would find, read without the write
		// lock, so that idle subscribers polling the file do not queue for it.
		hasWork: `SELECT EXISTS (SELECT 1 FROM ` + l + ` l JOIN ` + m + ` m ON m.id = l.msg_id
				WHERE l.topic = ? AND l.grp = ? AND l.lease_until <= ? AND ` + live + `)
			OR EXISTS (SELECT 1 FROM ` + m + ` m WHERE m.topic = ?
				AND m.id > (SELECT last_id FROM ` + g + ` WHERE topic = ? AND grp = ?) AND ` + live + `)`,
		dueLeases: `SELECT m.id, m.data, m.content_type, m.metadata FROM ` + l + ` l JOIN ` + m + ` m ON m.id = l.msg_id
			WHERE l.topic = ? AND l.grp = ? AND l.lease_until <= ? AND ` + live + ` ORDER BY l.msg_id LIMIT ?`,
		retake: `UPDATE ` + l + ` SET lease_until = ?, owner = ?, attempts = attempts + 1 WHERE topic = ? AND grp = ? AND msg_id = ?`,
		lastID: `SELECT last_id FROM ` + g + ` WHERE topic = ? AND grp = ?`,
		fresh: `SELECT m.id, m.data, m.content_type, m.metadata FROM ` + m + ` m
			WHERE m.topic = ? AND m.id > ? AND ` + live + ` ORDER BY m.id LIMIT ?`,
		lease:   `INSERT INTO ` + l + ` (topic, grp, msg_id, lease_until, owner, attempts) VALUES (?, ?, ?, ?, ?, 1)`,
		advance: `UPDATE ` + g + ` SET last_id = ? WHERE topic = ? AND grp = ? AND last_id < ?`,
		// Settling checks the owner: if this lease expired and another consumer took the
		// message, that consumer's outcome decides, not this one's.
		ack:     `DELETE FROM ` + l + ` WHERE topic = ? AND grp = ? AND msg_id = ? AND owner = ?`,
		release: `UPDATE ` + l + ` SET lease_until = ?, owner = NULL WHERE topic = ? AND grp = ? AND msg_id = ? AND owner = ?`,
		renew: `UPDATE ` + l + ` SET lease_until = ? WHERE topic = ? AND grp = ? AND owner = ?
			AND msg_id IN (SELECT value FROM json_each(?))`,
		getMeta:      `SELECT value FROM "` + p + `meta" WHERE key = ?`,
		setMeta:      `INSERT INTO "` + p + `meta" (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		pruneOld:     `DELETE FROM ` + m + ` WHERE created_at < ?`,
		pruneExpired: `DELETE FROM ` + m + ` WHERE expires_at IS NOT NULL AND expires_at <= ?`,
		// A message no group still has ahead of it and none holds a lease on can never
		// be delivered again: groups that join later start after it.
		pruneConsumed: `DELETE FROM ` + m + ` WHERE
			NOT EXISTS (SELECT 1 FROM ` + g + ` g WHERE g.topic = ` + m + `.topic AND g.last_id < ` + m + `.id)
			AND NOT EXISTS (SELECT 1 FROM ` + l + ` l WHERE l.msg_id = ` + m + `.id)`,
		pruneLeases: `DELETE FROM ` + l + ` WHERE NOT EXISTS (SELECT 1 FROM ` + m + ` m WHERE m.id = ` + l + `.msg_id)`,
	}
}

// migrate creates the tables in one write transaction, so that sidecars starting
// together on a new file do not race, and refuses same-named tables of another layout
// rather than fail later on each call.
func (p *PubSub) migrate(ctx context.Context) error {
	return p.inTx(ctx, func(tx *sql.Tx) error {
		for _, st := range tables(p.opts.TablePrefix) {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				return fmt.Errorf("create tables: %w", err)
			}
		}
		for suffix, cols := range schemaColumns {
			if err := checkColumns(ctx, tx, p.opts.TablePrefix+suffix, cols); err != nil {
				return err
			}
		}
		for _, st := range indexes(p.opts.TablePrefix) {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				return fmt.Errorf("create indexes: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, p.q.setMeta, "schema-version", schemaVersion); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
		return nil
	})
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
			return fmt.Errorf(`table %q exists without column %q: it was not created by this component; set metadata "tablePrefix" to use other tables`, table, c)
		}
	}
	return nil
}

// isBusy reports a lock held by another connection or process for longer than the
// busy timeout, or one SQLite refuses to wait for (a WAL snapshot gone stale).
func isBusy(err error) bool {
	var se *sqlitedrv.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// retryBusy runs f until it succeeds, fails otherwise than busy, or ctx ends. SQLite's
// busy timeout covers most waits; this covers the rest, and a busy timeout shorter
// than a long writer.
func retryBusy(ctx context.Context, f func() error) error {
	backoff := 5 * time.Millisecond
	for {
		err := f()
		if err == nil || !isBusy(err) {
			return err
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// inTx runs f in a write transaction (BEGIN IMMEDIATE, from the DSN), again from the
// start when the database is busy.
func (p *PubSub) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	return retryBusy(ctx, func() error {
		tx, err := p.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if err := f(tx); err != nil {
			return err
		}
		return tx.Commit()
	})
}

func (p *PubSub) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := retryBusy(ctx, func() error {
		var err error
		res, err = p.db.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// delivery is a message leased to a subscription.
type delivery struct {
	id  int64
	msg *pubsub.Message
}

// claim leases up to max messages of the subscription's group: first those whose
// lease has run out (failed, abandoned by a dead consumer, or released), then the next
// ones after the group's position. The write lock is held from the read to the lease,
// so that no other consumer of the group, in this process or another, takes them too.
func (p *PubSub) claim(ctx context.Context, s *subscription, max int) ([]delivery, error) {
	now := p.now().UnixMilli()
	var has bool
	err := retryBusy(ctx, func() error {
		return p.db.QueryRowContext(ctx, p.q.hasWork, s.topic, s.group, now, now, s.topic, s.topic, s.group, now).Scan(&has)
	})
	if err != nil || !has {
		return nil, err
	}
	var out []delivery
	err = p.inTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		now := p.now().UnixMilli()
		until := now + p.opts.VisibilityTimeout.Milliseconds()
		due, err := p.scanMessages(ctx, tx, s.topic, p.q.dueLeases, s.topic, s.group, now, now, max)
		if err != nil {
			return err
		}
		for _, d := range due {
			if _, err := tx.ExecContext(ctx, p.q.retake, until, s.owner, s.topic, s.group, d.id); err != nil {
				return err
			}
		}
		out = append(out, due...)
		if len(out) >= max {
			return nil
		}
		var last int64
		if err := tx.QueryRowContext(ctx, p.q.lastID, s.topic, s.group).Scan(&last); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				// Nothing deletes a group; a hand-edited file is all that gets here.
				return fmt.Errorf("consumer group %q of topic %q is missing from the database", s.group, s.topic)
			}
			return err
		}
		fresh, err := p.scanMessages(ctx, tx, s.topic, p.q.fresh, s.topic, last, now, max-len(out))
		if err != nil {
			return err
		}
		for _, d := range fresh {
			if _, err := tx.ExecContext(ctx, p.q.lease, s.topic, s.group, d.id, until, s.owner); err != nil {
				return err
			}
		}
		if len(fresh) > 0 {
			top := fresh[len(fresh)-1].id
			if _, err := tx.ExecContext(ctx, p.q.advance, top, s.topic, s.group, top); err != nil {
				return err
			}
		}
		out = append(out, fresh...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (p *PubSub) scanMessages(ctx context.Context, tx *sql.Tx, topic, query string, args ...any) ([]delivery, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []delivery
	for rows.Next() {
		var (
			d    delivery
			data []byte
			ct   sql.NullString
			md   sql.NullString
		)
		if err := rows.Scan(&d.id, &data, &ct, &md); err != nil {
			return nil, err
		}
		if data == nil {
			data = []byte{}
		}
		d.msg = &pubsub.Message{Topic: topic, Data: data, ContentType: ct.String}
		if md.Valid && md.String != "" {
			if err := json.Unmarshal([]byte(md.String), &d.msg.Metadata); err != nil {
				return nil, fmt.Errorf("message %d: metadata: %w", d.id, err)
			}
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// settle records a handler's outcome: an acknowledged message's lease is deleted, a
// failed one's becomes free again at redeliverAt.
func (p *PubSub) settle(ctx context.Context, s *subscription, id int64, ok bool, redeliverAt time.Time) error {
	if ok {
		_, err := p.exec(ctx, p.q.ack, s.topic, s.group, id, s.owner)
		return err
	}
	_, err := p.exec(ctx, p.q.release, redeliverAt.UnixMilli(), s.topic, s.group, id, s.owner)
	return err
}

// renew extends the leases of the messages a subscription's handlers are working on,
// so that visibilityTimeout bounds how long a dead consumer holds a message, not how
// long a live one may take.
func (p *PubSub) renew(ctx context.Context, s *subscription, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = strconv.FormatInt(id, 10)
	}
	until := p.now().Add(p.opts.VisibilityTimeout).UnixMilli()
	_, err := p.exec(ctx, p.q.renew, until, s.topic, s.group, s.owner, "["+strings.Join(list, ",")+"]")
	return err
}

// cleanupKey records in the meta table when a sidecar last pruned, so that N sidecars
// sharing the file do not prune N times as often.
const cleanupKey = "last-cleanup"

// maybeCleanup prunes unless another sidecar did so less than an interval ago.
func (p *PubSub) maybeCleanup(ctx context.Context) error {
	return p.inTx(ctx, func(tx *sql.Tx) error {
		now := p.now()
		var last string
		switch err := tx.QueryRowContext(ctx, p.q.getMeta, cleanupKey).Scan(&last); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			// Tolerate a tenth of the interval of jitter between the sidecars' tickers.
			if ms, perr := strconv.ParseInt(last, 10, 64); perr == nil &&
				now.Sub(time.UnixMilli(ms)) < p.opts.CleanupInterval-p.opts.CleanupInterval/10 {
				return nil
			}
		}
		if err := p.prune(ctx, tx, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, p.q.setMeta, cleanupKey, strconv.FormatInt(now.UnixMilli(), 10))
		return err
	})
}

// prune deletes the messages past retention or past their TTL, those no group can
// receive any more, and the leases left without a message.
func (p *PubSub) prune(ctx context.Context, tx *sql.Tx, now time.Time) error {
	if p.opts.Retention > 0 {
		if _, err := tx.ExecContext(ctx, p.q.pruneOld, now.Add(-p.opts.Retention).UnixMilli()); err != nil {
			return fmt.Errorf("delete messages past retention: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, p.q.pruneExpired, now.UnixMilli()); err != nil {
		return fmt.Errorf("delete expired messages: %w", err)
	}
	if _, err := tx.ExecContext(ctx, p.q.pruneConsumed); err != nil {
		return fmt.Errorf("delete consumed messages: %w", err)
	}
	if _, err := tx.ExecContext(ctx, p.q.pruneLeases); err != nil {
		return fmt.Errorf("delete leases of deleted messages: %w", err)
	}
	return nil
}
