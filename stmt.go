package cachedsql

import (
	"context"
	"database/sql/driver"
)

// stmt wraps a prepared statement of the wrapped driver. Like conn, it is
// used by one goroutine at a time.
type stmt struct {
	c     *conn
	query string
	plan  *plan // nil without a cache

	// inner is the wrapped statement; nil until first needed for a lazy
	// statement (a cacheable lookup on pgx), whose NumInput comes from the
	// parser instead.
	inner    driver.Stmt
	numInput int

	// The wrapped statement's optional interfaces, looked up once.
	execer  driver.StmtExecContext
	queryer driver.StmtQueryContext
	checker driver.NamedValueChecker
}

func newStmt(c *conn, inner driver.Stmt, query string, p *plan) driver.Stmt {
	s := &stmt{c: c, query: query, plan: p}
	s.setInner(inner)
	return withStmtExtras(s)
}

func newLazyStmt(c *conn, query string, p *plan) driver.Stmt {
	return &stmt{c: c, query: query, plan: p, numInput: p.stmt.MaxParam}
}

func (s *stmt) setInner(inner driver.Stmt) {
	s.inner = inner
	s.execer, _ = inner.(driver.StmtExecContext)
	s.queryer, _ = inner.(driver.StmtQueryContext)
	s.checker, _ = inner.(driver.NamedValueChecker)
}

// prepared returns the wrapped statement, preparing it on first use.
func (s *stmt) prepared(ctx context.Context) (driver.Stmt, error) {
	if s.inner != nil {
		return s.inner, nil
	}
	var si driver.Stmt
	var err error
	if s.c.preparer != nil {
		si, err = s.c.preparer.PrepareContext(ctx, s.query)
	} else {
		si, err = s.c.inner.Prepare(s.query)
	}
	if err != nil {
		return nil, err
	}
	s.setInner(si)
	return si, nil
}

func (s *stmt) Close() error {
	if s.inner == nil {
		return nil
	}
	return s.inner.Close()
}

func (s *stmt) NumInput() int {
	if s.inner == nil {
		return s.numInput
	}
	return s.inner.NumInput()
}

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), valuesToNamedValues(args))
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), valuesToNamedValues(args))
}

// ExecContext follows database/sql's ctxDriverStmtExec when the wrapped
// statement lacks StmtExecContext.
func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.cn.driver.stats.execs.Add(1)
	if s.plan == nil || !s.plan.write.needed() {
		s.c.cn.driver.stats.passThroughs.Add(1)
	}
	if s.plan != nil {
		return s.c.execPlanned(ctx, s.plan, runner{c: s.c, si: s, query: s.query, args: args})
	}
	return s.innerExec(ctx, args)
}

// innerExec runs the wrapped statement, as database/sql's
// ctxDriverStmtExec would.
func (s *stmt) innerExec(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	si, err := s.prepared(ctx)
	if err != nil {
		return nil, err
	}
	if s.execer != nil {
		return s.execer.ExecContext(ctx, args)
	}
	values, err := namedValuesToValues(args)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return si.Exec(values)
}

// QueryContext serves a cacheable lookup like conn.QueryContext does, and
// otherwise returns the wrapped statement's own rows, unwrapped.
func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.cn.driver.stats.queries.Add(1)
	if s.plan == nil {
		s.c.cn.driver.stats.passThroughs.Add(1)
		return s.innerQuery(ctx, args)
	}
	return s.c.queryPlanned(ctx, s.plan, runner{c: s.c, si: s, query: s.query, args: args})
}

// innerQuery runs the wrapped statement, as database/sql's
// ctxDriverStmtQuery would.
func (s *stmt) innerQuery(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	si, err := s.prepared(ctx)
	if err != nil {
		return nil, err
	}
	if s.queryer != nil {
		return s.queryer.QueryContext(ctx, args)
	}
	values, err := namedValuesToValues(args)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return si.Query(values)
}

// CheckNamedValue tries the wrapped statement's checker, then the wrapped
// connection's, then database/sql's default (driver.ErrSkip): the order
// database/sql itself uses.
func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if s.checker != nil {
		return s.checker.CheckNamedValue(nv)
	}
	return s.c.checkNamedValue(nv)
}

func valuesToNamedValues(values []driver.Value) []driver.NamedValue {
	named := make([]driver.NamedValue, len(values))
	for i, v := range values {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return named
}

var (
	_ driver.Stmt              = (*stmt)(nil)
	_ driver.StmtExecContext   = (*stmt)(nil)
	_ driver.StmtQueryContext  = (*stmt)(nil)
	_ driver.NamedValueChecker = (*stmt)(nil)
)
