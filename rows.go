package cachedsql

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// replay returns fresh rows over r for one caller, on a hit and on the miss
// that filled it alike. Each caller gets its own copy of every value:
// database/sql hands RawBytes and []byte destinations out to be written.
//
// m must be the reading connection's type map for a pgx result (its
// registered types and the reading process's time.Local are what pgx's own
// rows would use); with nil, a pgx result decodes with pgx's default map.
func (r *result) replay(m *pgtype.Map) driver.Rows {
	return r.replayReusing(m, nil)
}

// replayReusing is replay, reusing *spare for a pgx result when it is
// closed (and leaving there the rows it returns): a connection's replays
// then share one pgxRows, and the scan plans it built, instead of
// allocating both per hit.
func (r *result) replayReusing(m *pgtype.Map, spare **pgxRows) driver.Rows {
	if r.codec == codecPgx {
		if m == nil {
			m = pgtype.NewMap()
		}
		if spare == nil {
			return &pgxRows{res: r, m: m, open: true}
		}
		if *spare == nil || (*spare).open {
			*spare = &pgxRows{}
		}
		(*spare).reset(r, m)
		return *spare
	}
	g := &genericRows{res: r}
	if r.ifaces&hasColumnScanner != 0 {
		return withColumnScanner(g)
	}
	return g
}

// pgxRows presents a pgx-codec result exactly as *stdlib.Rows does, and
// implements exactly its interfaces (not ColumnTypeNullable).
//
// Its methods follow github.com/jackc/pgx/v5/stdlib/sql.go, v5.12.0,
// Copyright (c) 2013-2021 Jack Christensen, MIT License.
type pgxRows struct {
	res     *result
	m       *pgtype.Map
	open    bool         // until Close: a spare in use is not reused
	next    int          // index of the next row in res.raw
	cur     [][]byte     // the current row, this caller's copy; nil at EOF
	plans   []columnPlan // per column, planned on first use (value)
	planBuf [8]columnPlan
	scratch pgxScratch
	curBuf  [8][]byte // cur's backing array for up to 8 columns

	columnNames []string
}

// advance points r.cur at the next row, or reports false at the end.
// The row's bytes are the result's own, not a copy: value only hands them
// to pgx's scan plans, which read src and copy what they keep ([]byte
// targets get fresh slices), or returns them as the immutable string they
// are, so no caller can write them (TestReplayValuesAreCallers pins it).
func (r *pgxRows) advance() bool {
	if r.next >= len(r.res.raw) {
		r.cur = nil
		return false
	}
	row := r.res.raw[r.next]
	r.next++
	var cur [][]byte
	if len(row) <= len(r.curBuf) {
		cur = r.curBuf[:len(row)] // reused row to row
	} else {
		cur = make([][]byte, len(row))
	}
	for i, v := range row {
		switch {
		case !v.ok:
			cur[i] = nil
		case v.s == "":
			cur[i] = []byte{} // a non-NULL empty value
		default:
			cur[i] = unsafe.Slice(unsafe.StringData(v.s), len(v.s))
		}
	}
	r.cur = cur
	return true
}

func (r *pgxRows) Columns() []string {
	if r.columnNames == nil {
		// Always a slice of its own, even when r is a connection's reused
		// spare: database/sql hands it to the caller, who may keep it.
		r.columnNames = make([]string, len(r.res.fields))
		for i, fd := range r.res.fields {
			r.columnNames[i] = fd.Name
		}
	}
	return r.columnNames
}

// ColumnTypeDatabaseTypeName returns the database system type name. If the
// name is unknown the OID is returned.
func (r *pgxRows) ColumnTypeDatabaseTypeName(index int) string {
	if dt, ok := r.m.TypeForOID(r.res.fields[index].DataTypeOID); ok {
		return strings.ToUpper(dt.Name)
	}
	return strconv.FormatInt(int64(r.res.fields[index].DataTypeOID), 10)
}

