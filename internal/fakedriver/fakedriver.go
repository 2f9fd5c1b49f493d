// Package fakedriver is a purpose-built database/sql driver for testing
// driver wrappers, in the spirit of database/sql's fakedb_test.go. Each
// Connector is built with a set of Features: the optional driver interfaces
// its connections, statements and rows implement, and no others. Every call
// the driver receives is recorded, so a test can run the same body with and
// without a wrapper and compare what the driver saw.
//
// The fake understands a few statements, matched by their first word:
//
//	echo ...   query: one row (ordinal, name, value) per argument, value
//	           formatted as "%T:%v"; exec: LastInsertId 42, RowsAffected =
//	           number of arguments
//	block ...  blocks until its context is done and returns ctx.Err();
//	           on a path without a context it returns ErrNoContext
//	skip ...   the connection's Exec/Query methods return driver.ErrSkip
//	           (preparing it works)
//	fail ...   returns ErrFail when executed
//
// A prepared statement's NumInput is the number of '?' in its text, or -1
// when there is none.
package fakedriver

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// Features selects optional driver interfaces.
type Features uint32

// Connection interfaces.
const (
	ExecerContext   Features = 1 << iota // driver.ExecerContext
	Execer                               // driver.Execer
	QueryerContext                       // driver.QueryerContext
	Queryer                              // driver.Queryer
	PrepareContext                       // driver.ConnPrepareContext
	BeginTx                              // driver.ConnBeginTx
	Pinger                               // driver.Pinger
	ConnChecker                          // driver.NamedValueChecker on the Conn
	SessionResetter                      // driver.SessionResetter
	Validator                            // driver.Validator

	// Statement interfaces.
	StmtChecker      // driver.NamedValueChecker on the Stmt
	ColumnConverter  // driver.ColumnConverter
	StmtExecContext  // driver.StmtExecContext
	StmtQueryContext // driver.StmtQueryContext

	// Rows interfaces.
	ScanType         // driver.RowsColumnTypeScanType
	DatabaseTypeName // driver.RowsColumnTypeDatabaseTypeName
	Length           // driver.RowsColumnTypeLength
	Nullable         // driver.RowsColumnTypeNullable
	PrecisionScale   // driver.RowsColumnTypePrecisionScale
	ColumnScanner    // driver.RowsColumnScanner (Go 1.27)
)

// Masks of the features of each driver object.
const (
	ConnFeatures = ExecerContext | Execer | QueryerContext | Queryer | PrepareContext |
		BeginTx | Pinger | ConnChecker | SessionResetter | Validator
	StmtFeatures = StmtChecker | ColumnConverter | StmtExecContext | StmtQueryContext
	RowsFeatures = ScanType | DatabaseTypeName | Length | Nullable | PrecisionScale | ColumnScanner
	// ColumnTypes is every column-type interface of Rows.
	ColumnTypes = ScanType | DatabaseTypeName | Length | Nullable | PrecisionScale
)

var featureNames = [...]string{
	"ExecerContext", "Execer", "QueryerContext", "Queryer", "PrepareContext",
	"BeginTx", "Pinger", "ConnChecker", "SessionResetter", "Validator",
	"StmtChecker", "ColumnConverter", "StmtExecContext", "StmtQueryContext",
	"ScanType", "DatabaseTypeName", "Length", "Nullable", "PrecisionScale", "ColumnScanner",
}

// Has reports whether f includes every feature of g.
func (f Features) Has(g Features) bool { return f&g == g }

func (f Features) String() string {
	if f == 0 {
		return "none"
	}
	var names []string
	for b := f; b != 0; b &= b - 1 {
		names = append(names, featureNames[bits.TrailingZeros32(uint32(b))])
	}
	return strings.Join(names, "+")
}

