//go:build go1.27

package cachedsql

import (
	"database/sql/driver"
)

// withWriteScanner exposes RowsColumnScanner when the wrapped rows have it:
// its presence alone makes database/sql scan through it (pgx's path for
// arrays into Go slices).
func withWriteScanner(r *writeRows) driver.Rows {
	cs, ok := r.inner.(driver.RowsColumnScanner)
	if !ok {
		return r
	}
	return &writeColumnScanner{writeRows: r, cs: cs}
}

type writeColumnScanner struct {
	*writeRows
	cs driver.RowsColumnScanner
}

func (r *writeColumnScanner) NextRow() error {
	for {
		err := r.cs.NextRow()
		if err != nil {
			return r.end(err)
		}
		if r.hidden > 0 {
			hidden := make([]driver.Value, r.hidden)
			for i := range hidden {
				var v any
				if err := r.cs.ScanColumn(driver.ScanContext{}, r.visible()+i, &v); err != nil {
					return r.end(err)
				}
				hidden[i] = v
			}
			r.onRow(hidden)
			if r.visible() == 0 {
				continue // a write without RETURNING of its own
			}
		}
		return nil
	}
}

func (r *writeColumnScanner) ScanColumn(scanCtx driver.ScanContext, index int, dest any) error {
	return r.cs.ScanColumn(scanCtx, index, dest)
}