const varHeaderSize = 4

func (r *pgxRows) ColumnTypeLength(index int) (int64, bool) {
	fd := r.res.fields[index]
	switch fd.DataTypeOID {
	case pgtype.TextOID, pgtype.ByteaOID:
		return math.MaxInt64, true
	case pgtype.VarcharOID, pgtype.BPCharOID:
		return int64(fd.TypeModifier - varHeaderSize), true
	case pgtype.VarbitOID:
		return int64(fd.TypeModifier), true
	default:
		return 0, false
	}
}

func (r *pgxRows) ColumnTypePrecisionScale(index int) (precision, scale int64, ok bool) {
	fd := r.res.fields[index]
	switch fd.DataTypeOID {
	case pgtype.NumericOID:
		mod := fd.TypeModifier - varHeaderSize
		precision = int64((mod >> 16) & 0xffff)
		scale = int64(mod & 0xffff)
		return precision, scale, true
	default:
		return 0, 0, false
	}
}

func (r *pgxRows) ColumnTypeScanType(index int) reflect.Type {
	switch r.res.fields[index].DataTypeOID {
	case pgtype.Float8OID:
		return reflect.TypeFor[float64]()
	case pgtype.Float4OID:
		return reflect.TypeFor[float32]()
	case pgtype.Int8OID:
		return reflect.TypeFor[int64]()
	case pgtype.Int4OID:
		return reflect.TypeFor[int32]()
	case pgtype.Int2OID:
		return reflect.TypeFor[int16]()
	case pgtype.BoolOID:
		return reflect.TypeFor[bool]()
	case pgtype.NumericOID:
		return reflect.TypeFor[float64]()
	case pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID:
		return reflect.TypeFor[time.Time]()
	case pgtype.ByteaOID:
		return reflect.TypeFor[[]byte]()
	default:
		return reflect.TypeFor[string]()
	}
}

func (r *pgxRows) Close() error {
	r.next, r.cur, r.open = len(r.res.raw), nil, false
	return nil
}

// reset readies r, closed, to replay res with m. Its scan plans are kept
// when they were planned for the same map and the same column types and
// formats: they depend on nothing else.
func (r *pgxRows) reset(res *result, m *pgtype.Map) {
	samePlans := r.res != nil && r.m == m && sameColumnTypes(r.res.fields, res.fields)
	r.res, r.m, r.open, r.next, r.cur, r.columnNames = res, m, true, 0, nil, nil
	if !samePlans {
		clear(r.planBuf[:])
		r.plans = nil
	}
}

func sameColumnTypes(a, b []pgconn.FieldDescription) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].DataTypeOID != b[i].DataTypeOID || a[i].Format != b[i].Format {
			return false
		}
	}
	return true
}

func (r *pgxRows) Next(dest []driver.Value) error {
	if !r.advance() {
		return io.EOF
	}
	if len(dest) < len(r.cur) {
		return errors.New("cachedsql: Next called with too few destinations")
	}
	for i, rv := range r.cur {
		if rv != nil {
			var err error
			dest[i], err = r.value(i, rv)
			if err != nil {
				return fmt.Errorf("convert field %d failed: %w", i, err)
			}
		} else {
			dest[i] = nil
		}
	}
	return nil
}

