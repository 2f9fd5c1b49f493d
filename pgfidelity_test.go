package cachedsql_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// The fidelity harness runs one test body against real PostgreSQL through
// several drivers: plain pgx first (the baseline), then cachedsql opened in
// each supported way. The body records what it observes (values, Go types,
// column metadata, errors) into a fidRecord; each run gets its own record,
// and the records are compared by value afterwards. Because every run is
// independent, a driver that loses or changes anything makes the test fail
// (TestPGFidelityCatchesLossyWrapper proves it).
//
// The harness is meant to be reused: a later variant with a cache and rules
// can run the same bodies several times (cold, then warm) and every run must
// still match pgx.

// fidVariant is one way of opening the database.
type fidVariant struct {
	name string
	// open returns a pool on dsn; the harness closes it. schema is the
	// fixture's, for variants that declare rules on its tables.
	open func(t *testing.T, dsn, schema string) *sql.DB
	// pgxConn reaches the *pgx.Conn from what sql.Conn.Raw passes.
	pgxConn func(driverConn any) (*pgx.Conn, error)
	// runs is how many times the body runs on one pool (default 1); every
	// run is compared with the baseline.
	runs int
}

// fidBody is a test body. It records observations with r.record and may
// also fail t directly for things that must hold on every driver.
type fidBody func(t *testing.T, r *fidRun)

// fidRun is what a body sees: a pool, the shared schema and its record.
type fidRun struct {
	ctx     context.Context
	db      *sql.DB
	schema  string
	variant *fidVariant
	rec     *fidRecord
}

// q replaces every "@." in query with the fixture schema. Queries name the
// schema explicitly rather than relying on search_path, which cachedsql
// treats specially.
func (r *fidRun) q(query string) string { return strings.ReplaceAll(query, "@.", r.schema+".") }

func (r *fidRun) record(key string, v any) { r.rec.add(key, v) }

// recordErr records an error by its type, message and the PostgreSQL
// fields that identify it.
func (r *fidRun) recordErr(key string, err error) { r.record(key, fidErrOf(err)) }

// fidRecord is an ordered set of observations.
type fidRecord struct {
	keys []string
	vals map[string]any
	dups []string
}

func (rec *fidRecord) add(key string, v any) {
	if rec.vals == nil {
		rec.vals = make(map[string]any)
	}
	if _, dup := rec.vals[key]; dup {
		rec.dups = append(rec.dups, key)
		return
	}
	rec.keys = append(rec.keys, key)
	rec.vals[key] = v
}

// fidDiff lists how got differs from want, in want's order.
func fidDiff(want, got *fidRecord) []string {
	var diffs []string
	for _, k := range got.dups {
		diffs = append(diffs, fmt.Sprintf("%s: recorded twice", k))
	}
	for _, k := range want.keys {
		g, ok := got.vals[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: missing; want %#v", k, want.vals[k]))
			continue
		}
		if w := want.vals[k]; !fidEqual(g, w) {
			diffs = append(diffs, fmt.Sprintf("%s: got %#v; want %#v", k, g, w))
		}
	}
	for _, k := range got.keys {
		if _, ok := want.vals[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: got %#v; want nothing recorded", k, got.vals[k]))
		}
	}
	return diffs
}

var fidTimeType = reflect.TypeFor[time.Time]()

// fidEqual is reflect.DeepEqual, except that NaNs of a kind are equal (and
// 0 and -0 are not), and times are equal when they are the same instant in
// the same location with the same name and offset, whatever their internal
// representation.
func fidEqual(a, b any) bool { return fidEqualValue(reflect.ValueOf(a), reflect.ValueOf(b)) }

