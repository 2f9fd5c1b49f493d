package cachedsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// result is the materialized result of one query: what a fill stores and
// what every caller, on a hit or on the miss that filled it, gets replayed.
// It is immutable once built, so one result may be replayed by many
// goroutines at once.
type result struct {
	codec resultCodec

	// pgx codec: the row description and each row's wire values, decoded at
	// replay with the reading connection's type map, as pgx's stdlib does.
	fields []pgconn.FieldDescription
	raw    [][]rawValue // rows of columns

	// generic codec: the inner rows' column answers and driver.Values.
	columns []string
	meta    []columnMeta
	ifaces  rowsIfaces
	values  [][]driver.Value

	// uncacheable says why this result must not be stored; "" if it may.
	uncacheable string
	// body is the encoded result (see entry.go), set once when cacheable.
	body string
}

// rawValue is one value in pgx's wire format; ok is false for SQL NULL.
// Strings keep stored results immutable: every caller gets its own copy.
type rawValue struct {
	s  string
	ok bool
}

// bytesValue is a []byte driver.Value decoded from an entry, kept as a
// substring of it; replay hands each caller a fresh []byte.
type bytesValue string

type resultCodec uint8

const (
	codecPgx     resultCodec = 1
	codecGeneric resultCodec = 2
)

// rowsIfaces records which optional Rows interfaces the inner rows had.
type rowsIfaces uint8

const (
	hasScanType rowsIfaces = 1 << iota
	hasDatabaseTypeName
	hasLength
	hasNullable
	hasPrecisionScale
	hasColumnScanner // driver.RowsColumnScanner (Go 1.27)
	ifacesAll        = 1<<iota - 1
)

// columnMeta is what the inner rows answered for one column.
type columnMeta struct {
	scanType         reflect.Type
	databaseTypeName string
	length           int64
	lengthOK         bool
	nullable         bool
	nullableOK       bool
	precision, scale int64
	precisionScaleOK bool
}

// rowCount is the number of rows the query returned.
func (r *result) rowCount() int {
	if r.codec == codecPgx {
		return len(r.raw)
	}
	return len(r.values)
}

// cacheable reports whether the result may be stored, and why not.
func (r *result) cacheable() (bool, string) {
	return r.uncacheable == "", r.uncacheable
}

// size is the encoded size of the result, 0 when it is not cacheable.
func (r *result) size() int { return len(r.body) }

// finish records why the result is not cacheable, or encodes it.
func (r *result) finish() *result {
	if r.uncacheable == "" {
		r.body = string(r.appendBody(nil))
	}
	return r
}

// databaseSQLResultFormats are the result formats pgx's stdlib asks for:
// binary only for the intrinsic types, so values decode exactly as the
// database/sql driver decodes them (stdlib's unexported variable of the
// same name).
var databaseSQLResultFormats = pgx.QueryResultFormatsByOID{
	pgtype.BoolOID:        1,
	pgtype.ByteaOID:       1,
	pgtype.CIDOID:         1,
	pgtype.DateOID:        1,
	pgtype.Float4OID:      1,
	pgtype.Float8OID:      1,
	pgtype.Int2OID:        1,
	pgtype.Int4OID:        1,
	pgtype.Int8OID:        1,
	pgtype.OIDOID:         1,
	pgtype.TimestampOID:   1,
	pgtype.TimestamptzOID: 1,
	pgtype.XIDOID:         1,
}

