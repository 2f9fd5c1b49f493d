package cachedsql

import (
	"context"
	"database/sql/driver"
	"errors"

	"github.com/cachedsql/cachedsql/parser"
)

// conn wraps one connection of the wrapped driver. database/sql uses a
// driver.Conn from one goroutine at a time, so its fields need no lock.
type conn struct {
	inner driver.Conn
	cn    *Connector
	pl    *planner // nil without a cache: everything passes through

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

	// textTx is set while a transaction begun with SQL text (BEGIN) is open.
	textTx bool
	// sessionChanged is set once the session ran something that changes
	// how names or rows resolve (SET search_path, SET ROLE, ...): from
	// then on this connection never uses the cache.
	sessionChanged bool

	// pending is what the open transaction must flush when it commits.
	pending *flushSet

	// spareRows is the last replay's rows, reused by the next once closed
	// (with the scan plans it built). database/sql serialises every call
	// on a connection and on its rows under one lock, which orders all
	// uses of it.
	spareRows *pgxRows
}

func newConn(inner driver.Conn, cn *Connector, pl *planner) driver.Conn {
	c := &conn{inner: inner, cn: cn, pl: pl}
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
	p := c.plan(query) // observed when it runs, not when prepared
	if p != nil && p.lookup != nil && c.pgxConn() != nil {
		// A hit needs no database round trip, so the inner statement is
		// prepared on the first miss. pgx statements have no
		// ColumnConverter, so the statement's shape is known already.
		return newLazyStmt(c, query, p), nil
	}
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
	return newStmt(c, si, query, p), nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.execer == nil && c.legacyExecer == nil {
		// database/sql then prepares the statement: our Stmt takes over.
		return nil, driver.ErrSkip
	}
	c.cn.driver.stats.execs.Add(1)
	p := c.plan(query)
	if p == nil || !p.write.needed() {
		c.cn.driver.stats.passThroughs.Add(1)
	}
	if p == nil {
		return c.passExec(ctx, query, args)
	}
	return c.execPlanned(ctx, p, runner{c: c, query: query, args: args})
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.queryer == nil && c.legacyQueryer == nil {
		return nil, driver.ErrSkip
	}
	c.cn.driver.stats.queries.Add(1)
	p := c.plan(query)
	if p == nil {
		c.cn.driver.stats.passThroughs.Add(1)
		return c.passQuery(ctx, query, args)
	}
	return c.queryPlanned(ctx, p, runner{c: c, query: query, args: args})
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

// CheckNamedValue is what database/sql calls before ExecContext or
// QueryContext on the connection. When the wrapped connection has neither
// Execer nor Queryer, both return driver.ErrSkip and database/sql converts
// the arguments again for the statement it prepares instead: converting them
// here would refuse arguments only the statement's checker or
// ColumnConverter accepts, which database/sql never does for that driver.
// (A wrapped connection with Execer but no Queryer, or the reverse, still
// gets its arguments converted twice.)
func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if c.execer == nil && c.legacyExecer == nil && c.queryer == nil && c.legacyQueryer == nil {
		return nil
	}
	return c.checkNamedValue(nv)
}

// checkNamedValue defers to the wrapped connection, or to database/sql's
// default conversion (driver.ErrSkip) when it has no checker.
func (c *conn) checkNamedValue(nv *driver.NamedValue) error {
	if c.checker == nil {
		return driver.ErrSkip
	}
	return c.checker.CheckNamedValue(nv)
}

// plan returns the plan of query, or nil without a cache.
func (c *conn) plan(query string) *plan {
	if c.pl == nil {
		return nil
	}
	return c.pl.plan(query)
}

// observe tracks transactions begun in SQL text and session changes that
// make cached rows wrong for this session. It errs towards bypassing.
func (c *conn) observe(st *parser.Statement) {
	switch st.Kind {
	case parser.TxControl:
		switch st.Tx.Op {
		case parser.TxBegin:
			c.textTx = true
		case parser.TxCommit, parser.TxRollback, parser.TxPrepare:
			c.textTx = st.Tx.Chain
		}
	case parser.Session:
		if st.Session.Affects&(parser.AffectsSearchPath|parser.AffectsRole|parser.AffectsSessionAuthorization) != 0 {
			c.sessionChanged = true
		}
	case parser.Multi:
		for i := range st.Parts {
			c.observe(&st.Parts[i])
		}
	case parser.Unknown:
		// It may be anything, a BEGIN or a SET included.
		c.sessionChanged = true
	}
	for _, f := range st.Functions {
		if f == "set_config" || f == "pg_catalog.set_config" {
			c.sessionChanged = true // SELECT set_config('search_path', ...)
		}
	}
}

// resetSession runs when database/sql reuses the connection.
func (c *conn) resetSession(ctx context.Context) error {
	c.tx = nil
	c.textTx = false
	c.pending = nil
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
