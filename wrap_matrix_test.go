package cachedsql_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachedsql/cachedsql"
	fd "github.com/cachedsql/cachedsql/internal/fakedriver"
)

// matrix returns the feature sets the wrapper is tested against: every
// connection shape the fake offers (every combination of SessionResetter,
// Validator, NamedValueChecker, BeginTx, PrepareContext+Pinger and the
// Execer/Queryer variants) crossed with every combination of the statement's
// NamedValueChecker and ColumnConverter, with and without the context
// methods. Rows implement every column-type interface; TestWrapRows varies
// those.
func matrix() []fd.Features {
	var out []fd.Features
	for _, c := range fd.Shapes(fd.ConnFeatures) {
		for _, s := range fd.Shapes(fd.StmtFeatures) {
			// The statement's context methods go together: one more
			// factor of 4 would add nothing database/sql distinguishes.
			if s.Has(fd.StmtExecContext) != s.Has(fd.StmtQueryContext) {
				continue
			}
			out = append(out, c|s|fd.ColumnTypes)
		}
	}
	return out
}

func newFake(t *testing.T, f fd.Features) *fd.Connector {
	t.Helper()
	fc, err := fd.New(f)
	if err != nil {
		t.Fatal(err)
	}
	return fc
}

func wrap(t *testing.T, base driver.Connector) *cachedsql.Connector {
	t.Helper()
	cn, err := cachedsql.NewConnector(base, cachedsql.Config{})
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	return cn
}

// checkConnInterfaces checks the interfaces of a wrapper connection: the
// context-aware ones always, the behaviour-changing ones exactly when the
// wrapped connection has them.
func checkConnInterfaces(t *testing.T, f fd.Features, dc any) {
	t.Helper()
	always := map[string]bool{}
	_, always["ExecerContext"] = dc.(driver.ExecerContext)
	_, always["QueryerContext"] = dc.(driver.QueryerContext)
	_, always["ConnPrepareContext"] = dc.(driver.ConnPrepareContext)
	_, always["ConnBeginTx"] = dc.(driver.ConnBeginTx)
	_, always["Pinger"] = dc.(driver.Pinger)
	_, always["NamedValueChecker"] = dc.(driver.NamedValueChecker)
	for name, ok := range always {
		if !ok {
			t.Errorf("wrapper conn implements %s: got false; want true", name)
		}
	}
	_, resets := dc.(driver.SessionResetter)
	if want := f.Has(fd.SessionResetter); resets != want {
		t.Errorf("wrapper conn implements SessionResetter: got %t; want %t", resets, want)
	}
	_, validates := dc.(driver.Validator)
	if want := f.Has(fd.Validator); validates != want {
		t.Errorf("wrapper conn implements Validator: got %t; want %t", validates, want)
	}
}

func checkStmtInterfaces(t *testing.T, f fd.Features, ds driver.Stmt) {
	t.Helper()
	always := map[string]bool{}
	_, always["StmtExecContext"] = ds.(driver.StmtExecContext)
	_, always["StmtQueryContext"] = ds.(driver.StmtQueryContext)
	_, always["NamedValueChecker"] = ds.(driver.NamedValueChecker)
	for name, ok := range always {
		if !ok {
			t.Errorf("wrapper stmt implements %s: got false; want true", name)
		}
	}
	_, converts := ds.(driver.ColumnConverter)
	if want := f.Has(fd.ColumnConverter); converts != want {
		t.Errorf("wrapper stmt implements ColumnConverter: got %t; want %t", converts, want)
	}
}

