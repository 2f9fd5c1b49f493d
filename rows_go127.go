//go:build go1.27

package cachedsql

import (
	"bytes"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// As of Go 1.27, database/sql scans through driver.RowsColumnScanner when
// rows implement it. stdlib.Rows does, so the pgx replay must too, with the
// same choices (sql.ConvertAssign or pgx's own scan) per destination.
//
// NextRow, ScanColumn and isSQLScanDestination follow
// github.com/jackc/pgx/v5/stdlib/sql_go1.27.go, v5.12.0,
// Copyright (c) 2013-2021 Jack Christensen, MIT License.
var _ driver.RowsColumnScanner = (*pgxRows)(nil)

func (r *pgxRows) NextRow() error {
	if !r.advance() {
		return io.EOF
	}
	return nil
}

func (r *pgxRows) ScanColumn(scanCtx driver.ScanContext, index int, dest any) error {
	if dest == nil {
		return errors.New("destination not a pointer")
	}
	rv := reflect.ValueOf(dest)
	if rv.Kind() == reflect.Pointer && rv.IsNil() {
		return errors.New("destination pointer is nil")
	}
	if r.cur == nil || index < 0 || index >= len(r.cur) {
		return errors.New("cachedsql: ScanColumn without a current row")
	}

	src := r.cur[index]
	if isSQLScanDestination(rv.Type()) {
		var value driver.Value
		if src != nil {
			var err error
			value, err = r.value(index, src)
			if err != nil {
				return err
			}
		}
		return sql.ConvertAssign(scanCtx, dest, value)
	}

	fd := r.res.fields[index]
	// src is the stored row's own bytes (see advance), and pgx hands
	// them on uncopied to some destinations (DriverBytes, BytesScanner):
	// give it the caller's copy.
	return r.m.Scan(fd.DataTypeOID, fd.Format, bytes.Clone(src), dest)
}

// Map from reflect.Type -> bool.
var sqlScanDestinationCache sync.Map

// isSQLScanDestination includes named scalar types and nullable pointers to
// database/sql destinations.
func isSQLScanDestination(t reflect.Type) bool {
	if cached, ok := sqlScanDestinationCache.Load(t); ok {
		return cached.(bool)
	}
	result := isSQLScanDestinationUncached(t)
	sqlScanDestinationCache.Store(t, result)
	return result
}

func isSQLScanDestinationUncached(t reflect.Type) bool {
	var namedPointers map[reflect.Type]bool
	for {
		if t.Implements(reflect.TypeFor[sql.Scanner]()) {
			return true
		}
		if t.Implements(reflect.TypeFor[pgtype.ArraySetter]()) || t.Implements(reflect.TypeFor[pgtype.BytesScanner]()) {
			return false
		}
		if t.Kind() != reflect.Pointer {
			break
		}
		if t.Name() != "" {
			if namedPointers[t] {
				return false
			}
			if namedPointers == nil {
				namedPointers = make(map[reflect.Type]bool)
			}
			namedPointers[t] = true
		}
		t = t.Elem()
	}

	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.String, reflect.Interface:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.Uint8
	case reflect.Struct:
		return t.ConvertibleTo(reflect.TypeFor[time.Time]())
	default:
		return false
	}
}

// innerScansColumns reports whether the wrapped driver's rows scan columns
// themselves (RowsColumnScanner), which a recording cannot reproduce.
func innerScansColumns(rows driver.Rows) bool {
	_, ok := rows.(driver.RowsColumnScanner)
	return ok
}

// genericScanRows is genericRows for wrapped rows that implemented
// RowsColumnScanner: it keeps the interface, so database/sql keeps
// scanning through it, converting the recorded values as database/sql
// would. Such results are never cached (see materializeRows).
type genericScanRows struct{ *genericRows }

func withColumnScanner(g *genericRows) driver.Rows { return genericScanRows{g} }

func (g genericScanRows) NextRow() error {
	if !g.advance() {
		return io.EOF
	}
	return nil
}

func (g genericScanRows) ScanColumn(scanCtx driver.ScanContext, index int, dest any) error {
	if g.cur == nil || index < 0 || index >= len(g.cur) {
		return errors.New("cachedsql: ScanColumn without a current row")
	}
	return sql.ConvertAssign(scanCtx, dest, g.cur[index])
}
