package cachedsql

import (
	"context"
	"database/sql/driver"
	"errors"
)

// conn wraps one connection of the wrapped driver. database/sql uses a
// driver.Conn from one goroutine at a time, so its fields need no lock.
type conn struct {
	inner driver.Conn
	cn    *Connector

	// The wrapped connection's optional interfaces, looked up once.
	execer   driver.ExecerContext
	queryer  driver.QueryerContext
	preparer driver.ConnPrepareContext
	beginner driver.ConnBeginTx
	pinger   driver.Pinger
	checker  driver.NamedValueChecker
	// The deprecated interfaces are database/sql's own fallbacks.
	legacyExecer  driver.Execer
	legacyQueryer driver.Queryer

	tx *tx // the open transaction, if any
}

func newConn(inner driver.Conn, cn *Connector) driver.Conn {
	c := &conn{inner: inner, cn: cn}
	c.execer, _ = inner.(driver.ExecerContext)
	c.queryer, _ = inner.(driver.QueryerContext)
	c.preparer, _ = inner.(driver.ConnPrepareContext)
	c.beginner, _ = inner.(driver.ConnBeginTx)
	c.pinger, _ = inner.(driver.Pinger)
	c.checker, _ = inner.(driver.NamedValueChecker)
	c.legacyExecer, _ = inner.(driver.Execer)
	c.legacyQueryer, _ = inner.(driver.Queryer)
	return withConnExtras(c)
}

// Unwrap returns the wrapped driver's connection, for sql.Conn.Raw users.
// Statements sent through it bypass cachedsql: writes made there are not
// flushed from the cache.
func (c *conn) Unwrap() driver.Conn { return c.inner }

func (c *conn) Close() error { return c.inner.Close() }

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext follows database/sql's ctxDriverPrepare when the wrapped
// connection lacks ConnPrepareContext.
func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var si driver.Stmt
	var err error
	if c.preparer != nil {
		si, err = c.preparer.PrepareContext(ctx, query)
	} else {
		si, err = c.inner.Prepare(query)
		if err == nil && ctx.Err() != nil {
			si.Close()
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return newStmt(c, si, query), nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.execer == nil && c.legacyExecer == nil {
		// database/sql then prepares the statement: our Stmt takes over.
		return nil, driver.ErrSkip
	}
	c.cn.driver.stats.execs.Add(1)
	c.cn.driver.stats.passThroughs.Add(1)
	return c.passExec(ctx, query, args)
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.queryer == nil && c.legacyQueryer == nil {
		return nil, driver.ErrSkip
	}
	c.cn.driver.stats.queries.Add(1)
	c.cn.driver.stats.passThroughs.Add(1)
	return c.passQuery(ctx, query, args)
}

// passExec sends a statement to the wrapped connection untouched, the way
// database/sql's ctxDriverExec would.
func (c *conn) passExec(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.execer != nil {
		return c.execer.ExecContext(ctx, query, args)
	}
	values, err := namedValuesToValues(args)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.legacyExecer.Exec(query, values)
}

// passQuery returns the wrapped driver's own rows, unwrapped, so every
// optional Rows interface it has survives.
func (c *conn) passQuery(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.queryer != nil {
		return c.queryer.QueryContext(ctx, query, args)
	}
	values, err := namedValuesToValues(args)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.legacyQueryer.Query(query, values)
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx never drops options: without ConnBeginTx it refuses what the
// wrapped connection cannot honour, as database/sql's ctxDriverBegin does.
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var ti driver.Tx
	var err error
	if c.beginner != nil {
		ti, err = c.beginner.BeginTx(ctx, opts)
	} else {
		if opts.Isolation != driver.IsolationLevel(0) {
			return nil, errors.New("sql: driver does not support non-default isolation level")
		}
		if opts.ReadOnly {
			return nil, errors.New("sql: driver does not support read-only transactions")
		}
		ti, err = c.inner.Begin()
		if err == nil && ctx.Err() != nil {
			ti.Rollback()
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	c.tx = &tx{inner: ti, conn: c}
	return c.tx, nil
}

// Ping reports success when the wrapped connection cannot ping, as
// database/sql does.
func (c *conn) Ping(ctx context.Context) error {
	if c.pinger == nil {
		return nil
	}
	return c.pinger.Ping(ctx)
}

// CheckNamedValue defers to the wrapped connection, or to database/sql's
// default conversion (driver.ErrSkip) when it has no checker.
func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if c.checker == nil {
		return driver.ErrSkip
	}
	return c.checker.CheckNamedValue(nv)
}

// resetSession runs when database/sql reuses the connection.
func (c *conn) resetSession(ctx context.Context) error {
	c.tx = nil
	return c.inner.(driver.SessionResetter).ResetSession(ctx)
}

func namedValuesToValues(named []driver.NamedValue) ([]driver.Value, error) {
	values := make([]driver.Value, len(named))
	for i, nv := range named {
		if nv.Name != "" {
			return nil, errors.New("sql: driver does not support the use of Named Parameters")
		}
		values[i] = nv.Value
	}
	return values, nil
}

// Compile-time checks of what every conn implements, whatever it wraps.
var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
)

// InnerConn returns the wrapped driver's connection when driverConn is a
// cachedsql connection (as sql.Conn.Raw passes it), and driverConn itself
// otherwise. Statements sent through it bypass the cache and its flushes.
func InnerConn(driverConn any) any {
	if u, ok := driverConn.(interface{ Unwrap() driver.Conn }); ok {
		return u.Unwrap()
	}
	return driverConn
}
