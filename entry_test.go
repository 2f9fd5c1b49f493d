package cachedsql

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// testPgxResult is a typical 8-column row as the pgx codec records it.
func testPgxResult() *result {
	r := &result{codec: codecPgx}
	oids := []uint32{pgtype.Int8OID, pgtype.TextOID, pgtype.VarcharOID, pgtype.BoolOID,
		pgtype.TimestamptzOID, pgtype.NumericOID, pgtype.ByteaOID, pgtype.Int4OID}
	names := []string{"id", "name", "email", "active", "created_at", "balance", "avatar", "age"}
	for i, oid := range oids {
		r.fields = append(r.fields, pgconn.FieldDescription{
			Name: names[i], TableOID: 16384, TableAttributeNumber: uint16(i + 1),
			DataTypeOID: oid, DataTypeSize: -1, TypeModifier: -1, Format: databaseSQLResultFormats[oid],
		})
	}
	be := binary.BigEndian
	r.raw = [][]rawValue{{
		{s: string(be.AppendUint64(nil, 42)), ok: true},
		{s: "Ada Lovelace", ok: true},
		{s: "ada@example.com", ok: true},
		{s: "\x01", ok: true},
		{s: string(be.AppendUint64(nil, 789_000_000_000_000)), ok: true},
		{s: "1234.56", ok: true},
		{}, // NULL
		{s: string(be.AppendUint32(nil, 36)), ok: true},
	}}
	return r.finish()
}

// testGenericResult holds one of every value the generic codec stores.
func testGenericResult() *result {
	r := &result{codec: codecGeneric, ifaces: hasScanType | hasDatabaseTypeName | hasNullable}
	r.columns = []string{"n", "i", "f", "b0", "b1", "s", "bs", "nb", "eb", "tu", "tl", "nan"}
	r.meta = make([]columnMeta, len(r.columns))
	for i := range r.meta {
		r.meta[i] = columnMeta{scanType: scanTypes[i%len(scanTypes)], databaseTypeName: "T" + r.columns[i],
			nullable: i%2 == 0, nullableOK: true, length: int64(i), lengthOK: i%3 == 0}
	}
	r.values = [][]driver.Value{{
		nil, int64(-7), 3.25, false, true, "str", []byte("bytes"), []byte(nil), []byte{},
		time.Date(2024, 3, 10, 2, 30, 0, 123456789, time.UTC),
		time.Date(1969, 7, 20, 20, 17, 0, 1, time.Local), math.NaN(),
	}, make([]driver.Value, 12)}
	return r.finish()
}

func TestEntryRoundTrip(t *testing.T) {
	pr, gr := testPgxResult(), testGenericResult()
	e := (&entry{gen: "gen-1"}).with("shape-a", pr).with("shape-b", gr)
	b, err := e.encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := decodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.gen != "gen-1" || len(d.shapes) != 2 {
		t.Fatalf("decoded gen %q with %d shapes; want gen-1 with 2", d.gen, len(d.shapes))
	}
	got, ok := d.lookup("shape-a")
	if !ok || !reflect.DeepEqual(got.fields, pr.fields) || !reflect.DeepEqual(got.raw, pr.raw) || got.body != pr.body {
		t.Errorf("pgx result: got %+v; want %+v", got, pr)
	}
	got, ok = d.lookup("shape-b")
	if !ok {
		t.Fatal("shape-b missing")
	}
	if !reflect.DeepEqual(got.columns, gr.columns) || !reflect.DeepEqual(got.meta, gr.meta) || got.ifaces != gr.ifaces {
		t.Errorf("generic metadata: got %+v; want %+v", got, gr)
	}
	// Replayed values, not stored ones, are what callers see.
	want, have := replayAll(t, gr), replayAll(t, got)
	if !equalValues(want, have) {
		t.Errorf("generic rows:\n got %#v\nwant %#v", have, want)
	}
	if _, ok := d.lookup("shape-c"); ok {
		t.Error("lookup of an absent shape succeeded")
	}
	// Re-encoding a decoded entry gives the same bytes.
	b2, err := d.encode()
	if err != nil || !bytes.Equal(b, b2) {
		t.Errorf("re-encoding differs (err %v)", err)
	}
	// with replaces, and leaves the original alone.
	e3 := d.with("shape-a", gr)
	if r, _ := e3.lookup("shape-a"); r != gr || len(e3.shapes) != 2 {
		t.Error("with did not replace shape-a")
	}
	if r, _ := d.lookup("shape-a"); r == gr {
		t.Error("with changed the original entry")
	}
}