// Shapes returns every feature set New accepts for one part of the driver:
// part is ConnFeatures, StmtFeatures or RowsFeatures.
func Shapes(part Features) []Features {
	m := map[Features]map[Features]bool{ConnFeatures: connMasks, StmtFeatures: stmtMasks, RowsFeatures: rowsMasks}[part]
	out := make([]Features, 0, len(m))
	for f := range m {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// Errors the fake returns.
var (
	ErrFail      = errors.New("fakedriver: fail")
	ErrNoContext = errors.New("fakedriver: block needs a context")
)

// Arg is an argument type database/sql's default conversion rejects (a
// struct). The fake's checkers and converters accept it according to Kind:
//
//	"stmt"    the Stmt's NamedValueChecker turns it into "stmt-checked"
//	"conn"    the Conn's NamedValueChecker turns it into "conn-checked"
//	"convert" the ColumnConverter turns it into "converted"
//	"remove"  either NamedValueChecker returns driver.ErrRemoveArgument
type Arg struct{ Kind string }

// Connector is a driver.Connector whose connections have the features it
// was built with. It also implements io.Closer, recording the call.
type Connector struct {
	features Features
	conn     func(*conn) driver.Conn
	stmt     func(*stmt) driver.Stmt
	rows     func(*rows) driver.Rows

	// Blocked receives a value each time a "block" statement starts
	// waiting for its context, so a test can cancel it mid-statement.
	Blocked chan struct{}

	mu     sync.Mutex // protects the fields below
	events []string
	opened int
	conns  []driver.Conn
	rowsv  []driver.Rows
}

// New returns a Connector whose objects have exactly the features f, or an
// error if f is not one of the shapes this package provides (see Shapes).
func New(f Features) (*Connector, error) {
	c := &Connector{features: f, Blocked: make(chan struct{}, 1)}
	var ok bool
	if c.conn, ok = connShapes[f&ConnFeatures]; !ok {
		return nil, fmt.Errorf("fakedriver: no connection shape %v", f&ConnFeatures)
	}
	if c.stmt, ok = stmtShapes[f&StmtFeatures]; !ok {
		return nil, fmt.Errorf("fakedriver: no statement shape %v", f&StmtFeatures)
	}
	if c.rows, ok = rowsShapes[f&RowsFeatures]; !ok {
		return nil, fmt.Errorf("fakedriver: no rows shape %v", f&RowsFeatures)
	}
	return c, nil
}

// Features returns the features c was built with.
func (c *Connector) Features() Features { return c.features }

// Connect opens a new fake connection.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ci := c.conn(&conn{c: c})
	c.mu.Lock()
	c.opened++
	c.conns = append(c.conns, ci)
	c.mu.Unlock()
	c.record("Connect")
	return ci, nil
}

// Driver returns a driver that opens connections through c, whatever the DSN.
func (c *Connector) Driver() driver.Driver { return fakeDriver{c} }

// Close records the call; database/sql calls it from DB.Close.
func (c *Connector) Close() error {
	c.record("Connector.Close")
	return nil
}

// Opened returns the number of connections opened so far.
func (c *Connector) Opened() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened
}

// Conns returns the connections opened so far, as Connect returned them.
func (c *Connector) Conns() []driver.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]driver.Conn(nil), c.conns...)
}

// LastRows returns the most recent rows the fake returned, or nil.
func (c *Connector) LastRows() driver.Rows {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rowsv) == 0 {
		return nil
	}
	return c.rowsv[len(c.rowsv)-1]
}

// TakeEvents returns the calls recorded since the last TakeEvents.
func (c *Connector) TakeEvents() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ev := c.events
	c.events = nil
	return ev
}

func (c *Connector) record(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, fmt.Sprintf(format, args...))
}

type fakeDriver struct{ c *Connector }

func (d fakeDriver) Open(string) (driver.Conn, error) { return d.c.Connect(context.Background()) }

// conn implements every connection method; the generated shapes expose a
// subset. connCore carries the methods every driver.Conn has; it holds conn
// in a named field so that it promotes none of conn's methods.
type conn struct {
	c *Connector
}

type connCore struct{ x *conn }

func (c connCore) Prepare(query string) (driver.Stmt, error) {
	c.x.c.record("Prepare %q", query)
	return c.x.prepare(query)
}

func (c connCore) Close() error {
	c.x.c.record("Conn.Close")
	return nil
}

func (c connCore) Begin() (driver.Tx, error) {
	c.x.c.record("Begin")
	return &tx{c: c.x.c}, nil
}

func (c *conn) prepare(query string) (driver.Stmt, error) {
	if verb(query) == "fail" {
		return nil, ErrFail
	}
	n := strings.Count(query, "?")
	if n == 0 {
		n = -1
	}
	return c.c.stmt(&stmt{c: c, query: query, numInput: n}), nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.c.record("ExecContext %q %s", query, formatArgs(args))
	if verb(query) == "skip" {
		return nil, driver.ErrSkip
	}
	return c.c.exec(ctx, query, args)
}

func (c *conn) Exec(query string, args []driver.Value) (driver.Result, error) {
	c.c.record("Exec %q %s", query, formatValues(args))
	if verb(query) == "skip" {
		return nil, driver.ErrSkip
	}
	return c.c.exec(nil, query, named(args))
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.c.record("QueryContext %q %s", query, formatArgs(args))
	if verb(query) == "skip" {
		return nil, driver.ErrSkip
	}
	return c.c.query(ctx, query, args)
}

func (c *conn) Query(query string, args []driver.Value) (driver.Rows, error) {
	c.c.record("Query %q %s", query, formatValues(args))
	if verb(query) == "skip" {
		return nil, driver.ErrSkip
	}
	return c.c.query(nil, query, named(args))
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	c.c.record("PrepareContext %q", query)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.prepare(query)
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.c.record("BeginTx isolation=%d readonly=%t", opts.Isolation, opts.ReadOnly)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &tx{c: c.c}, nil
}

func (c *conn) Ping(ctx context.Context) error {
	c.c.record("Ping")
	return ctx.Err()
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	c.c.record("Conn.CheckNamedValue %s", formatArg(*nv))
	return check(nv, "conn")
}

func (c *conn) ResetSession(ctx context.Context) error {
	c.c.record("ResetSession")
	return nil
}

func (c *conn) IsValid() bool {
	c.c.record("IsValid")
	return true
}