// TestWrapInterfaces checks what the wrapper's driver-level objects
// implement, reached both by calling the connector and through
// sql.Conn.Raw, and that rows are the wrapped driver's own.
func TestWrapInterfaces(t *testing.T) {
	ctx := context.Background()
	for _, f := range matrix() {
		t.Run(f.String(), func(t *testing.T) {
			fc := newFake(t, f)
			cn := wrap(t, fc)

			dc, err := cn.Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer dc.Close()
			checkConnInterfaces(t, f, dc)
			if got, want := cachedsql.InnerConn(dc), any(fc.Conns()[0]); got != want {
				t.Errorf("InnerConn: got %T %p; want the fake's own conn %T", got, got, want)
			}

			ds, err := dc.(driver.ConnPrepareContext).PrepareContext(ctx, "echo ?")
			if err != nil {
				t.Fatal(err)
			}
			checkStmtInterfaces(t, f, ds)
			rows, err := ds.(driver.StmtQueryContext).QueryContext(ctx, []driver.NamedValue{{Ordinal: 1, Value: int64(1)}})
			if err != nil {
				t.Fatal(err)
			}
			if last := fc.LastRows(); rows != last {
				t.Errorf("stmt rows: got %T %v; want the fake's own rows %T %v", rows, rows, last, last)
			}
			rows.Close()
			ds.Close()

			rows, err = dc.(driver.QueryerContext).QueryContext(ctx, "echo", nil)
			switch {
			case !f.Has(fd.QueryerContext) && !f.Has(fd.Queryer):
				// database/sql prepares the statement instead.
				if !errors.Is(err, driver.ErrSkip) {
					t.Errorf("conn QueryContext without a Queryer: got %v; want driver.ErrSkip", err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if last := fc.LastRows(); rows != last {
					t.Errorf("conn rows: got %T %v; want the fake's own rows %T %v", rows, rows, last, last)
				}
				rows.Close()
			}

			// sql.Conn.Raw hands out the same wrapper connection.
			db := sql.OpenDB(cn)
			defer db.Close()
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Raw(func(dc any) error {
				checkConnInterfaces(t, f, dc)
				inner := cachedsql.InnerConn(dc)
				if !slices.ContainsFunc(fc.Conns(), func(c driver.Conn) bool { return any(c) == inner }) {
					t.Errorf("Raw: InnerConn: got %T %p; want one of the fake's conns", inner, inner)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWrapRows checks, for every combination of the Rows column-type
// interfaces, that the wrapper returns the wrapped rows themselves and that
// database/sql reports the same ColumnTypes through it.
func TestWrapRows(t *testing.T) {
	ctx := context.Background()
	for _, r := range fd.Shapes(fd.RowsFeatures) {
		f := fd.ConnFeatures | fd.StmtFeatures | r
		t.Run(r.String(), func(t *testing.T) {
			fc := newFake(t, f)
			dc, err := wrap(t, fc).Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer dc.Close()
			rows, err := dc.(driver.QueryerContext).QueryContext(ctx, "echo", nil)
			if err != nil {
				t.Fatal(err)
			}
			if last := fc.LastRows(); rows != last {
				t.Errorf("rows: got %T %v; want the fake's own rows %T %v", rows, rows, last, last)
			}
			rows.Close()

			plainDB := sql.OpenDB(newFake(t, f))
			defer plainDB.Close()
			wrappedDB := sql.OpenDB(wrap(t, newFake(t, f)))
			defer wrappedDB.Close()
			plain := describeColumnTypes(t, plainDB)
			wrapped := describeColumnTypes(t, wrappedDB)
			if wrapped != plain {
				t.Errorf("ColumnTypes through the wrapper:\ngot  %s\nwant %s", wrapped, plain)
			}
			if r.Has(fd.DatabaseTypeName) != strings.Contains(plain, "BIGINT") {
				t.Errorf("ColumnTypes without the wrapper: got %s; want DatabaseTypeName BIGINT iff the rows have it", plain)
			}
		})
	}
}

func describeColumnTypes(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query("echo")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ct := range cts {
		length, lok := ct.Length()
		nullable, nok := ct.Nullable()
		prec, scale, pok := ct.DecimalSize()
		fmt.Fprintf(&b, "{%s %v %q len=%d,%t null=%t,%t dec=%d,%d,%t}", ct.Name(), ct.ScanType(),
			ct.DatabaseTypeName(), length, lok, nullable, nok, prec, scale, pok)
	}
	return b.String()
}

// TestWrapBehavesLikeInner runs one body against the fake with and without
// the wrapper and compares what the caller observes and what the fake saw,
// call by call. The body also asserts database/sql's documented behaviour
// for the shape, so a fallback the wrapper gets wrong differs from both.
func TestWrapBehavesLikeInner(t *testing.T) {
	for _, f := range matrix() {
		t.Run(f.String(), func(t *testing.T) {
			fcPlain := newFake(t, f)
			plain := observe(t, f, sql.OpenDB(fcPlain), fcPlain)
			fcWrapped := newFake(t, f)
			wrapped := observe(t, f, sql.OpenDB(wrap(t, fcWrapped)), fcWrapped)
			for i := range max(len(plain), len(wrapped)) {
				var p, w string
				if i < len(plain) {
					p = plain[i]
				}
				if i < len(wrapped) {
					w = wrapped[i]
				}
				if p != w {
					t.Fatalf("observation %d through the wrapper:\ngot  %s\nwant %s\n(plain: %q)", i, w, p, plain)
				}
			}
		})
	}
}

// observe runs the test body on db and returns what it observed, the fake's
// recorded calls included.
func observe(t *testing.T, f fd.Features, db *sql.DB, fc *fd.Connector) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	note := func(step string, v ...any) {
		out = append(out, step+": "+fmt.Sprint(v...))
		for _, ev := range fc.TakeEvents() {
			out = append(out, "  "+ev)
		}
	}
	connQuery := f.Has(fd.QueryerContext) || f.Has(fd.Queryer)

	// Ping: nil without a Pinger.
	err := db.PingContext(ctx)
	if err != nil {
		t.Errorf("Ping: got %v; want nil", err)
	}
	note("ping", err)

	// Exec and Query results, and the arguments the driver received.
	res, err := db.ExecContext(ctx, "echo ? ?", 1, "x")
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	id, _ := res.LastInsertId()
	n, _ := res.RowsAffected()
	if id != 42 || n != 2 {
		t.Errorf("Exec: got LastInsertId %d, RowsAffected %d; want 42, 2", id, n)
	}
	note("exec", id, " ", n)

	got, err := queryAll(db.QueryContext(ctx, "echo ? ?", int8(3), []byte("b")))
	if want := "[1  int64:3][2  []uint8:[98]]"; got != want {
		t.Errorf("Query: got %s, %v; want %s", got, err, want)
	}
	note("query", got, err)
	note("columns", describeColumnTypes(t, db))

	// Named parameters: refused on the legacy paths.
	legacyExec := !f.Has(fd.ExecerContext) && (f.Has(fd.Execer) || !f.Has(fd.StmtExecContext))
	_, err = db.ExecContext(ctx, "echo", sql.Named("a", 1))
	if got, want := err != nil && strings.Contains(err.Error(), "Named Parameters"), legacyExec; got != want {
		t.Errorf("Exec with a named parameter: got error %v; want a Named Parameters error: %t", err, want)
	}
	note("exec named", err)
	legacyQuery := !f.Has(fd.QueryerContext) && (f.Has(fd.Queryer) || !f.Has(fd.StmtQueryContext))
	got, err = queryAll(db.QueryContext(ctx, "echo", sql.Named("a", 1)))
	if errGot, want := err != nil && strings.Contains(err.Error(), "Named Parameters"), legacyQuery; errGot != want {
		t.Errorf("Query with a named parameter: got %s, %v; want a Named Parameters error: %t", got, err, want)
	}
	note("query named", got, err)

	// Argument conversion: statement checker, then connection checker,
	// then the ColumnConverter or the default.
	st, err := db.PrepareContext(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"stmt", "conn", "convert", "remove", "other"} {
		got, err := queryAll(st.QueryContext(ctx, fd.Arg{Kind: kind}))
		if want := wantArg(f, kind, true); got != want {
			t.Errorf("prepared Query(Arg{%s}): got %s, %v; want %s", kind, got, err, want)
		}
		note("prepared arg "+kind, got, err)

		got, err = queryAll(db.QueryContext(ctx, "echo", fd.Arg{Kind: kind}))
		if want := wantArg(f, kind, !connQuery); got != want {
			t.Errorf("Query(Arg{%s}): got %s, %v; want %s", kind, got, err, want)
		}
		note("arg "+kind, got, err)
	}
	st.Close()
	note("stmt closed")

	// A driver.ErrSkip from the connection falls back to Prepare.
	res, err = db.ExecContext(ctx, "skip ?", 1)
	if err != nil {
		t.Fatalf("Exec(skip): %v", err)
	}
	n, _ = res.RowsAffected()
	if n != 1 {
		t.Errorf("Exec(skip): got RowsAffected %d; want 1", n)
	}
	note("skip", n)

	_, err = db.ExecContext(ctx, "fail")
	if !errors.Is(err, fd.ErrFail) {
		t.Errorf("Exec(fail): got %v; want %v", err, fd.ErrFail)
	}
	note("fail", err)

	// Cancellation mid-query, where the path has a context.
	ctxAware := f.Has(fd.QueryerContext) || (!f.Has(fd.Queryer) && f.Has(fd.StmtQueryContext))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		select {
		case <-fc.Blocked:
			cancel()
		case <-done:
		}
	}()
	_, err = db.QueryContext(cctx, "block")
	close(done)
	cancel()
	if ctxAware && !errors.Is(err, context.Canceled) || !ctxAware && !errors.Is(err, fd.ErrNoContext) {
		t.Errorf("Query(block) cancelled: got %v; want context.Canceled with a context, %v without (has one: %t)",
			err, fd.ErrNoContext, ctxAware)
	}
	note("block", err)

	// Transaction options: forwarded with ConnBeginTx, refused without.
	for _, opts := range []*sql.TxOptions{
		nil,
		{Isolation: sql.LevelSerializable},
		{ReadOnly: true},
		{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	} {
		tx, err := db.BeginTx(ctx, opts)
		nonDefault := opts != nil && (opts.Isolation != sql.LevelDefault || opts.ReadOnly)
		if wantErr := nonDefault && !f.Has(fd.BeginTx); (err != nil) != wantErr {
			t.Errorf("BeginTx(%+v): got %v; want an error: %t", opts, err, wantErr)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, "echo ?", 1)
			if err != nil {
				t.Errorf("Tx.Exec: %v", err)
			}
			err = tx.Commit()
		}
		note(fmt.Sprintf("tx %+v", opts), err)
	}
	if f.Has(fd.BeginTx) && !slices.Contains(out, "  BeginTx isolation=4 readonly=true") {
		t.Errorf("BeginTx(RepeatableRead, ReadOnly): got no BeginTx isolation=4 readonly=true call; want one")
	}

	// keepConnOnRollback: a transaction rolled back by its context keeps
	// the connection only if the driver can reset and validate it.
	opened := fc.Opened()
	cctx, cancel = context.WithCancel(ctx)
	if _, err := db.BeginTx(cctx, nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	waitIdle(t, db)
	note("tx cancelled")
	if _, err := db.ExecContext(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	keep := f.Has(fd.SessionResetter) && f.Has(fd.Validator)
	if got, want := fc.Opened()-opened, map[bool]int{true: 0, false: 1}[keep]; got != want {
		t.Errorf("connections opened after a cancelled transaction: got %d; want %d", got, want)
	}
	note("after cancelled tx", fc.Opened()-opened)

	if err := db.Close(); err != nil {
		t.Error(err)
	}
	note("close")

	// ResetSession runs whenever a used connection is taken again.
	resets := 0
	for _, l := range out {
		if l == "  ResetSession" {
			resets++
		}
	}
	if got, want := resets > 0, f.Has(fd.SessionResetter); got != want {
		t.Errorf("ResetSession called: got %d times; want some: %t", resets, want)
	}
	return out
}

// wantArg is database/sql's argument routing for an fd.Arg: on a prepared
// statement the statement's checker or else the connection's, then the
// ColumnConverter, then the default conversion (which refuses a struct);
// on the connection, its checker, then the default.
func wantArg(f fd.Features, kind string, prepared bool) string {
	checker := ""
	switch {
	case prepared && f.Has(fd.StmtChecker):
		checker = "stmt"
	case f.Has(fd.ConnChecker):
		checker = "conn"
	}
	switch {
	case checker != "" && kind == checker:
		return "[1  string:" + kind + "-checked]"
	case checker != "" && kind == "remove":
		return "[]"
	case prepared && f.Has(fd.ColumnConverter) && kind == "convert":
		return "[1  string:converted]"
	}
	return "error"
}

// queryAll formats every row, or returns "error" and the error.
func queryAll(rows *sql.Rows, err error) (string, error) {
	if err != nil {
		return "error", err
	}
	defer rows.Close()
	var b strings.Builder
	b.WriteString("[")
	for rows.Next() {
		var ord int64
		var name, value string
		if err := rows.Scan(&ord, &name, &value); err != nil {
			return "error", err
		}
		if b.Len() > 1 {
			b.WriteString("][")
		}
		fmt.Fprintf(&b, "%d %s %s", ord, name, value)
	}
	b.WriteString("]")
	if err := rows.Err(); err != nil {
		return "error", err
	}
	return b.String(), rows.Close()
}

// waitIdle waits until no connection of db is in use: a transaction rolled
// back by its context releases its connection from another goroutine.
func waitIdle(t *testing.T, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for db.Stats().InUse != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("connections in use: got %d; want 0", db.Stats().InUse)
		}
		time.Sleep(time.Millisecond)
	}
}
