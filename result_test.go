package cachedsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/jackc/pgx/v5"

	"github.com/cachedsql/cachedsql/internal/testenv"

	_ "modernc.org/sqlite" // registers "sqlite"
)

// testDSNConnector opens a registered driver's connections by name.
type testDSNConnector struct {
	drv driver.Driver
	dsn string
}

func (c testDSNConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c testDSNConnector) Driver() driver.Driver                        { return c.drv }

func TestGenericReplayMatchesSQLite(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "test.db")
	direct, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	replayed := sql.OpenDB(&replayConnector{inner: testDSNConnector{direct.Driver(), dsn}})
	defer replayed.Close()
	for _, q := range []string{
		`CREATE TABLE t (id INTEGER PRIMARY KEY, r REAL, s TEXT, b BLOB, ok BOOLEAN, at DATETIME,
			n NUMERIC, vc VARCHAR(10), d DATE, ts TIMESTAMP)`,
		`INSERT INTO t VALUES (1, 2.5, 'text', x'00ff', 1, '2024-03-10 02:30:00', 12.5, 'v', '2024-03-10', '2024-03-10T02:30:00.123Z')`,
		`INSERT INTO t VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		`INSERT INTO t VALUES (3, -0.0, '', x'', 0, 'not a time', 'abc', '', 'x', 0)`,
	} {
		if _, err := direct.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []struct {
		query string
		args  []any
	}{
		{`SELECT * FROM t WHERE id = ?`, []any{1}},
		{`SELECT * FROM t WHERE id = ?`, []any{2}},
		{`SELECT * FROM t WHERE id = ?`, []any{3}},
		{`SELECT * FROM t WHERE id = ?`, []any{4}},
		{`SELECT id, s FROM t ORDER BY id`, nil},
		{`SELECT 1, 1.5, 'x', x'01', NULL, ?, ?, ?`, []any{"p", int64(-1), []byte("b")}},
	} {
		compareSnapshots(t, q.query, snapshotRows(t, direct, q.query, q.args...), snapshotRows(t, replayed, q.query, q.args...))
	}
}

func TestGenericReplayMatchesSQLMock(t *testing.T) {
	db, mock, err := sqlmock.NewWithDSN("cachedsql_result_test", sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	replayed := sql.OpenDB(&replayConnector{inner: testDSNConnector{db.Driver(), "cachedsql_result_test"}})
	defer replayed.Close()

	at := time.Date(2024, 3, 10, 2, 30, 0, 5, time.UTC)
	local := time.Date(2024, 3, 10, 2, 30, 0, 5, time.Local)
	mkRows := func() *sqlmock.Rows {
		return mock.NewRowsWithColumnDefinition(
			mock.NewColumn("id").OfType("BIGINT", int64(0)).Nullable(false),
			mock.NewColumn("name").OfType("VARCHAR", "").WithLength(40).Nullable(true),
			mock.NewColumn("price").OfType("DECIMAL", float64(0)).WithPrecisionAndScale(10, 2),
			mock.NewColumn("ok").OfType("BOOL", false),
			mock.NewColumn("data").OfType("BLOB", []byte(nil)),
			mock.NewColumn("at").OfType("TIMESTAMP", time.Time{}),
			mock.NewColumn("local").OfType("TIMESTAMP", time.Time{}),
			mock.NewColumn("nothing").OfType("NULL", nil),
			mock.NewColumn("str"),
		).AddRow(int64(7), "seven", 7.25, true, []byte("data"), at, local, nil, "s").
			AddRow(int64(8), "", -1.0, false, []byte{}, time.Time{}, local, nil, []byte(nil))
	}
	const q = "SELECT * FROM items WHERE id = 7"
	for range 2 {
		mock.ExpectQuery(q).WillReturnRows(mkRows())
		mock.ExpectQuery(q).WillReturnRows(mkRows())
		compareSnapshots(t, "sqlmock", snapshotRows(t, db, q), snapshotRows(t, replayed, q))
	}
	// Plain rows, without column definitions.
	mock.ExpectQuery(q).WillReturnRows(sqlmock.NewRows([]string{"a", "b"}).AddRow(int64(1), "x"))
	mock.ExpectQuery(q).WillReturnRows(sqlmock.NewRows([]string{"a", "b"}).AddRow(int64(1), "x"))
	compareSnapshots(t, "sqlmock plain", snapshotRows(t, db, q), snapshotRows(t, replayed, q))
}

// valueRows is a minimal driver.Rows over fixed values, with no optional
// interfaces.
type valueRows struct {
	cols   []string
	rows   [][]driver.Value
	next   int
	closed bool
}

func (r *valueRows) Columns() []string { return r.cols }
func (r *valueRows) Close() error      { r.closed = true; return nil }
func (r *valueRows) Next(dest []driver.Value) error {
	if r.next >= len(r.rows) {
		return io.EOF
	}
	copy(dest, r.rows[r.next])
	r.next++
	return nil
}

type scanTypeRows struct {
	*valueRows
	t reflect.Type
}

func (r scanTypeRows) ColumnTypeScanType(int) reflect.Type { return r.t }

type myInt int64

func TestGenericNotCacheable(t *testing.T) {
	for name, rows := range map[string]driver.Rows{
		"int32 value":      &valueRows{cols: []string{"a"}, rows: [][]driver.Value{{int32(1)}}},
		"named int64":      &valueRows{cols: []string{"a"}, rows: [][]driver.Value{{myInt(1)}}},
		"fixed zone":       &valueRows{cols: []string{"a"}, rows: [][]driver.Value{{time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("X", 3600))}}},
		"unknown scantype": scanTypeRows{&valueRows{cols: []string{"a"}, rows: [][]driver.Value{{int64(1)}}}, reflect.TypeFor[myInt]()},
	} {
		r, err := materializeRows(rows)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ok, why := r.cacheable()
		if ok {
			t.Errorf("%s: cacheable", name)
			continue
		}
		if _, err := (&entry{}).with("s", r).encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
		// Still replayable, exactly, to the caller that read it.
		got := replayAll(t, r)
		if !reflect.DeepEqual(got, rows.(interface{ all() [][]driver.Value }).all()) {
			t.Errorf("%s: replayed %#v (%s)", name, got, why)
		}
	}
}

func (r *valueRows) all() [][]driver.Value   { return r.rows }
func (r scanTypeRows) all() [][]driver.Value { return r.rows }

func TestMaterializeRowsClosesAndCounts(t *testing.T) {
	rows := &valueRows{cols: []string{"a", "b"}, rows: [][]driver.Value{{int64(1), "x"}, {nil, []byte("y")}}}
	r, err := materializeRows(rows)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.closed || r.rowCount() != 2 {
		t.Errorf("closed %v, rowCount %d; want true, 2", rows.closed, r.rowCount())
	}
	if ok, why := r.cacheable(); !ok || r.size() == 0 {
		t.Errorf("cacheable %v (%s), size %d", ok, why, r.size())
	}
	// The driver may reuse its []byte: the result must have its own.
	rows.rows[1][1].([]byte)[0] = 'Z'
	if got := string(r.values[1][1].([]byte)); got != "y" {
		t.Errorf("result aliases the driver's []byte: %q", got)
	}
}

func TestMaterializePgx(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	r, err := materializePgx(ctx, pc, `SELECT x, 'v' || x AS s FROM generate_series(1, $1::int) x`, []driver.NamedValue{{Ordinal: 1, Value: int64(3)}})
	if err != nil {
		t.Fatal(err)
	}
	if r.rowCount() != 3 || len(r.fields) != 2 || r.fields[0].Format != 1 || r.fields[1].Format != 0 {
		t.Errorf("rowCount %d, fields %+v", r.rowCount(), r.fields)
	}
	if ok, _ := r.cacheable(); !ok || r.size() == 0 {
		t.Error("not cacheable")
	}
	if _, err := materializePgx(ctx, pc, `SELECT nonsense`, nil); err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Errorf("bad query: err = %v", err)
	}
	// The connection stays usable after an error, and a closed one is bad.
	if _, err := materializePgx(ctx, pc, `SELECT 1`, nil); err != nil {
		t.Error(err)
	}
	pc.Close(ctx)
	if _, err := materializePgx(ctx, pc, `SELECT 1`, nil); !errors.Is(err, driver.ErrBadConn) {
		t.Errorf("closed connection: err = %v; want driver.ErrBadConn", err)
	}
}

// TestReplayValuesAreCallers: a replay hands pgx's scan plans the stored
// row's own bytes; every value a caller gets must be its own, so writing
// into it (as a caller may into []byte and sql.RawBytes) changes nothing
// the next replay sees.
func TestReplayValuesAreCallers(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	r, err := materializePgx(ctx, pc, `SELECT 'text'::text, 'vc'::varchar, ''::text, '\x0102'::bytea, ''::bytea,
		'{"a": 1}'::json, '{"b": 2}'::jsonb, '<x/>'::xml, 4200::int8, 1.5::numeric,
		'00000000-0000-0000-0000-000000000001'::uuid, 'ab'::char(3), NULL::bytea, NULL::text`, nil)
	if err != nil {
		t.Fatal(err)
	}
	read := func(scribble bool) []driver.Value {
		rows := r.replay(pc.TypeMap())
		defer rows.Close()
		dest := make([]driver.Value, len(rows.Columns()))
		if err := rows.Next(dest); err != nil {
			t.Fatal(err)
		}
		if !scribble {
			return dest
		}
		for _, v := range dest {
			if b, ok := v.([]byte); ok {
				for i := range b {
					b[i] = 'X'
				}
			}
		}
		return nil
	}
	want := read(false)
	read(true)
	got := read(false)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after a caller wrote into its values, a replay gives\n%q\nwant\n%q", got, want)
	}
	if b, ok := want[3].([]byte); !ok || string(b) != "\x01\x02" {
		t.Errorf("bytea value %#v; want []byte{1, 2}", want[3])
	}
}
