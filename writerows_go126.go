//go:build !go1.27

package cachedsql

import "database/sql/driver"

// Before Go 1.27 there is no RowsColumnScanner to keep.
func withWriteScanner(r *writeRows) driver.Rows { return r }
