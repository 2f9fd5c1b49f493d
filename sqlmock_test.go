package cachedsql_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"

	"github.com/cachedsql/cachedsql"
)

// sqlmockConnector turns a sqlmock DSN into a driver.Connector: sqlmock's
// driver has no OpenConnector, and its Open returns the mock registered
// under the DSN.
type sqlmockConnector struct {
	dsn string
	drv driver.Driver
}

func (c sqlmockConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c sqlmockConnector) Driver() driver.Driver                        { return c.drv }

// newSqlmockDB returns a DB whose connections are sqlmock's, through
// cachedsql.NewConnector.
func newSqlmockDB(t *testing.T) (*sql.DB, sqlmock.Sqlmock) {
	t.Helper()
	dsn := "cachedsql_" + t.Name()
	mockDB, mock, err := sqlmock.NewWithDSN(dsn, sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatal(err)
	}
	// mockDB holds the DSN's registration open; close it after db.
	t.Cleanup(func() { mockDB.Close() })
	cn, err := cachedsql.NewConnector(sqlmockConnector{dsn: dsn, drv: mockDB.Driver()}, cachedsql.Config{})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(cn)
	t.Cleanup(func() { db.Close() })
	return db, mock
}

// TestSqlmock runs queries, execs, transactions, prepared statements and
// errors through the wrapper to go-sqlmock, which checks each statement
// and argument arrives as sent.
func TestSqlmock(t *testing.T) {
	ctx := context.Background()
	db, mock := newSqlmockDB(t)
	errBoom := errors.New("boom")

	mock.ExpectQuery("SELECT name FROM users WHERE id = $1").WithArgs(1).
		WillReturnRows(sqlmock.NewRows([]string{"name"}).AddRow("ann"))
	mock.ExpectExec("UPDATE users SET name = $1 WHERE id = $2").WithArgs("bob", 1).
		WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectBegin()
	mock.ExpectExec("INSERT INTO users (name) VALUES ($1)").WithArgs("cy").
		WillReturnResult(sqlmock.NewResult(7, 1))
	mock.ExpectCommit()
	mock.ExpectBegin()
	mock.ExpectExec("DELETE FROM users").WillReturnError(errBoom)
	mock.ExpectRollback()
	prep := mock.ExpectPrepare("SELECT id FROM users WHERE name = $1")
	prep.ExpectQuery().WithArgs("ann").WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1))
	prep.ExpectQuery().WithArgs("nobody").WillReturnRows(sqlmock.NewRows([]string{"id"}))
	mock.ExpectQuery("SELECT broken").WillReturnError(errBoom)

	var name string
	if err := db.QueryRowContext(ctx, "SELECT name FROM users WHERE id = $1", 1).Scan(&name); err != nil || name != "ann" {
		t.Errorf("QueryRow: got %q, %v; want ann, nil", name, err)
	}
	res, err := db.ExecContext(ctx, "UPDATE users SET name = $1 WHERE id = $2", "bob", 1)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Errorf("RowsAffected: got %d; want 1", n)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = tx.ExecContext(ctx, "INSERT INTO users (name) VALUES ($1)", "cy")
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := res.LastInsertId(); id != 7 {
		t.Errorf("LastInsertId: got %d; want 7", id)
	}
	if err := tx.Commit(); err != nil {
		t.Errorf("Commit: got %v; want nil", err)
	}

	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM users"); !errors.Is(err, errBoom) {
		t.Errorf("Exec in tx: got %v; want %v", err, errBoom)
	}
	if err := tx.Rollback(); err != nil {
		t.Errorf("Rollback: got %v; want nil", err)
	}

	st, err := db.PrepareContext(ctx, "SELECT id FROM users WHERE name = $1")
	if err != nil {
		t.Fatal(err)
	}
	var id int
	if err := st.QueryRowContext(ctx, "ann").Scan(&id); err != nil || id != 1 {
		t.Errorf("prepared QueryRow(ann): got %d, %v; want 1, nil", id, err)
	}
	if err := st.QueryRowContext(ctx, "nobody").Scan(&id); !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("prepared QueryRow(nobody): got %v; want sql.ErrNoRows", err)
	}
	st.Close()

	if _, err := db.QueryContext(ctx, "SELECT broken"); !errors.Is(err, errBoom) {
		t.Errorf("Query: got %v; want %v", err, errBoom)
	}
	// A statement sqlmock does not expect is an error, not a pass.
	if _, err := db.ExecContext(ctx, "DROP TABLE users"); err == nil || !strings.Contains(err.Error(), "DROP TABLE users") {
		t.Errorf("unexpected Exec: got %v; want sqlmock's error naming the statement", err)
	}

	if err := mock.ExpectationsWereMet(); err != nil {
		t.Error(err)
	}
}
