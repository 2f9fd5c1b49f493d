package cachedsql

import (
	"context"
	"database/sql/driver"
)

// tx wraps a transaction of the wrapped driver. The keys and tables its
// statements touched accumulate in the connection's flush set; Commit
// protects them in the cache, commits, and releases them.
type tx struct {
	inner driver.Tx
	conn  *conn
}

func (t *tx) Commit() error {
	c := t.conn
	c.tx = nil
	if c.pending.empty() {
		return t.inner.Commit()
	}
	// driver.Tx has no context: the flush has its own deadlines.
	return c.commitPending(context.Background(), t.inner.Commit, func() { t.inner.Rollback() })
}

// Rollback flushes nothing: the transaction changed nothing.
func (t *tx) Rollback() error {
	t.conn.tx = nil
	t.conn.pending = nil
	return t.inner.Rollback()
}