func fidEqualValue(a, b reflect.Value) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		if math.IsNaN(x) || math.IsNaN(y) {
			return math.IsNaN(x) && math.IsNaN(y)
		}
		return math.Float64bits(x) == math.Float64bits(y)
	case reflect.Complex64, reflect.Complex128:
		return fidEqualValue(reflect.ValueOf(real(a.Complex())), reflect.ValueOf(real(b.Complex()))) &&
			fidEqualValue(reflect.ValueOf(imag(a.Complex())), reflect.ValueOf(imag(b.Complex())))
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return fidEqualValue(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		fallthrough
	case reflect.Array:
		for i := range a.Len() {
			if !fidEqualValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for _, k := range a.MapKeys() {
			bv := b.MapIndex(k)
			if !bv.IsValid() || !fidEqualValue(a.MapIndex(k), bv) {
				return false
			}
		}
		return true
	case reflect.Struct:
		if a.Type() == fidTimeType && a.CanInterface() {
			ta, tb := a.Interface().(time.Time), b.Interface().(time.Time)
			return ta.Equal(tb) && ta.Location().String() == tb.Location().String() &&
				ta.Format(time.RFC3339Nano+" MST") == tb.Format(time.RFC3339Nano+" MST")
		}
		for i := range a.NumField() {
			if !fidEqualValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return a.Pointer() == b.Pointer()
	default:
		return a.Equal(b)
	}
}

// fidErr is how errors are recorded: what a caller can see of them. It
// holds no pointers, so differences print in full.
type fidErr struct {
	Type    string
	Message string
	PG      fidPgErr // set when errors.As finds a *pgconn.PgError
	Ctx     string   // "canceled", "deadline" when errors.Is finds them
	Timeout bool     // pgconn.Timeout(err)
}

type fidPgErr struct {
	Severity, Code, Message, Detail, Hint       string
	Position                                    int32
	SchemaName, TableName, ColumnName           string
	DataTypeName, ConstraintName, InternalQuery string
}

// fidErrOf returns nil for a nil error, else its fidErr.
func fidErrOf(err error) any {
	if err == nil {
		return nil
	}
	return fidErrValue(err)
}

func fidErrValue(err error) fidErr {
	if err == nil {
		return fidErr{}
	}
	e := fidErr{Type: fmt.Sprintf("%T", err), Message: err.Error(), Timeout: pgconn.Timeout(err)}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		e.PG = fidPgErr{
			Severity: pe.Severity, Code: pe.Code, Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint,
			Position: pe.Position, SchemaName: pe.SchemaName, TableName: pe.TableName,
			ColumnName: pe.ColumnName, DataTypeName: pe.DataTypeName,
			ConstraintName: pe.ConstraintName, InternalQuery: pe.InternalQuery,
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		e.Ctx = "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		e.Ctx = "deadline"
	}
	return e
}

// fidColumnType is every field of a *sql.ColumnType.
type fidColumnType struct {
	Name             string
	DatabaseTypeName string
	ScanType         string
	Nullable         [2]bool // value, ok
	Length           int64
	LengthOK         bool
	Precision, Scale int64
	DecimalOK        bool
}

func fidColumnTypes(rows *sql.Rows) ([]fidColumnType, error) {
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	out := make([]fidColumnType, len(cts))
	for i, ct := range cts {
		f := fidColumnType{Name: ct.Name(), DatabaseTypeName: ct.DatabaseTypeName()}
		if st := ct.ScanType(); st != nil {
			f.ScanType = st.PkgPath() + "." + st.String()
		}
		f.Nullable[0], f.Nullable[1] = ct.Nullable()
		f.Length, f.LengthOK = ct.Length()
		f.Precision, f.Scale, f.DecimalOK = ct.DecimalSize()
		out[i] = f
	}
	return out, nil
}

// fidScanner is a custom sql.Scanner: it records what database/sql hands it.
type fidScanner struct {
	Type  string
	Value any
}

func (s *fidScanner) Scan(src any) error {
	s.Type = fmt.Sprintf("%T", src)
	if b, ok := src.([]byte); ok {
		src = append([]byte(nil), b...) // src is only valid during Scan
	}
	s.Value = src
	return nil
}

// fidDest is one kind of Scan destination.
type fidDest struct {
	name string
	new  func() any
}

// fidDests are the destinations every column is scanned into: conversion
// errors are observations too, and must match.
var fidDests = []fidDest{
	{"any", func() any { return new(any) }},
	{"string", func() any { return new(string) }},
	{"*string", func() any { return new(*string) }},
	{"[]byte", func() any { return new([]byte) }},
	{"int16", func() any { return new(int16) }},
	{"int32", func() any { return new(int32) }},
	{"int64", func() any { return new(int64) }},
	{"*int64", func() any { return new(*int64) }},
	{"uint64", func() any { return new(uint64) }},
	{"float32", func() any { return new(float32) }},
	{"float64", func() any { return new(float64) }},
	{"bool", func() any { return new(bool) }},
	{"time.Time", func() any { return new(time.Time) }},
	{"*time.Time", func() any { return new(*time.Time) }},
	{"NullString", func() any { return new(sql.NullString) }},
	{"NullInt16", func() any { return new(sql.NullInt16) }},
	{"NullInt32", func() any { return new(sql.NullInt32) }},
	{"NullInt64", func() any { return new(sql.NullInt64) }},
	{"NullFloat64", func() any { return new(sql.NullFloat64) }},
	{"NullBool", func() any { return new(sql.NullBool) }},
	{"NullTime", func() any { return new(sql.NullTime) }},
	{"NullByte", func() any { return new(sql.NullByte) }},
	{"Null[string]", func() any { return new(sql.Null[string]) }},
	{"Null[[]byte]", func() any { return new(sql.Null[[]byte]) }},
	{"Null[float32]", func() any { return new(sql.Null[float32]) }},
	{"Null[time.Time]", func() any { return new(sql.Null[time.Time]) }},
	{"Scanner", func() any { return new(fidScanner) }},
	// Last: after a Scan into RawBytes, database/sql refuses further Scans
	// of the row until Next.
	{"RawBytes", func() any { return new(sql.RawBytes) }},
}

// fidScanResult is one Scan into one destination.
type fidScanResult struct {
	Value any
	Err   any // nil or a fidErr
}

// fidSnapshot copies what a destination holds, so bytes that belong to the
// driver (RawBytes) are captured before the next Next or Close.
func fidSnapshot(dest any) any {
	switch d := dest.(type) {
	case *sql.RawBytes:
		if *d == nil {
			return []byte(nil)
		}
		return append([]byte{}, *d...)
	case *any:
		if b, ok := (*d).([]byte); ok {
			return append([]byte(nil), b...)
		}
		return *d
	}
	v := reflect.ValueOf(dest).Elem()
	if v.Kind() == reflect.Pointer {
		// Record what a **T points to, not an address.
		if v.IsNil() {
			return fidNilable{Nil: true}
		}
		return fidNilable{Elem: v.Elem().Interface()}
	}
	return v.Interface()
}

// fidNilable is a snapshot of a pointer destination such as *string.
type fidNilable struct {
	Nil  bool
	Elem any
}

// scanQuery runs a one-column query and scans its every row into every
// destination in fidDests, recording the results under key. database/sql
// allows repeated Scans of one row, so one query serves all destinations.
func (r *fidRun) scanQuery(t *testing.T, key, query string, args ...any) {
	t.Helper()
	rows, err := r.db.QueryContext(r.ctx, query, args...)
	if err != nil {
		r.recordErr(key+"/query", err)
		return
	}
	defer rows.Close()
	cols, err := rows.Columns()
	r.record(key+"/columns", fidScanResult{cols, fidErrOf(err)})
	cts, err := fidColumnTypes(rows)
	r.record(key+"/columnTypes", fidScanResult{cts, fidErrOf(err)})
	n := 0
	for rows.Next() {
		for _, d := range fidDests {
			dest := d.new()
			err := rows.Scan(dest)
			r.record(fmt.Sprintf("%s/row%d/%s", key, n, d.name), fidScanResult{fidSnapshot(dest), fidErrOf(err)})
		}
		n++
	}
	r.recordErr(key+"/rows.Err", rows.Err())
	r.record(key+"/rowCount", n)
	r.recordErr(key+"/rows.Close", rows.Close())
}

// scanAll runs a query and scans every row into []any, the way generic
// code (ORMs, sqlx.MapScan) reads rows it knows nothing about.
func (r *fidRun) scanAll(key, query string, args ...any) {
	rows, err := r.db.QueryContext(r.ctx, query, args...)
	if err != nil {
		r.recordErr(key+"/query", err)
		return
	}
	defer rows.Close()
	cols, err := rows.Columns()
	r.record(key+"/columns", fidScanResult{cols, fidErrOf(err)})
	cts, err := fidColumnTypes(rows)
	r.record(key+"/columnTypes", fidScanResult{cts, fidErrOf(err)})
	var got [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			r.recordErr(fmt.Sprintf("%s/row%d/scan", key, len(got)), err)
		}
		for i, v := range vals {
			vals[i] = fidSnapshot(&v)
		}
		got = append(got, vals)
	}
	r.record(key+"/rows", got)
	r.recordErr(key+"/rows.Err", rows.Err())
}