// value converts column i's wire value src to its database/sql
// representation, exactly as stdlib.Rows' value funcs do. The scan plan of
// each column is built on first use and kept for later rows; the scan
// targets live in r.scratch, so a replay allocates no per-column closures.
// r belongs to one caller: nothing here is shared between goroutines.
func (r *pgxRows) value(i int, src []byte) (driver.Value, error) {
	fd := &r.res.fields[i]
	if r.plans == nil {
		if len(r.res.fields) <= len(r.planBuf) {
			r.plans = r.planBuf[:len(r.res.fields)]
		} else {
			r.plans = make([]columnPlan, len(r.res.fields))
		}
	}
	sc := &r.scratch
	switch fd.DataTypeOID {
	case pgtype.BoolOID:
		sc.b = false
		err := r.plan(i, fd, &sc.b).Scan(src, &sc.b)
		return sc.b, err
	case pgtype.ByteaOID:
		sc.bytes = nil
		err := r.plan(i, fd, &sc.bytes).Scan(src, &sc.bytes)
		return sc.bytes, err
	case pgtype.CIDOID, pgtype.OIDOID, pgtype.XIDOID:
		sc.u32 = pgtype.Uint32{}
		if err := r.plan(i, fd, &sc.u32).Scan(src, &sc.u32); err != nil {
			return nil, err
		}
		return sc.u32.Value()
	case pgtype.DateOID:
		sc.date = pgtype.Date{}
		if err := r.plan(i, fd, &sc.date).Scan(src, &sc.date); err != nil {
			return nil, err
		}
		return sc.date.Value()
	case pgtype.Float4OID:
		sc.f4 = 0
		err := r.plan(i, fd, &sc.f4).Scan(src, &sc.f4)
		return float64(sc.f4), err
	case pgtype.Float8OID:
		sc.f8 = 0
		err := r.plan(i, fd, &sc.f8).Scan(src, &sc.f8)
		return sc.f8, err
	case pgtype.Int2OID:
		sc.i2 = 0
		err := r.plan(i, fd, &sc.i2).Scan(src, &sc.i2)
		return int64(sc.i2), err
	case pgtype.Int4OID:
		sc.i4 = 0
		err := r.plan(i, fd, &sc.i4).Scan(src, &sc.i4)
		return int64(sc.i4), err
	case pgtype.Int8OID:
		sc.i8 = 0
		err := r.plan(i, fd, &sc.i8).Scan(src, &sc.i8)
		return sc.i8, err
	case pgtype.JSONOID, pgtype.JSONBOID, pgtype.XMLOID:
		sc.bytes = nil
		if err := r.plan(i, fd, &sc.bytes).Scan(src, &sc.bytes); err != nil {
			return nil, err
		}
		return sc.bytes, nil
	case pgtype.TimestampOID:
		sc.ts = pgtype.Timestamp{}
		if err := r.plan(i, fd, &sc.ts).Scan(src, &sc.ts); err != nil {
			return nil, err
		}
		return sc.ts.Value()
	case pgtype.TimestamptzOID:
		sc.tstz = pgtype.Timestamptz{}
		if err := r.plan(i, fd, &sc.tstz).Scan(src, &sc.tstz); err != nil {
			return nil, err
		}
		return sc.tstz.Value()
	default:
		p := r.plan(i, fd, &sc.s)
		if r.plans[i].verbatim {
			// src is the result's immutable string (see advance), and the
			// plan would return a copy of it: return the string itself.
			return unsafe.String(unsafe.SliceData(src), len(src)), nil
		}
		sc.s = ""
		err := p.Scan(src, &sc.s)
		return sc.s, err
	}
}

// columnPlan is one column's scan plan and what value may skip of it.
type columnPlan struct {
	scan pgtype.ScanPlan
	// verbatim: scan is one of pgx's plans that set a *string to
	// string(src), so value may return src's string as it is.
	verbatim bool
}

// verbatimStringPlans are the types of pgx's scan plans that set a
// *string to string(src) and nothing else: the text format's, and
// TextCodec's for text, varchar, bpchar and name in binary
// (TestVerbatimStringPlans pins their behaviour).
var verbatimStringPlans = [2]reflect.Type{
	reflect.TypeOf(pgtype.NewMap().PlanScan(pgtype.TextOID, pgtype.TextFormatCode, new(string))),
	reflect.TypeOf(pgtype.TextCodec{}.PlanScan(nil, pgtype.TextOID, pgtype.BinaryFormatCode, new(string))),
}

