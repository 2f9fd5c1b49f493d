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
			c.releaseAfter(err, release)
			return nil, err
		}
		return closeHook(rows, func(failed error) error {
			c.releaseAfter(failed, release)
			c.flushAgainIfOpened(set)
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
	wr.onEnd = func(failed error) error {
		switch {
		case failed != nil && itx != nil:
			// The statement failed: its implicit transaction wrote nothing.
			itx.Rollback()
			return nil
		case failed != nil:
			// Its keys may not all have been read, and a savepoint may
			// keep what it did write: flush the table at commit.
			set.addTable(c.tableGens(rp.table))
			c.addPending(set)
			return nil
		case itx == nil:
			c.addPending(set)
			return nil
		}
		release, err := c.protect(ctx, set, func() { itx.Rollback() })
		if err != nil {
			return err
		}
		err = itx.Commit()
		c.releaseAfter(err, release)
		return errWriteRows(err)
	}
	return withWriteScanner(wr), nil
}

// closeHook calls done once when rows end or are closed, with the error
// that ended them (nil when every row was read).
func closeHook(rows driver.Rows, done func(failed error) error) driver.Rows {
	wr := &writeRows{inner: rows, onEnd: done}
	return withWriteScanner(wr)
}

// writeRows passes a write's rows through, hiding the trailing hidden
// columns (whose values go to onRow), and calls onEnd exactly once, when
// the rows end: with nil when every row was read (at EOF, or at a Close
// that read the rest), else with the error that ended them. The
// column-type methods answer for the wrapped rows, and answer as
// database/sql does for rows lacking them when the wrapped rows do.
type writeRows struct {
	inner  driver.Rows
	hidden int
	onRow  func(hidden []driver.Value)
	onEnd  func(failed error) error

	buf   []driver.Value
	ended bool
}

func (r *writeRows) visible() int { return len(r.inner.Columns()) - r.hidden }

func (r *writeRows) Columns() []string { return r.inner.Columns()[:r.visible()] }

func (r *writeRows) Next(dest []driver.Value) error {
	for {
		err := r.next()
		if err != nil {
			return r.end(err)
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

// next reads one row into buf and hands its hidden columns to onRow.
func (r *writeRows) next() error {
	if r.buf == nil {
		r.buf = make([]driver.Value, len(r.inner.Columns()))
	}
	if err := r.inner.Next(r.buf); err != nil {
		return err
	}
	if r.onRow != nil {
		r.onRow(r.buf[r.visible():])
	}
	return nil
}

// end runs onEnd once; at the end of the rows its error replaces io.EOF.
func (r *writeRows) end(err error) error {
	if r.ended {
		return err
	}
	r.ended = true
	if err != io.EOF {
		r.inner.Close()
		r.onEnd(err)
		return err
	}
	// Close first: the connection must be free for the commit.
	if cerr := r.inner.Close(); cerr != nil {
		r.onEnd(cerr)
		return cerr
	}
	if ferr := r.onEnd(nil); ferr != nil {
		return ferr
	}
	return io.EOF
}

// Close reads what the caller left: Row.Scan reads one row and closes, and
// the keys of the rest (the database wrote them all) keep the flush exact.
func (r *writeRows) Close() error {
	if r.ended {
		return nil
	}
	var err error
	for err == nil {
		err = r.next()
	}
	if err = r.end(err); err == io.EOF {
		return nil
	}
	return err
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