func check(nv *driver.NamedValue, kind string) error {
	a, ok := nv.Value.(Arg)
	switch {
	case !ok:
		return driver.ErrSkip
	case a.Kind == "remove":
		return driver.ErrRemoveArgument
	case a.Kind == kind:
		nv.Value = kind + "-checked"
		return nil
	}
	return driver.ErrSkip
}

// exec and query run a statement; ctx is nil on the paths without one.
func (c *Connector) exec(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if err := c.run(ctx, query); err != nil {
		return nil, err
	}
	return result{rowsAffected: int64(len(args))}, nil
}

func (c *Connector) query(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if err := c.run(ctx, query); err != nil {
		return nil, err
	}
	r := &rows{c: c}
	for _, a := range args {
		r.data = append(r.data, []driver.Value{int64(a.Ordinal), a.Name, fmt.Sprintf("%T:%v", a.Value, a.Value)})
	}
	ri := c.rows(r)
	c.mu.Lock()
	c.rowsv = append(c.rowsv, ri)
	c.mu.Unlock()
	return ri, nil
}

func (c *Connector) run(ctx context.Context, query string) error {
	switch verb(query) {
	case "fail":
		return ErrFail
	case "block":
		if ctx == nil {
			return ErrNoContext
		}
		select {
		case c.Blocked <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func verb(query string) string {
	v, _, _ := strings.Cut(strings.TrimSpace(query), " ")
	return v
}

type result struct{ rowsAffected int64 }

func (r result) LastInsertId() (int64, error) { return 42, nil }
func (r result) RowsAffected() (int64, error) { return r.rowsAffected, nil }

type tx struct{ c *Connector }

func (t *tx) Commit() error {
	t.c.record("Commit")
	return nil
}

func (t *tx) Rollback() error {
	t.c.record("Rollback")
	return nil
}

// stmt implements every statement method; stmtCore carries driver.Stmt's.
type stmt struct {
	c        *conn
	query    string
	numInput int
}

type stmtCore struct{ x *stmt }

func (s stmtCore) Close() error {
	s.x.c.c.record("Stmt.Close %q", s.x.query)
	return nil
}

func (s stmtCore) NumInput() int { return s.x.numInput }

func (s stmtCore) Exec(args []driver.Value) (driver.Result, error) {
	s.x.c.c.record("Stmt.Exec %q %s", s.x.query, formatValues(args))
	return s.x.c.c.exec(nil, s.x.query, named(args))
}

func (s stmtCore) Query(args []driver.Value) (driver.Rows, error) {
	s.x.c.c.record("Stmt.Query %q %s", s.x.query, formatValues(args))
	return s.x.c.c.query(nil, s.x.query, named(args))
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.c.record("Stmt.ExecContext %q %s", s.query, formatArgs(args))
	return s.c.c.exec(ctx, s.query, args)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.c.record("Stmt.QueryContext %q %s", s.query, formatArgs(args))
	return s.c.c.query(ctx, s.query, args)
}

func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	s.c.c.record("Stmt.CheckNamedValue %s", formatArg(*nv))
	return check(nv, "stmt")
}

func (s *stmt) ColumnConverter(idx int) driver.ValueConverter {
	s.c.c.record("ColumnConverter %d", idx)
	return converter{}
}

type converter struct{}

func (converter) ConvertValue(v any) (driver.Value, error) {
	if a, ok := v.(Arg); ok && a.Kind == "convert" {
		return "converted", nil
	}
	return driver.DefaultParameterConverter.ConvertValue(v)
}

// rows implements every rows method; rowsCore carries driver.Rows's. Its
// columns are ordinal BIGINT NOT NULL, name TEXT NOT NULL, value TEXT NULL.
type rows struct {
	c    *Connector
	data [][]driver.Value
	pos  int // index of the next row; for ColumnScanner, the current row + 1
}

type rowsCore struct{ x *rows }

func (r rowsCore) Columns() []string { return []string{"ordinal", "name", "value"} }

func (r rowsCore) Close() error {
	r.x.c.record("Rows.Close")
	return nil
}

func (r rowsCore) Next(dest []driver.Value) error {
	if r.x.pos >= len(r.x.data) {
		return io.EOF
	}
	copy(dest, r.x.data[r.x.pos])
	r.x.pos++
	return nil
}

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	return [...]reflect.Type{reflect.TypeFor[int64](), reflect.TypeFor[string](), reflect.TypeFor[string]()}[i]
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	return [...]string{"BIGINT", "TEXT", "TEXT"}[i]
}

func (r *rows) ColumnTypeLength(i int) (int64, bool) {
	if i == 0 {
		return 0, false
	}
	return 1 << 20, true
}

func (r *rows) ColumnTypeNullable(i int) (nullable, ok bool) { return i == 2, true }

func (r *rows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if i == 0 {
		return 19, 0, true
	}
	return 0, 0, false
}

func named(values []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(values))
	for i, v := range values {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return out
}

func formatArg(a driver.NamedValue) string {
	return fmt.Sprintf("%d:%s=%T(%v)", a.Ordinal, a.Name, a.Value, a.Value)
}

func formatArgs(args []driver.NamedValue) string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = formatArg(a)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func formatValues(args []driver.Value) string { return formatArgs(named(args)) }
