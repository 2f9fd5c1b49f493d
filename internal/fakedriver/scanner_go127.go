//go:build go1.27

package fakedriver

import (
	"database/sql"
	"database/sql/driver"
	"io"
)

// iColumnScanner is driver.RowsColumnScanner without driver.Rows, which
// rowsCore provides.
type iColumnScanner interface {
	NextRow() error
	ScanColumn(scanCtx driver.ScanContext, index int, dest any) error
}

func (r *rows) NextRow() error {
	r.c.record("Rows.NextRow")
	if r.pos >= len(r.data) {
		return io.EOF
	}
	r.pos++
	return nil
}

func (r *rows) ScanColumn(scanCtx driver.ScanContext, index int, dest any) error {
	r.c.record("Rows.ScanColumn %d", index)
	return sql.ConvertAssign(scanCtx, dest, r.data[r.pos-1][index])
}
