package postgresql

import (
	"context"
	"fmt"
	"time"
)

// claimCleanupQuery stamps the "last-cleanup" row of the metadata table, Dapr's way of
// sharing the periodic cleanup between the sidecars of one table: only the sidecar
// whose stamp succeeds (the last one is older than the interval, $1 milliseconds) runs
// the cleanup this round.
func claimCleanupQuery(meta string) string {
	return `INSERT INTO ` + meta + ` (key, value) VALUES ('last-cleanup', now()::text)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value
		WHERE (EXTRACT('epoch' FROM now() - ` + meta + `.value::timestamp with time zone) * 1000)::bigint > $1`
}

// CleanupExpired deletes the expired rows now and returns how many it deleted. Expired
// rows are invisible whether or not they have been deleted; this only reclaims space.
func (s *Store) CleanupExpired(ctx context.Context) (int64, error) {
	db, err := s.db()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	tag, err := db.Exec(ctx, s.q.cleanup)
	if err != nil {
		return 0, fmt.Errorf("%s: delete expired rows: %w", TypeName, err)
	}
	return tag.RowsAffected(), nil
}

// cleanupIfDue runs the cleanup when no sidecar sharing the metadata table has run one
// within the interval.
func (s *Store) cleanupIfDue(ctx context.Context) (ran bool, deleted int64, err error) {
	db, err := s.db()
	if err != nil {
		return false, 0, err
	}
	claimCtx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	// A little slack, so that a tick arriving a hair early does not skip its round.
	window := s.opts.CleanupInterval - s.opts.CleanupInterval/20
	tag, err := db.Exec(claimCtx, s.q.claimCleanup, window.Milliseconds())
	if err != nil {
		return false, 0, fmt.Errorf("%s: claim the cleanup: %w", TypeName, err)
	}
	if tag.RowsAffected() == 0 {
		return false, 0, nil
	}
	n, err := s.CleanupExpired(ctx)
	return true, n, err
}

// cleanupLoop runs until ctx is cancelled (by Close).
func (s *Store) cleanupLoop(ctx context.Context, tick <-chan time.Time, stopTick func()) {
	defer close(s.cleanupDone)
	defer stopTick()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			ran, n, err := s.cleanupIfDue(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Error(err, "Periodic cleanup of expired state failed")
			case ran:
				s.log.V(1).Info("Deleted expired state", "rows", n)
			}
		}
	}
}
