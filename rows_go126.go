//go:build !go1.27

package cachedsql

import "database/sql/driver"

// Before Go 1.27, database/sql never scans through a driver's
// RowsColumnScanner, so every wrapped rows can be recorded.
func innerScansColumns(driver.Rows) bool { return false }

func withColumnScanner(g *genericRows) driver.Rows { return g }