// exec records a statement's result: RowsAffected and LastInsertId, values
// and errors.
func (r *fidRun) exec(key, query string, args ...any) {
	res, err := r.db.ExecContext(r.ctx, query, args...)
	r.recordErr(key+"/err", err)
	if err == nil {
		r.recordResult(key, res)
	}
}

func (r *fidRun) recordResult(key string, res sql.Result) {
	n, err := res.RowsAffected()
	r.record(key+"/RowsAffected", fidScanResult{n, fidErrOf(err)})
	id, err := res.LastInsertId()
	r.record(key+"/LastInsertId", fidScanResult{id, fidErrOf(err)})
}

// fidRandomName returns a fresh lower-case identifier suffix.
func fidRandomName() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// fidFixture creates the schema the bodies read and write, unique to this
// test run so parallel test packages never collide, and drops it at cleanup.
func fidFixture(t *testing.T, dsn string) string {
	t.Helper()
	schema := "cs_fid_" + fidRandomName()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("dropping %s: %v", schema, err)
		}
		db.Close()
	})
	ddl := strings.ReplaceAll(fidSchemaSQL, "@.", schema+".")
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	// The simple protocol runs the multi-statement script in one go.
	if _, err := db.Exec(ddl, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("creating fixture: %v", err)
	}
	return schema
}

// fidTypeColumns are the columns of @.types, one per PostgreSQL type.
var fidTypeColumns = []string{
	"c_int2", "c_int4", "c_int8", "c_numeric", "c_numeric_ps", "c_float4", "c_float8",
	"c_text", "c_varchar", "c_char", "c_bool", "c_bytea",
	"c_ts", "c_tstz", "c_date", "c_time", "c_timetz", "c_interval",
	"c_uuid", "c_json", "c_jsonb", "c_int8arr", "c_textarr", "c_int4arr2d", "c_mood",
	"c_inet", "c_cidr", "c_macaddr", "c_money",
}

// fidTypeRows are the ids of @.types: 1 ordinary values, 2 minimums and
// empties, 3 maximums, NaN and +infinity, 4 -infinity and odd values, 5 NULLs.
var fidTypeRows = []int{1, 2, 3, 4, 5}

const fidSchemaSQL = `
CREATE TYPE @.mood AS ENUM ('sad', 'ok', 'happy');

CREATE TABLE @.types (
	id           int PRIMARY KEY,
	c_int2       int2,
	c_int4       int4,
	c_int8       int8,
	c_numeric    numeric,
	c_numeric_ps numeric(40, 20),
	c_float4     float4,
	c_float8     float8,
	c_text       text,
	c_varchar    varchar(10),
	c_char       char(5),
	c_bool       bool,
	c_bytea      bytea,
	c_ts         timestamp,
	c_tstz       timestamptz,
	c_date       date,
	c_time       time,
	c_timetz     timetz,
	c_interval   interval,
	c_uuid       uuid,
	c_json       json,
	c_jsonb      jsonb,
	c_int8arr    int8[],
	c_textarr    text[],
	c_int4arr2d  int4[],
	c_mood       @.mood,
	c_inet       inet,
	c_cidr       cidr,
	c_macaddr    macaddr,
	c_money      money
);

INSERT INTO @.types VALUES
(1, 1, 2, 3, 12345.6789, 1.5, 1.5, 2.25, 'hello', 'var', 'ch', true, '\x00ff10',
 '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+05:30', '2024-02-29',
 '13:14:15.5', '13:14:15+02', '1 year 2 mons 3 days 04:05:06.789',
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50, null]}', '{"b": {"c": "d"}, "a": 1}',
 '{1,NULL,3}', '{"x",NULL,"","with,comma","quo\"te"}', '{{1,2},{3,4}}', 'happy',
 '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '1234.56'),
(2, -32768, -2147483648, -9223372036854775808,
 '-123456789012345678901234567890.123456789012345678901234567890',
 '-12345678901234567890.12345678901234567890', -3.4e38, -1.7976931348623157e308,
 '', '', '', false, '',
 '0001-01-01 00:00:00', '1970-01-01 00:00:00+00', '0001-01-01',
 '00:00:00', '00:00:00-15:59', '-178000000 years',
 '00000000-0000-0000-0000-000000000000', 'null', '[]',
 '{}', '{}', '{}', 'sad',
 '::1', '2001:db8::/32', '00:00:00:00:00:00', '-92233720368547758.08'),
(3, 32767, 2147483647, 9223372036854775807, 'NaN', '0.00000000000000000001', 'NaN', 'NaN',
 'héllo wörld ✓ 日本', 'xxxxxxxxxx', 'abcde', true, '\xdeadbeef',
 'infinity', 'infinity', 'infinity',
 '24:00:00', '24:00:00+15:59', '178000000 years',
 'ffffffff-ffff-ffff-ffff-ffffffffffff', '"\u00e9\ud83d\ude00"', '{"k": "\u00e9"}',
 '{9223372036854775807,-9223372036854775808}', '{NULL}', '{{NULL,2},{3,NULL}}', 'ok',
 '2001:db8::1/64', '0.0.0.0/0', 'ff:ff:ff:ff:ff:ff', '92233720368547758.07'),
(4, 0, 0, 0, '1e-30', '-0', 'Infinity', '-Infinity',
 E'tab\there\nnewline ''quote''', 'a b', ' ', NULL, '\x00',
 '-infinity', '-infinity', '-infinity',
 '23:59:59.999999', '23:59:59.999999-00', '-1 days -00:00:01',
 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '  {"spaces" :  true }  ', '{"z": 1, "a": [true, false]}',
 '{NULL,NULL}', '{"NULL","null"}', '{}', NULL,
 '10.1.2.3', '10.1.2.0/24', '08-00-2b-01-02-03', '0'),
(5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL);

UPDATE @.types SET c_float4 = '-0' WHERE id = 4;

CREATE TABLE @.writes (
	id   bigserial PRIMARY KEY,
	name text NOT NULL UNIQUE,
	n    int
);
`