// plan returns column i's scan plan for target, planning it on first use.
// target's type is fixed per column (value picks it from the type OID).
func (r *pgxRows) plan(i int, fd *pgconn.FieldDescription, target any) pgtype.ScanPlan {
	if p := r.plans[i].scan; p != nil {
		return p
	}
	p := r.m.PlanScan(fd.DataTypeOID, fd.Format, target)
	_, isString := target.(*string)
	t := reflect.TypeOf(p)
	r.plans[i] = columnPlan{scan: p, verbatim: isString && (t == verbatimStringPlans[0] || t == verbatimStringPlans[1])}
	return p
}

// pgxScratch holds one scan target per Go type value uses. Each target is
// reset before every scan, so no value can carry over from another column.
type pgxScratch struct {
	b     bool
	bytes []byte
	u32   pgtype.Uint32
	date  pgtype.Date
	f4    float32
	f8    float64
	i2    int16
	i4    int32
	i8    int64
	ts    pgtype.Timestamp
	tstz  pgtype.Timestamptz
	s     string
}

// genericRows replays a generic-codec result with the answers the wrapped
// driver's rows gave. It always implements the column-type interfaces:
// what it recorded for an absent one is database/sql's own default, so
// ColumnTypes are the same either way.
type genericRows struct {
	res     *result
	next    int            // index of the next row in res.values
	cur     []driver.Value // the current row, this caller's copy
	columns []string
}

// advance copies the next row into g.cur, or reports false at the end.
func (g *genericRows) advance() bool {
	if g.next >= len(g.res.values) {
		g.cur = nil
		return false
	}
	row := g.res.values[g.next]
	g.next++
	cur := make([]driver.Value, len(row))
	for i, v := range row {
		switch v := v.(type) {
		case []byte:
			if v != nil {
				cur[i] = append(make([]byte, 0, len(v)), v...)
			} else {
				cur[i] = v
			}
		case bytesValue:
			cur[i] = []byte(v)
		default:
			cur[i] = v
		}
	}
	g.cur = cur
	return true
}

// Columns returns this caller's copy: database/sql passes the slice on.
func (g *genericRows) Columns() []string {
	if g.columns == nil {
		g.columns = append(make([]string, 0, len(g.res.columns)), g.res.columns...)
	}
	return g.columns
}

func (g *genericRows) Close() error {
	g.next, g.cur = len(g.res.values), nil
	return nil
}

func (g *genericRows) Next(dest []driver.Value) error {
	if !g.advance() {
		return io.EOF
	}
	copy(dest, g.cur)
	return nil
}

func (g *genericRows) ColumnTypeScanType(i int) reflect.Type {
	return g.res.meta[i].scanType
}

func (g *genericRows) ColumnTypeDatabaseTypeName(i int) string {
	return g.res.meta[i].databaseTypeName
}

func (g *genericRows) ColumnTypeLength(i int) (int64, bool) {
	return g.res.meta[i].length, g.res.meta[i].lengthOK
}

func (g *genericRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	return g.res.meta[i].nullable, g.res.meta[i].nullableOK
}

func (g *genericRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	m := &g.res.meta[i]
	return m.precision, m.scale, m.precisionScaleOK
}

var (
	_ driver.RowsColumnTypeDatabaseTypeName = (*pgxRows)(nil)
	_ driver.RowsColumnTypeLength           = (*pgxRows)(nil)
	_ driver.RowsColumnTypePrecisionScale   = (*pgxRows)(nil)
	_ driver.RowsColumnTypeScanType         = (*pgxRows)(nil)

	_ driver.RowsColumnTypeDatabaseTypeName = (*genericRows)(nil)
	_ driver.RowsColumnTypeLength           = (*genericRows)(nil)
	_ driver.RowsColumnTypeNullable         = (*genericRows)(nil)
	_ driver.RowsColumnTypePrecisionScale   = (*genericRows)(nil)
	_ driver.RowsColumnTypeScanType         = (*genericRows)(nil)
)
