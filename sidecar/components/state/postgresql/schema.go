package postgresql

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The state table is Dapr's postgresql v1 table, so that Dapr and Outrigger sidecars
// can share it: key, value (jsonb), isbinary, insertdate, updatedate, expiredate, with
// the row's xmin as the ETag, as Dapr v1 does. Outrigger adds two nullable columns that
// Dapr neither reads nor writes:
//
//   - rawvalue holds a JSON value's bytes as written, because jsonb normalises them
//     (key order, spaces, duplicate keys) and a read must return what was written;
//   - rawxmin is the transaction id of the write that set rawvalue. A write by a Dapr
//     sidecar changes value and the row's xmin but not rawvalue, so rawvalue is only
//     used while rawxmin still equals xmin; otherwise reads fall back to value.
//
// The metadata table and its "migrations" row are Dapr's too, and migrations take
// Dapr's lock (a row lock on the "lock" row), so that sidecars of both kinds starting
// together do not race on the DDL.
const daprMigrationLevel = "2" // Dapr v1: 1 created the table, 2 added expiredate

func (s *Store) migrate(ctx context.Context, pool *pgxpool.Pool) error {
	o := &s.opts
	createMeta := `CREATE TABLE IF NOT EXISTS ` + o.metaTable + ` (key text NOT NULL PRIMARY KEY, value text NOT NULL)`
	// Concurrent CREATE TABLE IF NOT EXISTS can fail on pg_type's unique index, however
	// often it is retried while the winner's transaction is open. An advisory lock on the
	// table's name makes our sidecars create it one at a time; Dapr's lock row, below,
	// then serialises the migrations with Dapr's sidecars too.
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, o.metaTable); err != nil {
			return fmt.Errorf("take the advisory lock for %s: %w", o.metaTable, err)
		}
		if _, err := tx.Exec(ctx, createMeta); err != nil {
			return fmt.Errorf("create metadata table %s: %w", o.metaTable, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+o.metaTable+` (key, value) VALUES ('lock', 'lock') ON CONFLICT (key) DO NOTHING`); err != nil {
			return fmt.Errorf("create migration lock row in %s: %w", o.metaTable, err)
		}
		return nil
	}); err != nil {
		return err
	}

	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var lock string
		if err := tx.QueryRow(ctx, `SELECT value FROM `+o.metaTable+` WHERE key = 'lock' FOR UPDATE`).Scan(&lock); err != nil {
			return fmt.Errorf("take the migration lock in %s: %w", o.metaTable, err)
		}
		cols, err := columns(ctx, tx, o.table)
		if err != nil {
			return err
		}
		if len(cols) == 0 {
			if _, err := tx.Exec(ctx, `CREATE TABLE `+o.table+` (
				key text NOT NULL PRIMARY KEY,
				value jsonb NOT NULL,
				isbinary boolean NOT NULL,
				insertdate timestamp with time zone NOT NULL DEFAULT now(),
				updatedate timestamp with time zone NULL,
				expiredate timestamp with time zone NULL,
				rawvalue text NULL,
				rawxmin bigint NULL
			)`); err != nil {
				return fmt.Errorf("create state table %s: %w", o.table, err)
			}
		} else {
			for _, c := range []string{"key", "value", "isbinary"} {
				if !cols[c] {
					return fmt.Errorf("table %s exists but is not a state table: it has no %q column", o.table, c)
				}
			}
			var add []string
			for _, c := range []struct{ name, typ string }{
				{"expiredate", "timestamp with time zone"}, {"rawvalue", "text"}, {"rawxmin", "bigint"},
			} {
				if !cols[c.name] {
					add = append(add, "ADD COLUMN IF NOT EXISTS "+c.name+" "+c.typ+" NULL")
				}
			}
			if len(add) > 0 {
				if _, err := tx.Exec(ctx, `ALTER TABLE `+o.table+` `+strings.Join(add, ", ")); err != nil {
					return fmt.Errorf("add columns to state table %s: %w", o.table, err)
				}
			}
		}
		var hasIndex bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE i.indrelid = to_regclass($1) AND c.relname = $2)`, o.table, strings.Trim(o.indexName, `"`)).Scan(&hasIndex); err != nil {
			return fmt.Errorf("look up the expiry index of %s: %w", o.table, err)
		}
		if !hasIndex {
			// The periodic cleanup deletes by expiredate; most rows have none.
			if _, err := tx.Exec(ctx, `CREATE INDEX IF NOT EXISTS `+o.indexName+` ON `+o.table+` (expiredate) WHERE expiredate IS NOT NULL`); err != nil {
				return fmt.Errorf("create the expiry index of %s: %w", o.table, err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+o.metaTable+` (key, value) VALUES ('migrations', $1)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE `+o.metaTable+`.value IN ('0', '1')`, daprMigrationLevel); err != nil {
			return fmt.Errorf("record the migration level in %s: %w", o.metaTable, err)
		}
		return nil
	})
}

// columns returns the column names of a table, or none when it does not exist.
func columns(ctx context.Context, tx pgx.Tx, table string) (map[string]bool, error) {
	rows, err := tx.Query(ctx, `SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, table)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", table, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", table, err)
	}
	cols := make(map[string]bool, len(names))
	for _, n := range names {
		cols[n] = true
	}
	return cols, nil
}