// fidVariants are the drivers every body runs on; the first is the baseline.
func fidVariants() []fidVariant {
	return []fidVariant{
		{
			name: "pgx",
			open: func(t *testing.T, dsn, schema string) *sql.DB {
				db, err := sql.Open("pgx", dsn)
				if err != nil {
					t.Fatal(err)
				}
				return db
			},
			pgxConn: func(dc any) (*pgx.Conn, error) {
				c, ok := dc.(*stdlib.Conn)
				if !ok {
					return nil, fmt.Errorf("driver conn is %T; want *stdlib.Conn", dc)
				}
				return c.Conn(), nil
			},
		},
		{
			name: "cachedsql/NewConnector",
			open: func(t *testing.T, dsn, schema string) *sql.DB {
				cfg, err := pgx.ParseConfig(dsn)
				if err != nil {
					t.Fatal(err)
				}
				cn, err := cachedsql.NewConnector(stdlib.GetConnector(*cfg), cachedsql.Config{})
				if err != nil {
					t.Fatal(err)
				}
				return sql.OpenDB(cn)
			},
			pgxConn: fidInnerPgxConn,
		},
		{
			name: "cachedsql/sql.Open",
			open: func(t *testing.T, dsn, schema string) *sql.DB {
				db, err := sql.Open(cachedsql.DriverName, dsn)
				if err != nil {
					t.Fatal(err)
				}
				return db
			},
			pgxConn: fidInnerPgxConn,
		},
	}
}

// fidInnerPgxConn is the documented way to reach pgx through cachedsql.
func fidInnerPgxConn(dc any) (*pgx.Conn, error) {
	c, ok := cachedsql.InnerConn(dc).(*stdlib.Conn)
	if !ok {
		return nil, fmt.Errorf("InnerConn(%T) is %T; want *stdlib.Conn", dc, cachedsql.InnerConn(dc))
	}
	return c.Conn(), nil
}

// runFidelity runs body on every variant, each in a fresh state of one
// fixture schema, and fails t where a variant's record differs from the
// first variant's.
func runFidelity(t *testing.T, variants []fidVariant, body fidBody) {
	dsn := testenv.PostgresDSN(t)
	schema := fidFixture(t, dsn)
	var base *fidRecord
	for i := range variants {
		v := &variants[i]
		runs := max(v.runs, 1)
		db := v.open(t, dsn, schema)
		for run := range runs {
			name := v.name
			if runs > 1 {
				name = fmt.Sprintf("%s/run%d", v.name, run)
			}
			rec := fidRunBody(t, name, db, schema, v, body)
			if base == nil {
				base = rec
				if len(rec.keys) == 0 {
					t.Fatalf("%s: body recorded nothing", name)
				}
				continue
			}
			for _, d := range fidDiff(base, rec) {
				t.Errorf("%s differs from %s: %s", name, variants[0].name, d)
			}
		}
		if err := db.Close(); err != nil {
			t.Errorf("%s: Close: %v", v.name, err)
		}
	}
}

func fidRunBody(t *testing.T, name string, db *sql.DB, schema string, v *fidVariant, body fidBody) *fidRecord {
	rec := new(fidRecord)
	t.Run(name, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Every run starts from the same data, so identifiers and
		// RowsAffected are comparable.
		if _, err := db.ExecContext(ctx, "TRUNCATE "+schema+".writes RESTART IDENTITY"); err != nil {
			t.Fatal(err)
		}
		body(t, &fidRun{ctx: ctx, db: db, schema: schema, variant: v, rec: rec})
	})
	return rec
}

func TestPGFidelity(t *testing.T) {
	runFidelity(t, fidVariants(), fidBodyAll)
}

// fidBodyAll is every part of the fidelity body, in order.
func fidBodyAll(t *testing.T, r *fidRun) {
	for _, part := range []struct {
		name string
		body fidBody
	}{
		{"types", fidBodyTypes},
		{"timezone", fidBodyTimeZone},
		{"exec", fidBodyExec},
		{"errors", fidBodyErrors},
		{"tx", fidBodyTx},
		{"prepared", fidBodyPrepared},
		{"raw", fidBodyRaw},
		{"named", fidBodyNamed},
		{"cancel", fidBodyCancel},
	} {
		// Prefix keys with the part, so a part's failure is easy to find.
		sub := *r
		sub.rec = &fidRecord{}
		part.body(t, &sub)
		for _, k := range sub.rec.keys {
			r.record(part.name+"/"+k, sub.rec.vals[k])
		}
		for _, k := range sub.rec.dups {
			r.rec.dups = append(r.rec.dups, part.name+"/"+k)
		}
	}
}

// fidBodyTypes reads every column of every row, by key, into every
// destination, and every row whole into []any.
func fidBodyTypes(t *testing.T, r *fidRun) {
	for _, col := range fidTypeColumns {
		for _, id := range fidTypeRows {
			r.scanQuery(t, fmt.Sprintf("%s/id%d", col, id),
				r.q("SELECT "+col+" FROM @.types WHERE id = $1"), id)
		}
	}
	for _, id := range fidTypeRows {
		r.scanAll(fmt.Sprintf("star/id%d", id), r.q("SELECT * FROM @.types WHERE id = $1"), id)
		// pgx's leading option arguments pass through database/sql; in the
		// simple protocol results come back as text, and pgx converts them.
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			r.scanAll(fmt.Sprintf("star/id%d/%s", id, mode), r.q("SELECT * FROM @.types WHERE id = $1"), mode, id)
		}
	}
	// Rows 1, 2 and 5 hold no infinities, which pgx cannot always convert,
	// so they can be read together.
	r.scanAll("star/ordered", r.q("SELECT * FROM @.types WHERE id IN (1, 2, 5) ORDER BY id"))
	r.scanAll("none", r.q("SELECT * FROM @.types WHERE id = $1"), -1)
	// Literals and expressions of types no column has.
	r.scanAll("literals", `SELECT 1 AS one, 'x'::varchar(3) AS v3, 1.50::numeric(5,2) AS n52,
		NULL AS untyped, NULL::int AS null_int, '{}'::jsonb AS j, ARRAY[1.5, NULL]::float8[] AS fa,
		'(1,2)'::point AS pt, int4range(1, 5) AS r, B'101' AS bits, 'a'::"char" AS ch1, 42::oid AS oid`)

	// Sanity: the baseline must see the values, or matching proves little.
	var s string
	if err := r.db.QueryRowContext(r.ctx, r.q("SELECT c_text FROM @.types WHERE id = 1")).Scan(&s); err != nil || s != "hello" {
		t.Errorf("c_text of row 1: got %q, %v; want \"hello\", nil", s, err)
	}
	var f float64
	if err := r.db.QueryRowContext(r.ctx, r.q("SELECT c_float8 FROM @.types WHERE id = 3")).Scan(&f); err != nil || !math.IsNaN(f) {
		t.Errorf("c_float8 of row 3: got %v, %v; want NaN, nil", f, err)
	}
}