// materializePgx runs query on pc the way stdlib.Conn.QueryContext does
// (same result formats, argument conversion and error mapping) and reads
// every row.
func materializePgx(ctx context.Context, pc *pgx.Conn, query string, args []driver.NamedValue) (*result, error) {
	if pc.IsClosed() {
		return nil, driver.ErrBadConn
	}
	qargs := make([]any, 1+len(args))
	qargs[0] = databaseSQLResultFormats
	for i, v := range args { // stdlib's convertNamedArguments
		if v.Value != nil {
			qargs[1+i] = v.Value
		}
	}
	rows, err := pc.Query(ctx, query, qargs...)
	if err != nil {
		if pgconn.SafeToRetry(err) {
			return nil, driver.ErrBadConn
		}
		return nil, err
	}
	defer rows.Close()

	r := &result{codec: codecPgx}
	for rows.Next() {
		rv := rows.RawValues()
		// One string per row: RawValues alias pgx's read buffer.
		n := 0
		for _, v := range rv {
			n += len(v)
		}
		buf := make([]byte, 0, n)
		for _, v := range rv {
			buf = append(buf, v...)
		}
		data := string(buf)
		row := make([]rawValue, len(rv))
		off := 0
		for i, v := range rv {
			if v != nil {
				row[i] = rawValue{s: data[off : off+len(v)], ok: true}
				off += len(v)
			}
		}
		r.raw = append(r.raw, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	r.fields = append([]pgconn.FieldDescription(nil), rows.FieldDescriptions()...)
	return r.finish(), nil
}

// errColumnScanner explains why rows with their own ScanColumn cannot be
// recorded: what the driver's ScanColumn does with a destination is not in
// its driver.Values.
const errColumnScanner = "the wrapped driver's rows implement driver.RowsColumnScanner, whose ScanColumn cannot be replayed exactly"

// materializable reports whether rows of the wrapped driver can be recorded
// and replayed exactly; if not, the read path should return them to the
// caller unwrapped and fill nothing. It does not consume rows.
func materializable(rows driver.Rows) error {
	if innerScansColumns(rows) {
		return errors.New("cachedsql: " + errColumnScanner)
	}
	return nil
}

// materializeRows records rows of any driver (the generic codec): every
// column answer and every value. It reads to EOF and closes rows. Results
// holding what the codec cannot store exactly are returned, replayable to
// this caller, but marked not cacheable.
func materializeRows(rows driver.Rows) (res *result, err error) {
	defer func() {
		if cerr := rows.Close(); err == nil && cerr != nil {
			res, err = nil, cerr
		}
	}()
	r := &result{codec: codecGeneric}
	r.columns = append([]string(nil), rows.Columns()...)
	r.meta = make([]columnMeta, len(r.columns))
	st, okST := rows.(driver.RowsColumnTypeScanType)
	dn, okDN := rows.(driver.RowsColumnTypeDatabaseTypeName)
	ln, okLN := rows.(driver.RowsColumnTypeLength)
	nl, okNL := rows.(driver.RowsColumnTypeNullable)
	ps, okPS := rows.(driver.RowsColumnTypePrecisionScale)
	for i := range r.meta {
		m := &r.meta[i]
		// database/sql's answers when an interface is absent.
		m.scanType = reflect.TypeFor[any]()
		if okST {
			m.scanType = st.ColumnTypeScanType(i)
		}
		if okDN {
			m.databaseTypeName = dn.ColumnTypeDatabaseTypeName(i)
		}
		if okLN {
			m.length, m.lengthOK = ln.ColumnTypeLength(i)
		}
		if okNL {
			m.nullable, m.nullableOK = nl.ColumnTypeNullable(i)
		}
		if okPS {
			m.precision, m.scale, m.precisionScaleOK = ps.ColumnTypePrecisionScale(i)
		}
		if _, known := scanTypeIDs[m.scanType]; !known && r.uncacheable == "" {
			r.uncacheable = fmt.Sprintf("column %d has scan type %v, which the cache cannot record", i, m.scanType)
		}
	}
	for _, f := range []struct {
		ok bool
		b  rowsIfaces
	}{{okST, hasScanType}, {okDN, hasDatabaseTypeName}, {okLN, hasLength}, {okNL, hasNullable}, {okPS, hasPrecisionScale}} {
		if f.ok {
			r.ifaces |= f.b
		}
	}
	if innerScansColumns(rows) {
		r.ifaces |= hasColumnScanner
		r.uncacheable = errColumnScanner
	}
	for {
		dest := make([]driver.Value, len(r.columns))
		if err := rows.Next(dest); err != nil {
			if err == io.EOF {
				break
			}
			return nil, err
		}
		for i, v := range dest {
			switch v := v.(type) {
			case nil, int64, float64, bool, string:
			case []byte:
				if v != nil {
					dest[i] = append(make([]byte, 0, len(v)), v...) // the driver may reuse it
				}
			case time.Time:
				if loc := v.Location(); loc != time.UTC && loc != time.Local && r.uncacheable == "" {
					r.uncacheable = fmt.Sprintf("column %d holds a time in location %q, which the cache cannot record", i, loc)
				}
			default:
				if r.uncacheable == "" {
					r.uncacheable = fmt.Sprintf("column %d holds a %T, which the cache cannot record", i, v)
				}
			}
		}
		r.values = append(r.values, dest)
	}
	if nrs, ok := rows.(driver.RowsNextResultSet); ok && nrs.HasNextResultSet() && r.uncacheable == "" {
		// The replay has one result set, the query more.
		r.uncacheable = "the query returned more than one result set"
	}
	return r.finish(), nil
}

// scanTypes are the scan types the generic codec records, by a stable id:
// append only, never reorder (the ids are in stored entries).
var scanTypes = []reflect.Type{
	nil, // a driver may answer reflect.TypeOf(nil)
	reflect.TypeFor[any](),
	reflect.TypeFor[bool](),
	reflect.TypeFor[int](),
	reflect.TypeFor[int8](),
	reflect.TypeFor[int16](),
	reflect.TypeFor[int32](),
	reflect.TypeFor[int64](),
	reflect.TypeFor[uint](),
	reflect.TypeFor[uint8](),
	reflect.TypeFor[uint16](),
	reflect.TypeFor[uint32](),
	reflect.TypeFor[uint64](),
	reflect.TypeFor[float32](),
	reflect.TypeFor[float64](),
	reflect.TypeFor[string](),
	reflect.TypeFor[[]byte](),
	reflect.TypeFor[time.Time](),
	reflect.TypeFor[sql.RawBytes](),
	reflect.TypeFor[sql.NullBool](),
	reflect.TypeFor[sql.NullByte](),
	reflect.TypeFor[sql.NullFloat64](),
	reflect.TypeFor[sql.NullInt16](),
	reflect.TypeFor[sql.NullInt32](),
	reflect.TypeFor[sql.NullInt64](),
	reflect.TypeFor[sql.NullString](),
	reflect.TypeFor[sql.NullTime](),
	reflect.TypeFor[*any](),
	reflect.TypeFor[*bool](),
	reflect.TypeFor[*int64](),
	reflect.TypeFor[*float64](),
	reflect.TypeFor[*string](),
	reflect.TypeFor[*time.Time](),
}

var scanTypeIDs = func() map[reflect.Type]uint64 {
	m := make(map[reflect.Type]uint64, len(scanTypes))
	for i, t := range scanTypes {
		m[t] = uint64(i)
	}
	return m
}()
