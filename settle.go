package cachedsql

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"time"
)

// A COMMIT, or an autocommit statement, whose connection broke before its
// answer arrived has an unknown outcome, and the server may still commit it
// after the client gave up: a statement waiting on a row lock finishes when
// the lock is released, whether or not anyone listens. Releasing the
// write's markers at once would let a filler store the row as it was
// before, and the late commit would leave that entry stale until it
// expires. So the release waits until the server session can no longer
// commit anything: on PostgreSQL, until its backend is gone (terminated if
// need be); the markers keep protecting the keys meanwhile, and a release
// that comes after they expired clears whatever was filled in between.

// settleTimeout bounds how long a background settle tries to reach the
// database before releasing anyway.
const settleTimeout = time.Minute

// releaseAfter runs release once the statement or COMMIT that returned err
// can no longer change the database: at once, unless the connection broke
// under it (see above).
func (c *conn) releaseAfter(err error, release func()) {
	pid, lost := c.lostSession(err)
	if !lost {
		release()
		return
	}
	f := c.cn.flusher
	lostAt := time.Now()
	c.cn.cfg.logger().Warn("cachedsql: the connection broke under a write; its cache markers stay until the server session is gone",
		"pid", pid, "error", err)
	f.bg.Add(1)
	go func() {
		defer f.bg.Done()
		defer release()
		c.cn.settleSession(f.stopCtx, pid, lostAt)
	}()
}

// lostSession reports the server process of a pgx connection that broke
// under err, the case in which the server may still commit.
func (c *conn) lostSession(err error) (pid uint32, lost bool) {
	if err == nil {
		return 0, false
	}
	pc := c.pgxConn()
	if pc == nil || !pc.IsClosed() {
		return 0, false // a server error: the outcome is known
	}
	pid = pc.PgConn().PID()
	return pid, pid != 0
}

// settleSession returns once PostgreSQL's backend pid, which served a
// session that broke at lostAt, is gone: it is asked to terminate (a
// session whose client is gone has nothing left to do but commit late),
// and then watched until it has exited. Only a backend that started
// before lostAt is touched: a pid may be reused. It gives up after
// settleTimeout, or when the connector closes.
func (cn *Connector) settleSession(ctx context.Context, pid uint32, lostAt time.Time) {
	deadline := time.Now().Add(settleTimeout)
	pause := 20 * time.Millisecond
	terminated := false
	for {
		gone, err := cn.backendGone(ctx, pid, lostAt, !terminated)
		if err == nil {
			if gone {
				return
			}
			terminated = true
		}
		if time.Now().Add(pause).After(deadline) {
			cn.cfg.logger().Warn("cachedsql: could not see a broken session end; releasing its write's cache markers anyway",
				"pid", pid, "error", err)
			return
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(2*pause, time.Second)
	}
}

// backendGone asks, on a fresh connection, whether backend pid (started
// before lostAt) still runs, terminating it first if terminate is set.
func (cn *Connector) backendGone(ctx context.Context, pid uint32, lostAt time.Time, terminate bool) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	dc, err := cn.base.Connect(ctx)
	if err != nil {
		return false, err
	}
	defer dc.Close()
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return false, errors.New("cachedsql: settle: the wrapped connection cannot query")
	}
	// A row while the backend runs; terminating it when asked
	// (pg_terminate_backend is false, with a warning, when the role may not
	// signal it: the row still says it runs).
	// "Started before lostAt" on the server's own clock: now() less the
	// time elapsed since, measured on this process's monotonic clock, so
	// that clock skew between the two can neither hide the session nor
	// reach a newer one that reused its pid.
	const started = `backend_start < now() - make_interval(secs => $2::float8)`
	query := `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND ` + started
	if terminate {
		query = `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND ` + started
	}
	since := time.Since(lostAt).Seconds()
	rows, err := q.QueryContext(ctx, query, []driver.NamedValue{{Ordinal: 1, Value: int64(pid)}, {Ordinal: 2, Value: since}})
	if err != nil {
		return false, err
	}
	defer rows.Close()
	err = rows.Next(make([]driver.Value, len(rows.Columns())))
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}