// fidBodyTimeZone reads timestamps in a session whose TimeZone is not UTC,
// with a half-hour offset so no accidental match with the process's zone.
func fidBodyTimeZone(t *testing.T, r *fidRun) {
	c, err := r.db.Conn(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(r.ctx, "SET TIME ZONE 'Asia/Kolkata'"); err != nil {
		t.Fatal(err)
	}
	// Give the connection back clean to the pool.
	defer c.ExecContext(context.Background(), "RESET TIME ZONE")
	for _, id := range fidTypeRows {
		rows, err := c.QueryContext(r.ctx,
			r.q("SELECT c_ts, c_tstz, c_date, c_time, c_timetz, c_tstz::text, c_timetz::text FROM @.types WHERE id = $1"), id)
		if err != nil {
			r.recordErr(fmt.Sprintf("id%d/query", id), err)
			continue
		}
		cts, err := fidColumnTypes(rows)
		r.record(fmt.Sprintf("id%d/columnTypes", id), fidScanResult{cts, fidErrOf(err)})
		for rows.Next() {
			var a [7]any
			var s [7]sql.NullString
			var tm [2]sql.NullTime
			err := rows.Scan(&a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6])
			r.record(fmt.Sprintf("id%d/any", id), fidScanResult{a, fidErrOf(err)})
			err = rows.Scan(&s[0], &s[1], &s[2], &s[3], &s[4], &s[5], &s[6])
			r.record(fmt.Sprintf("id%d/NullString", id), fidScanResult{s, fidErrOf(err)})
			err = rows.Scan(&tm[0], &tm[1], new(any), new(any), new(any), new(any), new(any))
			r.record(fmt.Sprintf("id%d/NullTime", id), fidScanResult{tm, fidErrOf(err)})
		}
		r.recordErr(fmt.Sprintf("id%d/rows.Err", id), rows.Err())
		rows.Close()
	}
	var tz string
	err = c.QueryRowContext(r.ctx, "SHOW TimeZone").Scan(&tz)
	r.record("show", fidScanResult{tz, fidErrOf(err)})
	if tz != "Asia/Kolkata" {
		t.Errorf("SHOW TimeZone: got %q; want \"Asia/Kolkata\"", tz)
	}
}

// fidBodyExec records Exec results: RowsAffected and LastInsertId's error.
func fidBodyExec(t *testing.T, r *fidRun) {
	r.exec("insert1", r.q("INSERT INTO @.writes (name, n) VALUES ($1, $2)"), "a", 1)
	r.exec("insert3", r.q("INSERT INTO @.writes (name, n) VALUES ('b', 2), ('c', 3), ('d', NULL)"))
	r.exec("update2", r.q("UPDATE @.writes SET n = n + 10 WHERE n >= $1"), 2)
	r.exec("update0", r.q("UPDATE @.writes SET n = 0 WHERE id = $1"), -1)
	r.exec("delete1", r.q("DELETE FROM @.writes WHERE name = $1"), "d")
	r.exec("simple", r.q("UPDATE @.writes SET n = n WHERE name = $1"), pgx.QueryExecModeSimpleProtocol, "a")
	r.exec("multi", r.q("UPDATE @.writes SET n = n WHERE name = 'a'; UPDATE @.writes SET n = n"), pgx.QueryExecModeSimpleProtocol)
	r.exec("ddl", r.q("CREATE TEMP TABLE fid_tmp (x int)"))
	r.exec("select", r.q("SELECT * FROM @.writes"))
	r.exec("empty", "")
	r.exec("comment", "-- nothing")
	r.scanAll("after", r.q("SELECT id, name, n FROM @.writes ORDER BY id"))
	// An autocommit write sent through Query.
	r.scanAll("returning", r.q("INSERT INTO @.writes (name) VALUES ('e') RETURNING id, name, n"))
	r.scanAll("after-returning", r.q("SELECT id, name, n FROM @.writes ORDER BY id"))
	r.exec("drop", "DROP TABLE IF EXISTS fid_tmp")
}

// fidBodyErrors records errors from the server and from database/sql.
func fidBodyErrors(t *testing.T, r *fidRun) {
	_, err := r.db.ExecContext(r.ctx, r.q("INSERT INTO @.writes (name) VALUES ('dup'), ('dup')"))
	r.recordErr("unique", err)
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "23505" {
		t.Errorf("unique violation: got %v; want a *pgconn.PgError with code 23505", err)
	}
	_, err = r.db.ExecContext(r.ctx, "SELEKT 1")
	r.recordErr("syntax/exec", err)
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "42601" {
		t.Errorf("syntax error: got %v; want a *pgconn.PgError with code 42601", err)
	}
	_, err = r.db.QueryContext(r.ctx, "SELECT 1 FROM")
	r.recordErr("syntax/query", err)
	_, err = r.db.PrepareContext(r.ctx, "SELEKT $1")
	r.recordErr("syntax/prepare", err)
	r.scanAll("undefined-table", r.q("SELECT * FROM @.nope WHERE id = $1"), 1)
	r.scanAll("bad-param", r.q("SELECT c_int4 FROM @.types WHERE id = $1"), "not a number")
	r.scanAll("wrong-arg-count", r.q("SELECT c_int4 FROM @.types WHERE id = $1"))
	r.scanAll("division", "SELECT 1 / (SELECT 0)")
	// An error raised after rows were sent, while iterating.
	r.scanAll("mid-rows", "SELECT 1 / (3 - g) FROM generate_series(1, 5) g")
	var n int
	err = r.db.QueryRowContext(r.ctx, r.q("SELECT n FROM @.writes WHERE id = $1"), -1).Scan(&n)
	r.recordErr("no-rows", err)
	if !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("no row: got %v; want sql.ErrNoRows", err)
	}
}