func replayAll(t testing.TB, r *result) [][]driver.Value {
	t.Helper()
	rows := r.replay(pgtype.NewMap())
	defer rows.Close()
	var all [][]driver.Value
	for {
		dest := make([]driver.Value, len(rows.Columns()))
		if err := rows.Next(dest); err != nil {
			return all
		}
		all = append(all, dest)
	}
}

// equalValues is reflect.DeepEqual, except that NaN equals NaN.
func equalValues(a, b any) bool {
	return reflect.DeepEqual(normNaN(reflect.ValueOf(a)), normNaN(reflect.ValueOf(b)))
}

func normNaN(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Float32, reflect.Float64:
		if math.IsNaN(v.Float()) {
			return "NaN"
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 && !v.IsNil() {
			out := make([]any, v.Len())
			for i := range out {
				out[i] = normNaN(v.Index(i))
			}
			return out
		}
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() && v.Type() != reflect.TypeFor[*time.Location]() {
			return []any{v.Type().String(), normNaN(v.Elem())}
		}
	case reflect.Struct:
		if v.Type() != reflect.TypeFor[time.Time]() || !v.CanInterface() {
			out := []any{v.Type().String()}
			for i := range v.NumField() {
				out = append(out, normNaN(v.Field(i)))
			}
			return out
		}
	}
	if v.CanInterface() {
		return v.Interface()
	}
	return fmt.Sprintf("%#v", v) // an unexported field: compare its printed value
}

func TestEntryRejects(t *testing.T) {
	b, err := (&entry{gen: "g"}).with("s", testPgxResult()).encode()
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x20
		if _, err := decodeEntry(c); err == nil {
			t.Errorf("byte %d corrupted: decoded without error", i)
		}
	}
	for n := range len(b) {
		if _, err := decodeEntry(b[:n]); err == nil {
			t.Errorf("truncated to %d bytes: decoded without error", n)
		}
	}
	c := bytes.Clone(b)
	c[len(entryMagic)] = entryVersion + 1
	if _, err := decodeEntry(c); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("wrong version: err = %v", err)
	}
	for _, foreign := range [][]byte{nil, []byte("1"), []byte("LEASE:abc"), []byte("12345678901234567890")} {
		if _, err := decodeEntry(foreign); err == nil {
			t.Errorf("foreign value %q decoded", foreign)
		}
	}
}

// resealed returns body behind a valid header, to reach the parser past
// the checksum.
func resealed(body []byte) []byte {
	b := append([]byte(entryMagic+"\x01\x00\x00\x00\x00"), body...)
	binary.LittleEndian.PutUint32(b[entryHeader-4:], crc32.Checksum(body, crcTable))
	return b
}

