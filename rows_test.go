package cachedsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql/internal/testenv"
)

// replayConnector wraps a driver so that every query is materialized,
// stored in an entry, decoded and replayed: what a caller sees on a hit.
type replayConnector struct {
	inner driver.Connector
	// allowUncacheable replays results that could not be stored directly,
	// as the read path does; otherwise such a query fails.
	allowUncacheable bool
}

func (c *replayConnector) Connect(ctx context.Context) (driver.Conn, error) {
	ic, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &replayConn{inner: ic, c: c}, nil
}

func (c *replayConnector) Driver() driver.Driver { return c.inner.Driver() }

type replayConn struct {
	inner driver.Conn
	c     *replayConnector
}

func (rc *replayConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("replayConn: Prepare not supported")
}
func (rc *replayConn) Close() error { return rc.inner.Close() }
func (rc *replayConn) Begin() (driver.Tx, error) {
	return nil, errors.New("replayConn: no transactions")
}

func (rc *replayConn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := rc.inner.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (rc *replayConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	var res *result
	var m *pgtype.Map
	if sc, ok := rc.inner.(*stdlib.Conn); ok {
		var err error
		if res, err = materializePgx(ctx, sc.Conn(), query, args); err != nil {
			return nil, err
		}
		m = sc.Conn().TypeMap()
	} else {
		rows, err := rc.inner.(driver.QueryerContext).QueryContext(ctx, query, args)
		if err != nil {
			return nil, err
		}
		if err := materializable(rows); err != nil && !rc.c.allowUncacheable {
			rows.Close()
			return nil, err
		}
		if res, err = materializeRows(rows); err != nil {
			return nil, err
		}
	}
	if ok, why := res.cacheable(); !ok {
		if rc.c.allowUncacheable {
			return res.replay(m), nil
		}
		return nil, fmt.Errorf("not cacheable: %s", why)
	}
	b, err := (&entry{gen: "g"}).with("shape", res).encode()
	if err != nil {
		return nil, err
	}
	e, err := decodeEntry(b)
	if err != nil {
		return nil, err
	}
	stored, _ := e.lookup("shape")
	return stored.replay(m), nil
}

// scanner is a custom sql.Scanner that records what it was given.
type scanner struct{ v any }

func (s *scanner) Scan(src any) error {
	if b, ok := src.([]byte); ok {
		src = append([]byte(nil), b...) // only valid during Scan
	}
	s.v = src
	return nil
}

// destKinds are the destinations every column is scanned into; ct is the
// column's type, for its natural Go type.
var destKinds = map[string]func(ct *sql.ColumnType) any{
	"any":         func(*sql.ColumnType) any { return new(any) },
	"natural":     func(ct *sql.ColumnType) any { return reflect.New(ct.ScanType()).Interface() },
	"string":      func(*sql.ColumnType) any { return new(string) },
	"*string":     func(*sql.ColumnType) any { return new(*string) },
	"int64":       func(*sql.ColumnType) any { return new(int64) },
	"float64":     func(*sql.ColumnType) any { return new(float64) },
	"bool":        func(*sql.ColumnType) any { return new(bool) },
	"time":        func(*sql.ColumnType) any { return new(time.Time) },
	"[]byte":      func(*sql.ColumnType) any { return new([]byte) },
	"RawBytes":    func(*sql.ColumnType) any { return new(sql.RawBytes) },
	"NullString":  func(*sql.ColumnType) any { return new(sql.NullString) },
	"NullInt64":   func(*sql.ColumnType) any { return new(sql.NullInt64) },
	"NullFloat64": func(*sql.ColumnType) any { return new(sql.NullFloat64) },
	"NullBool":    func(*sql.ColumnType) any { return new(sql.NullBool) },
	"NullTime":    func(*sql.ColumnType) any { return new(sql.NullTime) },
	"Null[int32]": func(*sql.ColumnType) any { return new(sql.Null[int32]) },
	"scanner":     func(*sql.ColumnType) any { return new(scanner) },
}

// scanned is one column scanned into one destination kind.
type scanned struct {
	Value any
	Err   string
}

// rowSnapshot is everything a caller can observe of a query's result.
type rowSnapshot struct {
	Columns []string
	Types   []columnTypeSnapshot
	Rows    []map[string]scanned // per row, "column/kind" -> outcome
}

type columnTypeSnapshot struct {
	Name, DatabaseTypeName string
	ScanType               reflect.Type
	Length                 int64
	LengthOK               bool
	Precision, Scale       int64
	DecimalOK              bool
	Nullable, NullableOK   bool
}

func snapshotRows(t *testing.T, db *sql.DB, query string, args ...any) rowSnapshot {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var s rowSnapshot
	if s.Columns, err = rows.Columns(); err != nil {
		t.Fatal(err)
	}
	cts, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range cts {
		c := columnTypeSnapshot{Name: ct.Name(), DatabaseTypeName: ct.DatabaseTypeName(), ScanType: ct.ScanType()}
		c.Length, c.LengthOK = ct.Length()
		c.Precision, c.Scale, c.DecimalOK = ct.DecimalSize()
		c.Nullable, c.NullableOK = ct.Nullable()
		s.Types = append(s.Types, c)
	}
	for rows.Next() {
		// Scan the same row repeatedly: each column into each kind, the
		// others into *any.
		row := map[string]scanned{}
		for i, ct := range cts {
			for kind, mk := range destKinds {
				if kind == "natural" && ct.ScanType() == nil || kind == "RawBytes" {
					continue
				}
				dest := make([]any, len(cts))
				for j := range dest {
					dest[j] = new(any)
				}
				dest[i] = mk(ct)
				var out scanned
				if err := rows.Scan(dest...); err != nil {
					out.Err = err.Error()
				}
				out.Value = reflect.ValueOf(dest[i]).Elem().Interface()
				row[ct.Name()+"/"+kind] = out
			}
		}
		// database/sql allows no Scan after one into RawBytes until Next:
		// scan all columns into RawBytes last.
		dest := make([]any, len(cts))
		for j := range dest {
			dest[j] = new(sql.RawBytes)
		}
		var errText string
		if err := rows.Scan(dest...); err != nil {
			errText = err.Error()
		}
		for j, ct := range cts {
			var v any
			if rb := *dest[j].(*sql.RawBytes); rb != nil {
				v = append([]byte("raw:"), rb...) // RawBytes is reused
			}
			row[ct.Name()+"/RawBytes"] = scanned{Value: v, Err: errText}
		}
		s.Rows = append(s.Rows, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// compareSnapshots reports every difference between a direct and a
// replayed result.
func compareSnapshots(t *testing.T, what string, direct, replayed rowSnapshot) {
	t.Helper()
	if !reflect.DeepEqual(direct.Columns, replayed.Columns) {
		t.Errorf("%s: columns %q; replayed %q", what, direct.Columns, replayed.Columns)
	}
	if !reflect.DeepEqual(direct.Types, replayed.Types) {
		for i := range direct.Types {
			if i >= len(replayed.Types) || !reflect.DeepEqual(direct.Types[i], replayed.Types[i]) {
				t.Errorf("%s: column type %d: %+v", what, i, direct.Types[i])
				if i < len(replayed.Types) {
					t.Errorf("%s:     replayed: %+v", what, replayed.Types[i])
				}
			}
		}
	}
	if len(direct.Rows) != len(replayed.Rows) {
		t.Fatalf("%s: %d rows; replayed %d", what, len(direct.Rows), len(replayed.Rows))
	}
	n := 0
	for i := range direct.Rows {
		for k, d := range direct.Rows[i] {
			r := replayed.Rows[i][k]
			if d.Err != r.Err || !equalValues(d.Value, r.Value) {
				t.Errorf("%s: row %d %s: %#v (err %q); replayed %#v (err %q)", what, i, k, d.Value, d.Err, r.Value, r.Err)
			}
			n++
		}
	}
	t.Logf("%s: compared %d column types and %d scans", what, len(direct.Types), n)
}

const pgTypesQuery = `SELECT
	1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, '-9223372036854775808'::int8 AS i8min,
	12.345::numeric(10,3) AS num, 'NaN'::numeric AS num_nan, 1e40::numeric AS num_big,
	1.5::float4 AS f4, 'NaN'::float4 AS f4_nan, '-Infinity'::float4 AS f4_ninf,
	0.1::float8 AS f8, 'NaN'::float8 AS f8_nan, 'Infinity'::float8 AS f8_inf,
	'txt'::text AS t, ''::text AS t_empty, 'vc'::varchar(10) AS vc, 'c'::char(5) AS ch,
	true AS b_true, false AS b_false,
	'\xdeadbeef'::bytea AS ba, ''::bytea AS ba_empty,
	'2024-03-10 02:30:00.123456'::timestamp AS ts, '2024-03-10 02:30:00+00'::timestamptz AS tstz,
	'infinity'::timestamptz AS tstz_inf, '1999-12-31'::date AS d, '-infinity'::date AS d_ninf,
	'12:34:56.789'::time AS tm, '12:34:56+05:30'::timetz AS tmtz,
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
	'{"a": 1}'::json AS j, '{"b": [1, 2]}'::jsonb AS jb,
	ARRAY[1, NULL, 3]::int8[] AS i8arr, ARRAY['x', NULL, '']::text[] AS tarr, '{}'::int4[] AS empty_arr,
	'happy'::cachedsql_test_mood AS mood, '192.168.1.1/24'::inet AS ip, '1 day 02:03:04'::interval AS iv,
	'0/16B3748'::pg_lsn AS lsn, 12::oid AS o, '<x/>'::xml AS x, B'101'::varbit AS vb,
	NULL::int4 AS n_i4, NULL::text AS n_t, NULL::timestamptz AS n_tstz, NULL::bytea AS n_ba,
	NULL::int8[] AS n_arr, $1::text AS param, $2::int8 AS param2`

// pgFixture creates the enum and a table the tests read, once per database.
func pgFixture(t *testing.T, dsn string) {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`DO $$ BEGIN CREATE TYPE cachedsql_test_mood AS ENUM ('sad', 'happy');
		 EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
		`CREATE TABLE IF NOT EXISTS cachedsql_test_result (
			id bigint PRIMARY KEY, name varchar(40) NOT NULL, price numeric(8,2),
			tags text[], mood cachedsql_test_mood, created timestamptz)`,
		`INSERT INTO cachedsql_test_result VALUES
			(1, 'one', 9.99, '{a,NULL}', 'sad', '2020-02-29 23:59:59.999999+00'),
			(2, 'two', NULL, NULL, NULL, NULL)
		 ON CONFLICT (id) DO NOTHING`,
	} {
		if _, err := db.Exec(q); err != nil {
			// A concurrent test run may race us to create them.
			if !strings.Contains(err.Error(), "already exists") && !strings.Contains(err.Error(), "duplicate key") {
				t.Fatal(err)
			}
		}
	}
}

// pgDBs opens the database directly through pgx's stdlib and through the
// replaying wrapper, with the same connection options.
func pgDBs(t *testing.T, dsn string, registerEnum bool) (direct, replayed *sql.DB) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	opts := []stdlib.OptionOpenDB{}
	if registerEnum {
		opts = append(opts, stdlib.OptionAfterConnect(func(ctx context.Context, c *pgx.Conn) error {
			dt, err := c.LoadType(ctx, "cachedsql_test_mood")
			if err != nil {
				return err
			}
			c.TypeMap().RegisterType(dt)
			return nil
		}))
	}
	direct = sql.OpenDB(stdlib.GetConnector(*cfg, opts...))
	replayed = sql.OpenDB(&replayConnector{inner: stdlib.GetConnector(*cfg, opts...)})
	t.Cleanup(func() { direct.Close(); replayed.Close() })
	return direct, replayed
}

// TestPgxReplayMatchesStdlib is G1 for PostgreSQL: pgx's own rows and a
// replay of the stored result look the same through database/sql.
// Run again in a subprocess with a non-UTC time.Local: swapping time.Local
// in this process would race with pgx's and database/sql's goroutines,
// while TZ in a fresh process sets it before anything reads it.
func TestPgxReplayMatchesStdlib(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	pgFixture(t, dsn)
	t.Logf("time.Local is %v", time.Local)
	for _, register := range []bool{false, true} {
		direct, replayed := pgDBs(t, dsn, register)
		for _, q := range []struct {
			name  string
			query string
			args  []any
		}{
			{"types", pgTypesQuery, []any{"p", int64(7)}},
			{"types null params", pgTypesQuery, []any{nil, nil}},
			{"table row", `SELECT * FROM cachedsql_test_result WHERE id = $1`, []any{1}},
			{"table nulls", `SELECT * FROM cachedsql_test_result WHERE id = $1`, []any{int64(2)}},
			{"no row", `SELECT id, name FROM cachedsql_test_result WHERE id = $1`, []any{-1}},
			{"two rows", `SELECT id, name, tags FROM cachedsql_test_result ORDER BY id`, nil},
			{"no columns", `SELECT FROM cachedsql_test_result WHERE id = 1`, nil},
		} {
			what := fmt.Sprintf("%s (enum registered: %v)", q.name, register)
			compareSnapshots(t, what, snapshotRows(t, direct, q.query, q.args...), snapshotRows(t, replayed, q.query, q.args...))
		}
		// Errors map the same way.
		_, errD := direct.Query(`SELECT 1/0`)
		_, errR := replayed.Query(`SELECT 1/0`)
		if errD == nil || errR == nil || errD.Error() != errR.Error() {
			t.Errorf("division by zero: direct %v; replayed %v", errD, errR)
		}
	}

	if os.Getenv("CACHEDSQL_TEST_SUBPROCESS") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPgxReplayMatchesStdlib$", "-test.v")
		cmd.Env = append(os.Environ(), "TZ=Asia/Kathmandu", "CACHEDSQL_TEST_SUBPROCESS=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "time.Local is Asia/Kathmandu") {
			t.Errorf("with TZ=Asia/Kathmandu: %v\n%s", err, out)
		}
	}
}

// TestReplayCopiesPerCaller: a caller writing into its RawBytes or []byte
// must not change what the next caller sees.
func TestReplayCopiesPerCaller(t *testing.T) {
	for _, r := range []*result{testPgxResult(), testGenericResult()} {
		for range 2 {
			rows := r.replay(pgtype.NewMap())
			dest := make([]driver.Value, len(rows.Columns()))
			for rows.Next(dest) == nil {
				for _, v := range dest {
					if b, ok := v.([]byte); ok {
						for i := range b {
							b[i] = 'X'
						}
					}
				}
			}
			rows.Columns()[0] = "changed"
		}
		if r.codec == codecPgx {
			if r.raw[0][1].s != "Ada Lovelace" || r.fields[0].Name != "id" {
				t.Error("a caller changed the stored pgx result")
			}
			continue
		}
		if string(r.values[0][6].([]byte)) != "bytes" || r.columns[0] != "n" {
			t.Error("a caller changed the stored generic result")
		}
	}
}

// TestPgxRowsInterfaces: the replay implements what stdlib.Rows implements.
func TestPgxRowsInterfaces(t *testing.T) {
	stdlibRows := reflect.TypeFor[*stdlib.Rows]()
	replayRows := reflect.TypeOf(testPgxResult().replay(pgtype.NewMap()))
	for _, it := range []reflect.Type{
		reflect.TypeFor[driver.RowsColumnTypeScanType](),
		reflect.TypeFor[driver.RowsColumnTypeDatabaseTypeName](),
		reflect.TypeFor[driver.RowsColumnTypeLength](),
		reflect.TypeFor[driver.RowsColumnTypeNullable](),
		reflect.TypeFor[driver.RowsColumnTypePrecisionScale](),
		reflect.TypeFor[driver.RowsNextResultSet](),
		reflect.TypeFor[interface{ NextRow() error }](),
	} {
		if stdlibRows.Implements(it) != replayRows.Implements(it) {
			t.Errorf("%v: stdlib.Rows %v, replay %v", it, stdlibRows.Implements(it), replayRows.Implements(it))
		}
	}
}

// TestVerbatimStringPlans: value returns a stored string as it is only
// where pgx's own plan would return string(src), and does so for the
// text-like types a hit mostly reads.
func TestVerbatimStringPlans(t *testing.T) {
	srcs := [][]byte{[]byte("abc"), []byte("caf\u00e9 \x00\xff"), {}}
	for _, c := range []struct {
		oid          uint32
		format       int16
		wantVerbatim bool
	}{
		{pgtype.TextOID, pgtype.BinaryFormatCode, true},
		{pgtype.VarcharOID, pgtype.BinaryFormatCode, true},
		{pgtype.BPCharOID, pgtype.BinaryFormatCode, true},
		{pgtype.NameOID, pgtype.BinaryFormatCode, true},
		{pgtype.TextOID, pgtype.TextFormatCode, true},
		{pgtype.NumericOID, pgtype.TextFormatCode, true},
		{pgtype.NumericOID, pgtype.BinaryFormatCode, false},
		{pgtype.UUIDOID, pgtype.BinaryFormatCode, false},
		{pgtype.IntervalOID, pgtype.BinaryFormatCode, false},
		{999999, pgtype.BinaryFormatCode, true}, // unknown to the map: TextCodec
	} {
		r := &pgxRows{m: pgtype.NewMap()}
		r.plans = r.planBuf[:1]
		fd := &pgconn.FieldDescription{DataTypeOID: c.oid, Format: c.format}
		p := r.plan(0, fd, new(string))
		if got := r.plans[0].verbatim; got != c.wantVerbatim {
			t.Errorf("oid %d format %d: verbatim %v; want %v", c.oid, c.format, got, c.wantVerbatim)
		}
		if !r.plans[0].verbatim {
			continue
		}
		for _, src := range srcs {
			var s string
			if err := p.Scan(src, &s); err != nil || s != string(src) {
				t.Errorf("oid %d format %d: pgx's plan gives %q, %v for %q; verbatim needs string(src)", c.oid, c.format, s, err, src)
			}
			r.res = &result{fields: []pgconn.FieldDescription{*fd}}
			v, err := r.value(0, src)
			if err != nil || v != string(src) {
				t.Errorf("oid %d format %d: value gives %q, %v; want %q", c.oid, c.format, v, err, src)
			}
			if len(src) > 0 && unsafe.StringData(v.(string)) != unsafe.SliceData(src) {
				t.Errorf("oid %d format %d: value copied the stored string", c.oid, c.format)
			}
		}
	}
}