// fidBodyTx covers commit, rollback, isolation levels and read-only.
func fidBodyTx(t *testing.T, r *fidRun) {
	count := func(key string) {
		var n int
		err := r.db.QueryRowContext(r.ctx, r.q("SELECT count(*) FROM @.writes WHERE name LIKE 'tx-%'")).Scan(&n)
		r.record(key, fidScanResult{n, fidErrOf(err)})
	}

	tx, err := r.db.BeginTx(r.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tx.ExecContext(r.ctx, r.q("INSERT INTO @.writes (name) VALUES ('tx-commit')"))
	r.recordErr("commit/insert", err)
	if err == nil {
		r.recordResult("commit/insert", res)
	}
	r.recordErr("commit", tx.Commit())
	r.recordErr("commit/again", tx.Commit())
	count("commit/count")

	tx, err = r.db.BeginTx(r.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.ExecContext(r.ctx, r.q("INSERT INTO @.writes (name) VALUES ('tx-rollback')"))
	r.recordErr("rollback/insert", err)
	var inside int
	err = tx.QueryRowContext(r.ctx, r.q("SELECT count(*) FROM @.writes WHERE name LIKE 'tx-%'")).Scan(&inside)
	r.record("rollback/inside", fidScanResult{inside, fidErrOf(err)})
	r.recordErr("rollback", tx.Rollback())
	r.recordErr("rollback/again", tx.Rollback())
	count("rollback/count")

	// A failed statement aborts the transaction; commit then reports it.
	tx, err = r.db.BeginTx(r.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.ExecContext(r.ctx, "SELEKT")
	r.recordErr("aborted/stmt", err)
	_, err = tx.ExecContext(r.ctx, "SELECT 1")
	r.recordErr("aborted/next", err)
	r.recordErr("aborted/commit", tx.Commit())

	levels := []sql.IsolationLevel{
		sql.LevelDefault, sql.LevelReadUncommitted, sql.LevelReadCommitted, sql.LevelWriteCommitted,
		sql.LevelRepeatableRead, sql.LevelSnapshot, sql.LevelSerializable, sql.LevelLinearizable,
	}
	for _, level := range levels {
		for _, ro := range []bool{false, true} {
			key := fmt.Sprintf("level/%s/ro=%v", level, ro)
			tx, err := r.db.BeginTx(r.ctx, &sql.TxOptions{Isolation: level, ReadOnly: ro})
			r.recordErr(key+"/begin", err)
			if err != nil {
				continue
			}
			var iso, readOnly string
			err = tx.QueryRowContext(r.ctx, "SHOW transaction_isolation").Scan(&iso)
			r.record(key+"/isolation", fidScanResult{iso, fidErrOf(err)})
			err = tx.QueryRowContext(r.ctx, "SHOW transaction_read_only").Scan(&readOnly)
			r.record(key+"/read_only", fidScanResult{readOnly, fidErrOf(err)})
			_, err = tx.ExecContext(r.ctx, r.q("INSERT INTO @.writes (name) VALUES ($1)"), "tx-"+key)
			r.recordErr(key+"/write", err)
			if ro {
				if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "25006" {
					t.Errorf("%s: write: got %v; want a *pgconn.PgError with code 25006", key, err)
				}
			}
			r.recordErr(key+"/rollback", tx.Rollback())
			if level == sql.LevelSerializable && iso != "serializable" {
				t.Errorf("%s: SHOW transaction_isolation: got %q; want \"serializable\"", key, iso)
			}
		}
	}
	count("levels/count")
}

// fidBodyPrepared covers db.Prepare, reuse across connections, Tx.Stmt and
// Conn.PrepareContext.
func fidBodyPrepared(t *testing.T, r *fidRun) {
	ins, err := r.db.PrepareContext(r.ctx, r.q("INSERT INTO @.writes (name, n) VALUES ($1, $2)"))
	if err != nil {
		t.Fatal(err)
	}
	defer ins.Close()
	sel, err := r.db.PrepareContext(r.ctx, r.q("SELECT name, n, pg_backend_pid() FROM @.writes WHERE name = $1"))
	if err != nil {
		t.Fatal(err)
	}
	defer sel.Close()

	// Holding connections makes the pool open new ones, so the statements
	// are re-prepared and reused across connections.
	pids := make(map[int32]bool)
	var held []*sql.Conn
	for i := range 4 {
		name := fmt.Sprintf("prep-%d", i)
		res, err := ins.ExecContext(r.ctx, name, i)
		r.recordErr(name+"/exec", err)
		if err == nil {
			r.recordResult(name+"/exec", res)
		}
		var got string
		var n sql.NullInt64
		var pid int32
		err = sel.QueryRowContext(r.ctx, name).Scan(&got, &n, &pid)
		r.record(name+"/select", fidScanResult{[]any{got, n}, fidErrOf(err)})
		pids[pid] = true
		c, err := r.db.Conn(r.ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for _, c := range held {
		c.Close()
	}
	r.record("distinct-connections>1", len(pids) > 1)
	if len(pids) < 2 {
		t.Errorf("prepared statement ran on %d connections; want at least 2", len(pids))
	}

	var got string
	err = sel.QueryRowContext(r.ctx, "nope").Scan(&got)
	r.recordErr("select/no-rows", err)
	_, err = ins.ExecContext(r.ctx, "prep-0", 0)
	r.recordErr("exec/duplicate", err)
	_, err = ins.ExecContext(r.ctx, "too few")
	r.recordErr("exec/arg-count", err)

	tx, err := r.db.BeginTx(r.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tx.StmtContext(r.ctx, ins).ExecContext(r.ctx, "prep-tx", 9)
	r.recordErr("tx/exec", err)
	if err == nil {
		r.recordResult("tx/exec", res)
	}
	var n sql.NullInt64
	err = tx.StmtContext(r.ctx, sel).QueryRowContext(r.ctx, "prep-tx").Scan(&got, &n, new(int32))
	r.record("tx/select", fidScanResult{[]any{got, n}, fidErrOf(err)})
	r.recordErr("tx/rollback", tx.Rollback())

	c, err := r.db.Conn(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cs, err := c.PrepareContext(r.ctx, r.q("SELECT c_int8arr, c_jsonb FROM @.types WHERE id = $1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	for _, id := range fidTypeRows {
		var a, j any
		err := cs.QueryRowContext(r.ctx, id).Scan(&a, &j)
		r.record(fmt.Sprintf("conn/id%d", id), fidScanResult{[]any{fidSnapshot(&a), fidSnapshot(&j)}, fidErrOf(err)})
	}
}

// fidBodyRaw reaches the *pgx.Conn through sql.Conn.Raw and uses it.
func fidBodyRaw(t *testing.T, r *fidRun) {
	c, err := r.db.Conn(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Raw(func(dc any) error {
		pc, err := r.variant.pgxConn(dc)
		if err != nil {
			return err
		}
		// InnerConn is the identity for drivers other than cachedsql.
		r.record("InnerConn", fmt.Sprintf("%T", cachedsql.InnerConn(dc)))
		var ids []int64
		err = pc.QueryRow(r.ctx, r.q("SELECT c_int8arr FROM @.types WHERE id = $1"), 3).Scan(&ids)
		r.record("pgx-query", fidScanResult{ids, fidErrOf(err)})
		if err != nil || len(ids) != 2 {
			t.Errorf("pgx query: got %v, %v; want 2 elements, nil", ids, err)
		}
		var m map[string]any
		err = pc.QueryRow(r.ctx, r.q("SELECT c_jsonb FROM @.types WHERE id = 1")).Scan(&m)
		r.record("pgx-jsonb", fidScanResult{m, fidErrOf(err)})
		return nil
	})
	r.recordErr("raw", err)
	if err != nil {
		t.Errorf("Raw: got %v; want nil", err)
	}
	// The connection still works through database/sql afterwards.
	var one int
	err = c.QueryRowContext(r.ctx, "SELECT 1").Scan(&one)
	r.record("after", fidScanResult{one, fidErrOf(err)})
}

// fidBodyNamed passes sql.Named arguments, which pgx ignores the names of.
func fidBodyNamed(t *testing.T, r *fidRun) {
	r.scanAll("positional", "SELECT $1::int AS x", sql.Named("x", 1))
	r.scanAll("at-name", "SELECT @x::int AS x", sql.Named("x", 1))
	r.exec("exec", r.q("UPDATE @.writes SET n = $1 WHERE name = $2"), sql.Named("n", 5), sql.Named("name", "a"))
	st, err := r.db.PrepareContext(r.ctx, "SELECT $1::text")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var s string
	err = st.QueryRowContext(r.ctx, sql.Named("a", "v")).Scan(&s)
	r.record("stmt", fidScanResult{s, fidErrOf(err)})
	// database/sql itself rejects a name that is not a letter.
	_, err = r.db.ExecContext(r.ctx, "SELECT $1", sql.Named("1bad", 1))
	r.recordErr("bad-name", err)
}

// fidBodyCancel cancels queries mid-flight; the pool must stay usable.
func fidBodyCancel(t *testing.T, r *fidRun) {
	for _, how := range []string{"query", "exec", "tx"} {
		ctx, cancel := context.WithTimeout(r.ctx, 200*time.Millisecond)
		start := time.Now()
		var err error
		switch how {
		case "query":
			var rows *sql.Rows
			rows, err = r.db.QueryContext(ctx, "SELECT pg_sleep(10)")
			if err == nil {
				for rows.Next() {
				}
				err = rows.Err()
				rows.Close()
			}
		case "exec":
			_, err = r.db.ExecContext(ctx, "SELECT pg_sleep(10)")
		case "tx":
			var tx *sql.Tx
			tx, err = r.db.BeginTx(ctx, nil)
			if err == nil {
				_, err = tx.ExecContext(ctx, "SELECT pg_sleep(10)")
				// database/sql also rolls back when ctx is done: which
				// Rollback reaches the connection first is a race, so only
				// the failure is recorded (ErrTxDone or "conn closed").
				r.record(how+"/rollback-failed", tx.Rollback() != nil)
			}
		}
		cancel()
		r.record(how, fidErrClassOf(err))
		if err == nil {
			t.Errorf("%s: pg_sleep(10) with a 200ms deadline: got nil error", how)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: cancellation took %v; want well under the 10s sleep", how, d)
		}
		var one int
		err = r.db.QueryRowContext(r.ctx, "SELECT 1").Scan(&one)
		r.record(how+"/after", fidScanResult{one, fidErrOf(err)})
		r.recordErr(how+"/ping", r.db.PingContext(r.ctx))
	}
	// A context canceled before the call never reaches the server.
	ctx, cancel := context.WithCancel(r.ctx)
	cancel()
	_, err := r.db.QueryContext(ctx, "SELECT 1")
	r.recordErr("pre-canceled", err)
}

// fidErrClass is what callers test a cancellation error for. The message
// is left out: whether pgx or database/sql notices the deadline first is
// timing, not driver behaviour.
type fidErrClass struct {
	Type    string
	Ctx     string
	Timeout bool
	PGCode  string
}

func fidErrClassOf(err error) fidErrClass {
	e := fidErrValue(err)
	return fidErrClass{Type: e.Type, Ctx: e.Ctx, Timeout: e.Timeout, PGCode: e.PG.Code}
}

// TestPGFidelityCatchesLossyWrapper shows the harness fails when a driver
// loses something: a wrapper that hides ColumnTypeScanType (a bug seen in
// wrappers in the field) and nothing else.
func TestPGFidelityCatchesLossyWrapper(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	schema := fidFixture(t, dsn)
	variants := fidVariants()
	lossy := fidVariant{
		name: "lossy",
		open: func(t *testing.T, dsn, schema string) *sql.DB {
			cfg, err := pgx.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			return sql.OpenDB(fidLossyConnector{stdlib.GetConnector(*cfg)})
		},
		pgxConn: fidInnerPgxConn,
	}
	var recs []*fidRecord
	for _, v := range []fidVariant{variants[0], lossy} {
		db := v.open(t, dsn, schema)
		recs = append(recs, fidRunBody(t, v.name, db, schema, &v, fidBodyTypes))
		db.Close()
	}
	diffs := fidDiff(recs[0], recs[1])
	if len(diffs) == 0 {
		t.Fatal("lossy wrapper: got no differences; want ScanType differences")
	}
	for _, d := range diffs {
		if !strings.Contains(d, "columnTypes") {
			t.Errorf("lossy wrapper: got difference %s; want only column type differences", d)
		}
	}
}

// fidLossyConnector wraps pgx and hides its rows' ColumnTypeScanType.
type fidLossyConnector struct{ driver.Connector }

func (c fidLossyConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return fidLossyConn{dc.(*stdlib.Conn)}, nil
}

type fidLossyConn struct{ *stdlib.Conn }

func (c fidLossyConn) Unwrap() driver.Conn { return c.Conn }

func (c fidLossyConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := c.Conn.QueryContext(ctx, query, args)
	if err != nil {
		return nil, err
	}
	return fidLossyRows{rows.(*stdlib.Rows)}, nil
}

type fidLossyRows struct{ r *stdlib.Rows }

func (r fidLossyRows) Columns() []string              { return r.r.Columns() }
func (r fidLossyRows) Close() error                   { return r.r.Close() }
func (r fidLossyRows) Next(dest []driver.Value) error { return r.r.Next(dest) }
func (r fidLossyRows) ColumnTypeDatabaseTypeName(i int) string {
	return r.r.ColumnTypeDatabaseTypeName(i)
}
func (r fidLossyRows) ColumnTypeLength(i int) (int64, bool) { return r.r.ColumnTypeLength(i) }
func (r fidLossyRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	return r.r.ColumnTypePrecisionScale(i)
}

// TestFidEqual pins the comparison the harness relies on.
func TestFidEqual(t *testing.T) {
	kolkata := time.FixedZone("IST", 5*3600+1800)
	instant := time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC)
	nan32 := float32(math.NaN())
	for _, c := range []struct {
		a, b any
		want bool
	}{
		{math.NaN(), math.NaN(), true},
		{nan32, nan32, true},
		{math.NaN(), 0.0, false},
		{0.0, math.Copysign(0, -1), false},
		{math.Inf(1), math.Inf(1), true},
		{math.Inf(1), math.Inf(-1), false},
		{[]any{math.NaN(), "x"}, []any{math.NaN(), "x"}, true},
		{sql.NullFloat64{Float64: math.NaN(), Valid: true}, sql.NullFloat64{Float64: math.NaN(), Valid: true}, true},
		{int64(5), int32(5), false},
		{"5", []byte("5"), false},
		{[]byte(nil), []byte{}, false},
		{[]byte{1}, []byte{1}, true},
		{instant, instant.In(time.UTC), true},
		{instant, instant.In(kolkata), false},
		{instant, instant.Round(time.Millisecond), false},
		{instant.In(kolkata), instant.In(time.FixedZone("IST", 5*3600+1800)), true},
		{instant, instant.Add(time.Nanosecond), false},
		{map[string]any{"a": math.NaN()}, map[string]any{"a": math.NaN()}, true},
		{map[string]any{"a": 1}, map[string]any{"b": 1}, false},
		{(*string)(nil), new(string), false},
		{nil, nil, true},
		{nil, (*string)(nil), false},
		{fidErrOf(errors.New("x")), fidErrOf(errors.New("x")), true},
		{fidErrOf(errors.New("x")), fidErrOf(errors.New("y")), false},
		{fidErrOf(nil), nil, true},
		{fidErrOf(nil), fidErr{}, false},
	} {
		if got := fidEqual(c.a, c.b); got != c.want {
			t.Errorf("fidEqual(%#v, %#v): got %v; want %v", c.a, c.b, got, c.want)
		}
	}

	want, got := new(fidRecord), new(fidRecord)
	want.add("a", 1)
	want.add("b", 2)
	got.add("a", 1)
	got.add("c", 3)
	got.add("c", 3)
	if diffs := fidDiff(want, got); len(diffs) != 3 {
		t.Errorf("fidDiff: got %d differences %q; want 3 (duplicate c, missing b, extra c)", len(diffs), diffs)
	}
}

// fidCachedVariant is cachedsql with an in-process cache and rules on the
// fixture's tables. Its body runs three times on one pool (cold, then warm)
// and every run must match pgx. *cn is set to the connector when opened.
func fidCachedVariant(cn **cachedsql.Connector) fidVariant {
	return fidVariant{
		name: "cachedsql/cached",
		runs: 3,
		open: func(t *testing.T, dsn, schema string) *sql.DB {
			cfg, err := pgx.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			c, err := cachedsql.NewConnector(stdlib.GetConnector(*cfg), cachedsql.Config{
				Cache: cachedsql.NewMemoryCache(0),
				Rules: cachedsql.Rules{Tables: map[string]cachedsql.TableRule{
					schema + ".types":  {Keys: [][]string{{"id"}}},
					schema + ".writes": {Keys: [][]string{{"id"}, {"name"}}},
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			*cn = c
			return sql.OpenDB(c)
		},
		pgxConn: fidInnerPgxConn,
	}
}

// TestPGFidelityCached runs the body with reads served from the cache: G1
// says they must be indistinguishable from pgx's.
func TestPGFidelityCached(t *testing.T) {
	var cn *cachedsql.Connector
	runFidelity(t, []fidVariant{fidVariants()[0], fidCachedVariant(&cn)}, fidBodyAll)
	if cn == nil {
		return // skipped or failed before opening
	}
	// Without hits, matching pgx would prove nothing about cached reads.
	if st := cn.Stats(); st.Hits == 0 {
		t.Errorf("cache hits: got 0; want some (stats %+v)", st)
	}
}
