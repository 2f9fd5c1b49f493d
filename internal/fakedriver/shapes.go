package fakedriver

//go:generate go run gen.go

import (
	"context"
	"database/sql/driver"
	"reflect"
)

// One-method interfaces the generated shapes embed. driver's own types will
// not do: the RowsColumnType ones embed driver.Rows (ambiguous next to
// rowsCore), and an embedded driver.ColumnConverter field would shadow its
// own ColumnConverter method.
type (
	iExecerContext interface {
		ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error)
	}
	iExecer interface {
		Exec(string, []driver.Value) (driver.Result, error)
	}
	iQueryerContext interface {
		QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error)
	}
	iQueryer interface {
		Query(string, []driver.Value) (driver.Rows, error)
	}
	iPrepareContext interface {
		PrepareContext(context.Context, string) (driver.Stmt, error)
	}
	iBeginTx interface {
		BeginTx(context.Context, driver.TxOptions) (driver.Tx, error)
	}
	iPinger      interface{ Ping(context.Context) error }
	iConnChecker interface {
		CheckNamedValue(*driver.NamedValue) error
	}
	iSessionResetter interface{ ResetSession(context.Context) error }
	iValidator       interface{ IsValid() bool }
	iStmtChecker     interface {
		CheckNamedValue(*driver.NamedValue) error
	}
	iColumnConverter interface {
		ColumnConverter(int) driver.ValueConverter
	}
	iStmtExecContext interface {
		ExecContext(context.Context, []driver.NamedValue) (driver.Result, error)
	}
	iStmtQueryContext interface {
		QueryContext(context.Context, []driver.NamedValue) (driver.Rows, error)
	}
	iScanType         interface{ ColumnTypeScanType(int) reflect.Type }
	iDatabaseTypeName interface{ ColumnTypeDatabaseTypeName(int) string }
	iLength           interface{ ColumnTypeLength(int) (int64, bool) }
	iNullable         interface{ ColumnTypeNullable(int) (bool, bool) }
	iPrecisionScale   interface {
		ColumnTypePrecisionScale(int) (int64, int64, bool)
	}
)
