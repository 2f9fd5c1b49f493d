package cachedsql

import (
	"context"
	"database/sql/driver"
)

// stmt wraps a prepared statement of the wrapped driver. Like conn, it is
// used by one goroutine at a time.
type stmt struct {
	c     *conn
	inner driver.Stmt
	query string

	// The wrapped statement's optional interfaces, looked up once.
	execer  driver.StmtExecContext
	queryer driver.StmtQueryContext
	checker driver.NamedValueChecker
}

func newStmt(c *conn, inner driver.Stmt, query string) driver.Stmt {
	s := &stmt{c: c, inner: inner, query: query}
	s.execer, _ = inner.(driver.StmtExecContext)
	s.queryer, _ = inner.(driver.StmtQueryContext)
	s.checker, _ = inner.(driver.NamedValueChecker)
	return withStmtExtras(s)
}

func (s *stmt) Close() error  { return s.inner.Close() }
func (s *stmt) NumInput() int { return s.inner.NumInput() }

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
	s.c.cn.driver.stats.passThroughs.Add(1)
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
	return s.inner.Exec(values)
}

// QueryContext returns the wrapped statement's own rows, unwrapped.
func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.cn.driver.stats.queries.Add(1)
	s.c.cn.driver.stats.passThroughs.Add(1)
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
	return s.inner.Query(values)
}

// CheckNamedValue tries the wrapped statement's checker, then the wrapped
// connection's, then database/sql's default (driver.ErrSkip): the order
// database/sql itself uses.
func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if s.checker != nil {
		return s.checker.CheckNamedValue(nv)
	}
	return s.c.CheckNamedValue(nv)
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
