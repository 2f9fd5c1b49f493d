//go:build go1.27

package cachedsql

import (
	"database/sql"
	"database/sql/driver"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
)

// Under Go 1.27, database/sql scans through stdlib.Rows.ScanColumn, which
// hands destinations database/sql cannot fill to pgx: the replay must too.
func init() {
	for name, mk := range map[string]func() any{
		"[]int64":            func() any { return new([]int64) },
		"[]string":           func() any { return new([]string) },
		"[]*string":          func() any { return new([]*string) },
		"pgtype.Int8":        func() any { return new(pgtype.Int8) },
		"pgtype.Text":        func() any { return new(pgtype.Text) },
		"pgtype.Numeric":     func() any { return new(pgtype.Numeric) },
		"pgtype.Timestamptz": func() any { return new(pgtype.Timestamptz) },
		"pgtype.Interval":    func() any { return new(pgtype.Interval) },
		"pgtype.UUID":        func() any { return new(pgtype.UUID) },
		"map":                func() any { return new(map[string]any) },
		"pgtype.FlatArray":   func() any { return new(pgtype.FlatArray[pgtype.Int8]) },
	} {
		destKinds[name] = func(*sql.ColumnType) any { return mk() }
	}
}

func TestPgxRowsColumnScanner(t *testing.T) {
	if _, ok := testPgxResult().replay(pgtype.NewMap()).(driver.RowsColumnScanner); !ok {
		t.Error("pgx replay does not implement driver.RowsColumnScanner")
	}
	if !reflect.TypeFor[*stdlib.Rows]().Implements(reflect.TypeFor[driver.RowsColumnScanner]()) {
		t.Error("stdlib.Rows no longer implements driver.RowsColumnScanner: revisit rows_go127.go")
	}
	if _, ok := testGenericResult().replay(nil).(driver.RowsColumnScanner); ok {
		t.Error("generic replay implements driver.RowsColumnScanner though the recorded rows did not")
	}
}

// columnScannerRows are generic rows that scan columns themselves.
type columnScannerRows struct{ driver.Rows }

func (columnScannerRows) NextRow() error { return nil }
func (columnScannerRows) ScanColumn(driver.ScanContext, int, any) error {
	return nil
}

func TestGenericColumnScannerNotCacheable(t *testing.T) {
	inner := &valueRows{cols: []string{"a"}, rows: [][]driver.Value{{int64(1)}}}
	rows := columnScannerRows{inner}
	if err := materializable(rows); err == nil {
		t.Error("materializable accepted rows that scan columns themselves")
	}
	r, err := materializeRows(rows)
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := r.cacheable(); ok {
		t.Error("a result of rows that scan columns is cacheable")
	} else {
		t.Log(why)
	}
	if _, ok := r.replay(nil).(driver.RowsColumnScanner); !ok {
		t.Error("its replay dropped driver.RowsColumnScanner")
	}
}
