package cachedsql

import (
	"context"
	"database/sql/driver"
	"io"
	"reflect"
)

// queryWrite runs a write sent through Query. Its rows are the
// statement's own, wrapped: the key columns cachedsql appended to RETURNING
// are hidden, and the flush happens when the rows end (an autocommit
// write commits when its rows are drained, not when Query returns).
func (c *conn) queryWrite(ctx context.Context, w *writePlan, r runner, inTx bool) (driver.Rows, error) {
	set := c.newFlushSet(w)
	rp := w.returning
	if rp == nil {
		if inTx {
			c.addPending(set)
			return r.queryRows(ctx)
		}
		release, err := c.protect(ctx, set, func() {})
		if err != nil {
			return nil, err
		}
		rows, err := r.queryRows(ctx)
		if err != nil {
			release()
			return nil, err
		}
		return closeHook(rows, func() error {
			release()
			return nil
		}), nil
	}

	var itx driver.Tx
	if !inTx {
		var err error
		if itx, err = c.beginImplicit(ctx); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (driver.Rows, error) {
		if itx != nil {
			itx.Rollback()
		} else {
			c.addPending(set)
		}
		return nil, err
	}
	pre, err := c.preRead(ctx, rp, r, set)
	if err != nil {
		return fail(err)
	}
	rows, err := c.queryDirect(ctx, rp.query, r.args)
	if err != nil {
		return fail(err)
	}
	wr := &writeRows{inner: rows, hidden: len(rp.keyCols)}
	wr.onRow = func(keys []driver.Value) { c.addReturnedKeys(set, rp, pre, keys) }
	wr.onEnd = func(complete bool) error {
		if !complete {
			// Closed before the end: the rows not read were written too.
			set.addTable(c.tableGens(rp.table))
		}
		if itx == nil {
			c.addPending(set)
			return nil
		}
		release, err := c.protect(ctx, set, func() { itx.Rollback() })
		if err != nil {
			return err
		}
		err = itx.Commit()
		release()
		return errWriteRows(err)
	}
	return withWriteScanner(wr), nil
}

// closeHook calls done once when rows end or are closed.
func closeHook(rows driver.Rows, done func() error) driver.Rows {
	wr := &writeRows{inner: rows, onEnd: func(bool) error { return done() }}
	return withWriteScanner(wr)
}

// writeRows passes a write's rows through, hiding the trailing hidden
// columns (whose values go to onRow), and calls onEnd exactly once: at the
// end of the rows (complete), at an error or at Close (not complete). The
// column-type methods answer for the wrapped rows, and answer as
// database/sql does for rows lacking them when the wrapped rows do.
type writeRows struct {
	inner  driver.Rows
	hidden int
	onRow  func(hidden []driver.Value)
	onEnd  func(complete bool) error

	buf   []driver.Value
	ended bool
}

func (r *writeRows) visible() int { return len(r.inner.Columns()) - r.hidden }

func (r *writeRows) Columns() []string { return r.inner.Columns()[:r.visible()] }

func (r *writeRows) Next(dest []driver.Value) error {
	if r.buf == nil {
		r.buf = make([]driver.Value, len(r.inner.Columns()))
	}
	for {
		err := r.inner.Next(r.buf)
		if err != nil {
			return r.end(err)
		}
		if r.onRow != nil {
			r.onRow(r.buf[r.visible():])
		}
		if r.visible() == 0 && len(dest) == 0 && r.hidden > 0 {
			// The caller sent a write without RETURNING through Query: it
			// sees no rows, but every one must be read for its keys.
			continue
		}
		copy(dest, r.buf[:r.visible()])
		return nil
	}
}

// end runs onEnd once; at the end of the rows its error replaces io.EOF.
func (r *writeRows) end(err error) error {
	if r.ended {
		return err
	}
	r.ended = true
	if err == io.EOF {
		// Close first: the connection must be free for the commit.
		if cerr := r.inner.Close(); cerr != nil {
			r.onEnd(false)
			return cerr
		}
		if ferr := r.onEnd(true); ferr != nil {
			return ferr
		}
		return io.EOF
	}
	r.inner.Close()
	r.onEnd(false)
	return err
}

func (r *writeRows) Close() error {
	if r.ended {
		return nil
	}
	r.ended = true
	cerr := r.inner.Close()
	ferr := r.onEnd(false)
	if cerr != nil {
		return cerr
	}
	return ferr
}

func (r *writeRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.inner.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *writeRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.inner.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *writeRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.inner.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *writeRows) ColumnTypeNullable(i int) (bool, bool) {
	if t, ok := r.inner.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *writeRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.inner.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *writeRows) HasNextResultSet() bool {
	if t, ok := r.inner.(driver.RowsNextResultSet); ok {
		return t.HasNextResultSet()
	}
	return false
}

func (r *writeRows) NextResultSet() error {
	if t, ok := r.inner.(driver.RowsNextResultSet); ok {
		return t.NextResultSet()
	}
	return io.EOF
}
