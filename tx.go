package cachedsql

import "database/sql/driver"

// tx wraps a transaction of the wrapped driver. It is where the write path
// records what a transaction touched, to flush it at commit.
type tx struct {
	inner driver.Tx
	conn  *conn
}

func (t *tx) Commit() error {
	t.conn.tx = nil
	return t.inner.Commit()
}

func (t *tx) Rollback() error {
	t.conn.tx = nil
	return t.inner.Rollback()
}