func TestEntryForgedLengths(t *testing.T) {
	huge := binary.AppendUvarint(nil, 1<<60)
	// oneShape wraps a result body in gen "", one shape with key "".
	oneShape := func(body ...[]byte) []byte {
		bb := bytes.Join(body, nil)
		return append(binary.AppendUvarint([]byte{0, 1, 0}, uint64(len(bb))), bb...)
	}
	pad := make([]byte, 18)
	for name, body := range map[string][]byte{
		"gen":          huge,
		"shapes":       append([]byte{0}, huge...),
		"key":          append([]byte{0, 1}, huge...),
		"body":         append([]byte{0, 1, 0}, huge...),
		"pgx cols":     oneShape([]byte{1}, huge, pad),
		"pgx rows":     oneShape([]byte{1, 0}, huge, pad),
		"pgx value":    oneShape([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0}, huge, pad),
		"generic cols": oneShape([]byte{2, 0}, huge, pad),
		"generic rows": oneShape([]byte{2, 0, 0}, huge, pad),
		"scan type":    oneShape([]byte{2, 0, 1, 0}, huge, pad),
		"varint":       oneShape([]byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
	} {
		in := resealed(body)
		if _, err := decodeEntry(in); err == nil {
			t.Errorf("%s: forged length decoded", name)
		}
		// TotalAlloc counts every goroutine's allocations, and other
		// tests' pools keep allocating in the background: the least of a
		// few runs is this decode's own cost.
		least := uint64(math.MaxUint64)
		for range 5 {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _ = decodeEntry(in)
			runtime.ReadMemStats(&after)
			least = min(least, after.TotalAlloc-before.TotalAlloc)
		}
		if least > 4096 {
			t.Errorf("%s: decoding a %d-byte forged entry allocated %d bytes", name, len(in), least)
		}
	}
}

func TestEntrySizeLimit(t *testing.T) {
	r := &result{codec: codecGeneric, columns: []string{"b"}, meta: []columnMeta{{scanType: reflect.TypeFor[[]byte]()}}}
	r.values = [][]driver.Value{{bytes.Repeat([]byte("x"), MaxValueSize)}}
	r.finish()
	if _, err := (&entry{gen: "g"}).with("s", r).encode(); !errors.Is(err, errEntryTooLarge) {
		t.Errorf("encode of an oversized entry: err = %v; want %v", err, errEntryTooLarge)
	}
	// Just under the limit fits.
	r.values = [][]driver.Value{{bytes.Repeat([]byte("x"), MaxValueSize-100)}}
	r.body = ""
	r.finish()
	b, err := (&entry{gen: "g"}).with("s", r).encode()
	if err != nil || len(b) > MaxValueSize {
		t.Errorf("encode near the limit: %d bytes, err %v", len(b), err)
	}
	if _, err := decodeEntry(append(b, make([]byte, MaxValueSize)...)); err == nil {
		t.Error("decoded an oversized value")
	}
}

func TestEntryRefusesUncacheable(t *testing.T) {
	r := &result{codec: codecGeneric, uncacheable: "test"}
	if _, err := (&entry{gen: "g"}).with("s", r).encode(); err == nil {
		t.Error("encoded a result that is not cacheable")
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, r := range []*result{testPgxResult(), testGenericResult(), (&result{codec: codecPgx}).finish()} {
		b, err := (&entry{gen: "g"}).with("s", r).with("t", r).encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b[entryHeader:], true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{0, 1, 0, 20, 2, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 3, 2}, true)
	f.Fuzz(func(t *testing.T, b []byte, reseal bool) {
		if reseal {
			// Most mutations fail the checksum; resealing reaches the parser.
			b = resealed(b)
		}
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes and replay.
		b2, err := e.encode()
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("re-encoded entry differs:\n%x\n%x", b, b2)
		}
		for _, s := range e.shapes {
			rows := s.res.replay(pgtype.NewMap())
			cols := rows.Columns()
			if ct, ok := rows.(driver.RowsColumnTypeScanType); ok {
				for i := range cols {
					ct.ColumnTypeScanType(i)
				}
			}
			dest := make([]driver.Value, len(cols))
			for rows.Next(dest) == nil {
			}
			rows.Close()
		}
	})
}

// BenchmarkEntryDecode decodes an entry holding one typical 8-column row.
func BenchmarkEntryDecode(b *testing.B) {
	v, err := (&entry{gen: "0123456789abcdef"}).with("shape-0123456789abcdef", testPgxResult()).encode()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		e, err := decodeEntry(v)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := e.lookup("shape-0123456789abcdef"); !ok {
			b.Fatal("shape missing")
		}
	}
}

// BenchmarkReplayScan is a hit after the GetMulti: decode, replay and scan
// the 8 columns through database/sql's conversions.
func BenchmarkReplayScan(b *testing.B) {
	v, err := (&entry{gen: "0123456789abcdef"}).with("shape", testPgxResult()).encode()
	if err != nil {
		b.Fatal(err)
	}
	db := sql.OpenDB(&staticConnector{v: v, m: pgtype.NewMap()})
	defer db.Close()
	var (
		id, age     int64
		name, email string
		active      bool
		created     time.Time
		balance     float64
		avatar      []byte
	)
	b.ReportAllocs()
	for b.Loop() {
		err := db.QueryRow("hit").Scan(&id, &name, &email, &active, &created, &balance, &avatar, &age)
		if err != nil {
			b.Fatal(err)
		}
	}
	if id != 42 || name != "Ada Lovelace" || age != 36 || !active || balance != 1234.56 || avatar != nil {
		b.Fatalf("scanned %v %v %v %v %v %v", id, name, age, active, balance, avatar)
	}
}

// staticConnector serves every query from one encoded entry, as a hit does.
type staticConnector struct {
	v []byte
	m *pgtype.Map
}

func (c *staticConnector) Connect(context.Context) (driver.Conn, error) { return staticConn{c}, nil }
func (c *staticConnector) Driver() driver.Driver                        { return nil }

type staticConn struct{ c *staticConnector }

func (staticConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not supported") }
func (staticConn) Close() error                        { return nil }
func (staticConn) Begin() (driver.Tx, error)           { return nil, errors.New("not supported") }

func (s staticConn) QueryContext(_ context.Context, _ string, _ []driver.NamedValue) (driver.Rows, error) {
	e, err := decodeEntry(s.c.v)
	if err != nil {
		return nil, err
	}
	r, ok := e.lookup("shape")
	if !ok {
		return nil, errors.New("shape missing")
	}
	return r.replay(s.c.m), nil
}
