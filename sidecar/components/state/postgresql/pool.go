package postgresql

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connPool is a minimal connection pool on pgx.Conn.
//
// pgx's own pgxpool needs github.com/jackc/puddle/v2, which the module's go.mod does
// not list yet, and a package that needs a go.mod update breaks the build of the whole
// module. connPool has only the few methods the store uses; once go.mod lists puddle,
// *pgxpool.Pool can replace it with small changes at the call sites.
type connPool struct {
	cfg         *pgx.ConnConfig
	maxIdleTime time.Duration
	slots       chan struct{} // one token per connection in use

	mu     sync.Mutex
	idle   []idleConn // most recently used last
	closed bool
}

type idleConn struct {
	conn  *pgx.Conn
	since time.Time
}

var errPoolClosed = errors.New("connection pool is closed")

// newPool returns a pool of at most maxConns connections (0: the greater of 4 and the
// number of CPUs, pgxpool's default); connections idle for longer than maxIdleTime are
// closed instead of reused (0: pgxpool's 30 minutes).
func newPool(cfg *pgx.ConnConfig, maxConns int32, maxIdleTime time.Duration) *connPool {
	if maxConns <= 0 {
		maxConns = int32(max(4, runtime.NumCPU()))
	}
	if maxIdleTime <= 0 {
		maxIdleTime = 30 * time.Minute
	}
	return &connPool{cfg: cfg, maxIdleTime: maxIdleTime, slots: make(chan struct{}, maxConns)}
}

// acquire returns a connection, reusing an idle one or dialling; it waits for a free
// slot while maxConns connections are in use.
func (p *connPool) acquire(ctx context.Context) (*pgx.Conn, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, errPoolClosed
	}
	var stale []*pgx.Conn
	var conn *pgx.Conn
	for len(p.idle) > 0 && conn == nil {
		ic := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(ic.since) > p.maxIdleTime || ic.conn.IsClosed() {
			stale = append(stale, ic.conn)
			continue
		}
		conn = ic.conn
	}
	p.mu.Unlock()
	for _, c := range stale {
		closeConn(c)
	}
	if conn != nil {
		return conn, nil
	}
	conn, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return conn, nil
}

// release returns a connection. One that broke, or that is left inside a transaction,
// is closed rather than reused.
func (p *connPool) release(conn *pgx.Conn) {
	defer func() { <-p.slots }()
	if conn.IsClosed() || conn.PgConn().TxStatus() != 'I' {
		closeConn(conn)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		closeConn(conn)
		return
	}
	p.idle = append(p.idle, idleConn{conn: conn, since: time.Now()})
	p.mu.Unlock()
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// Close closes the idle connections; those in use are closed as they are released.
func (p *connPool) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, ic := range idle {
		closeConn(ic.conn)
	}
}

func (p *connPool) Ping(ctx context.Context) error {
	c, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	return c.Ping(ctx)
}

func (p *connPool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c, err := p.acquire(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer p.release(c)
	return c.Exec(ctx, sql, args...)
}

// QueryRow runs a query and scans its first row (pgx.ErrNoRows when there is none).
// Unlike pgxpool's QueryRow it scans at once, so that the connection is released here.
func (p *connPool) QueryRow(ctx context.Context, sql string, args []any, dest ...any) error {
	c, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	return c.QueryRow(ctx, sql, args...).Scan(dest...)
}

// Query runs a query and hands each row to fn; the connection is held until the rows
// are read.
func (p *connPool) Query(ctx context.Context, sql string, args []any, fn func(pgx.Rows) error) error {
	c, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// BeginFunc runs fn in a transaction, committed when fn returns nil and rolled back
// otherwise.
func (p *connPool) BeginFunc(ctx context.Context, fn func(pgx.Tx) error) error {
	c, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	return pgx.BeginFunc(ctx, c, fn)
}
