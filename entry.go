package cachedsql

// The cache item of one (table, rule, key values): the results of every
// query shape that read that row by that key, so one delete flushes them
// all. Layout (uv = unsigned varint, sv = signed varint, str = uv length
// then bytes):
//
//	entry   = magic "CSQ" | version 0x01 | crc32c (4 bytes, little endian,
//	          Castagnoli, over everything after it) | gen str | uv nshapes |
//	          nshapes × (key str | uv len(body) | body)
//	body    = codec byte | pgx or generic
//	pgx     = uv ncols | ncols × (name str | uv tableOID | uv attnum |
//	          uv typeOID | sv typeSize | sv typeModifier | sv format) |
//	          uv nrows | nrows × (0x00 | ncols × (uv 0 for NULL, else
//	          uv len+1 | bytes))
//	generic = ifaces byte | uv ncols | ncols × (name str | uv scanTypeID |
//	          databaseTypeName str | flags byte | sv length | sv precision |
//	          sv scale) | uv nrows | nrows × (0x00 | ncols × value)
//	value   = tag byte | payload: nil, false, true: none; int64: sv;
//	          float64: 8 bytes little endian; string, []byte: str;
//	          nil []byte: none; time (UTC or Local): sv unix seconds | uv nanos
//
// Every row starts with a 0x00 byte so that a count can never exceed the
// bytes left, whatever the column count: a forged count fails before it
// allocates. Decoding copies the item once into a string and slices
// everything else out of it.

import (
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	entryMagic   = "CSQ"
	entryVersion = 1
	entryHeader  = len(entryMagic) + 1 + 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// entry is one cache item.
type entry struct {
	gen    string // the table generation it was filled under
	shapes []shape
}

// shape is the result of one query shape: key identifies the query text and
// its extra-predicate parameter values (computed by the caller).
type shape struct {
	key string
	res *result
}

// lookup returns the result stored for shapeKey.
func (e *entry) lookup(shapeKey string) (*result, bool) {
	for _, s := range e.shapes {
		if s.key == shapeKey {
			return s.res, true
		}
	}
	return nil, false
}

// with returns a copy of e with shapeKey's result added or replaced; e is
// unchanged (it may be in use by other readers).
func (e *entry) with(shapeKey string, r *result) *entry {
	n := &entry{gen: e.gen, shapes: make([]shape, 0, len(e.shapes)+1)}
	for _, s := range e.shapes {
		if s.key != shapeKey {
			n.shapes = append(n.shapes, s)
		}
	}
	n.shapes = append(n.shapes, shape{key: shapeKey, res: r})
	return n
}

var errEntryTooLarge = fmt.Errorf("cachedsql: cache entry larger than %d bytes", MaxValueSize)

// encode returns the item's value: an error if a result is not cacheable or
// the value would exceed MaxValueSize.
func (e *entry) encode() ([]byte, error) {
	n := entryHeader + len(e.gen) // a lower bound of the size, without varints
	for _, s := range e.shapes {
		if s.res == nil {
			return nil, errors.New("cachedsql: cache entry shape without a result")
		}
		if ok, why := s.res.cacheable(); !ok {
			return nil, errors.New("cachedsql: result not cacheable: " + why)
		}
		n += len(s.key) + len(s.res.body)
		if n > MaxValueSize {
			return nil, errEntryTooLarge
		}
	}
	n += binary.MaxVarintLen64 * 2 * (len(e.shapes) + 1)
	b := make([]byte, entryHeader, n)
	copy(b, entryMagic)
	b[len(entryMagic)] = entryVersion
	b = appendString(b, e.gen)
	b = binary.AppendUvarint(b, uint64(len(e.shapes)))
	for _, s := range e.shapes {
		b = appendString(b, s.key)
		b = appendString(b, s.res.body)
	}
	if len(b) > MaxValueSize {
		return nil, errEntryTooLarge
	}
	binary.LittleEndian.PutUint32(b[entryHeader-4:], crc32.Checksum(b[entryHeader:], crcTable))
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendBody appends the encoded result to b.
func (r *result) appendBody(b []byte) []byte {
	b = append(b, byte(r.codec))
	if r.codec == codecPgx {
		b = binary.AppendUvarint(b, uint64(len(r.fields)))
		for _, f := range r.fields {
			b = appendString(b, f.Name)
			b = binary.AppendUvarint(b, uint64(f.TableOID))
			b = binary.AppendUvarint(b, uint64(f.TableAttributeNumber))
			b = binary.AppendUvarint(b, uint64(f.DataTypeOID))
			b = binary.AppendVarint(b, int64(f.DataTypeSize))
			b = binary.AppendVarint(b, int64(f.TypeModifier))
			b = binary.AppendVarint(b, int64(f.Format))
		}
		b = binary.AppendUvarint(b, uint64(len(r.raw)))
		for _, row := range r.raw {
			b = append(b, 0)
			for _, v := range row {
				if !v.ok {
					b = append(b, 0)
					continue
				}
				b = binary.AppendUvarint(b, uint64(len(v.s))+1)
				b = append(b, v.s...)
			}
		}
		return b
	}
	b = append(b, byte(r.ifaces))
	b = binary.AppendUvarint(b, uint64(len(r.columns)))
	for i, name := range r.columns {
		m := &r.meta[i]
		b = appendString(b, name)
		b = binary.AppendUvarint(b, scanTypeIDs[m.scanType])
		b = appendString(b, m.databaseTypeName)
		var flags byte
		for j, f := range [...]bool{m.lengthOK, m.nullable, m.nullableOK, m.precisionScaleOK} {
			if f {
				flags |= 1 << j
			}
		}
		b = append(b, flags)
		b = binary.AppendVarint(b, m.length)
		b = binary.AppendVarint(b, m.precision)
		b = binary.AppendVarint(b, m.scale)
	}
	b = binary.AppendUvarint(b, uint64(len(r.values)))
	for _, row := range r.values {
		b = append(b, 0)
		for _, v := range row {
			b = appendValue(b, v)
		}
	}
	return b
}

// Value tags of the generic codec.
const (
	tagNil = iota
	tagFalse
	tagTrue
	tagInt64
	tagFloat64
	tagString
	tagBytes
	tagNilBytes
	tagTimeUTC
	tagTimeLocal
)

// appendValue encodes one value that materializeRows accepted.
func appendValue(b []byte, v driver.Value) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, tagNil)
	case bool:
		if v {
			return append(b, tagTrue)
		}
		return append(b, tagFalse)
	case int64:
		return binary.AppendVarint(append(b, tagInt64), v)
	case float64:
		return binary.LittleEndian.AppendUint64(append(b, tagFloat64), math.Float64bits(v))
	case string:
		return appendString(append(b, tagString), v)
	case []byte:
		if v == nil {
			return append(b, tagNilBytes)
		}
		return appendString(append(b, tagBytes), string(v))
	case bytesValue:
		return appendString(append(b, tagBytes), string(v))
	case time.Time:
		tag := byte(tagTimeUTC)
		if v.Location() == time.Local {
			tag = tagTimeLocal
		}
		b = binary.AppendVarint(append(b, tag), v.Unix())
		return binary.AppendUvarint(b, uint64(v.Nanosecond()))
	}
	panic(fmt.Sprintf("cachedsql: appendValue of %T", v)) // unreachable: materializeRows refuses it
}

var errCorruptEntry = errors.New("cachedsql: corrupt cache entry")

// decodeEntry parses an item's value. Anything but a well-formed entry of
// this version, with its checksum intact, is an error: a miss for the
// caller.
func decodeEntry(b []byte) (*entry, error) { return decodeEntryOf(b, false) }

// decodeEntryOf is decodeEntry; owned says nobody will ever write b, so
// the entry's strings may point into it instead of into a copy.
func decodeEntryOf(b []byte, owned bool) (*entry, error) {
	if len(b) > MaxValueSize {
		return nil, errEntryTooLarge
	}
	if len(b) < entryHeader || string(b[:len(entryMagic)]) != entryMagic {
		return nil, errors.New("cachedsql: not a cache entry")
	}
	if v := b[len(entryMagic)]; v != entryVersion {
		return nil, fmt.Errorf("cachedsql: cache entry format version %d, want %d", v, entryVersion)
	}
	if binary.LittleEndian.Uint32(b[entryHeader-4:]) != crc32.Checksum(b[entryHeader:], crcTable) {
		return nil, errors.New("cachedsql: cache entry checksum mismatch")
	}
	var d decoder
	if body := b[entryHeader:]; owned && len(body) > 0 {
		d.s = unsafe.String(&body[0], len(body))
	} else {
		d.s = string(body)
	}
	// Most entries hold one shape: the entry, its shape and the shape's
	// result share one allocation.
	one := new(struct {
		e   entry
		s   [1]shape
		res resultBlock
	})
	e := &one.e
	e.gen = d.str()
	n := d.countMin(3) // key length, body length, codec
	if n == 1 {
		e.shapes = one.s[:]
	} else {
		e.shapes = make([]shape, n)
	}
	for i := range e.shapes {
		e.shapes[i].key = d.str()
		var into *resultBlock
		if n == 1 {
			into = &one.res
		}
		e.shapes[i].res = d.result(into)
		if d.bad {
			return nil, errCorruptEntry
		}
	}
	if d.bad || d.off != len(d.s) {
		return nil, errCorruptEntry
	}
	return e, nil
}

// decoder reads from s; after the first error, bad is set and every read
// returns zero values, so callers check once per loop.
type decoder struct {
	s   string
	off int
	bad bool
}

func (d *decoder) fail() { d.bad, d.off = true, len(d.s) }

func (d *decoder) uvarint() uint64 {
	var x uint64
	for shift := uint(0); d.off < len(d.s); shift += 7 {
		c := d.s[d.off]
		d.off++
		if shift == 63 && c > 1 {
			break
		}
		if c < 0x80 {
			if c == 0 && shift > 0 {
				break // not minimal: no encoder writes it
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
	}
	d.fail()
	return 0
}

func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// count reads a count of items that each take at least one byte.
func (d *decoder) count() int { return d.countMin(1) }

// countMin reads a count of items that each take at least min bytes, so a
// forged count fails before anything is allocated for it.
func (d *decoder) countMin(min int) int {
	n := d.uvarint()
	if n > uint64((len(d.s)-d.off)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.count()
	s := d.s[d.off : d.off+n]
	d.off += n
	return s
}

func (d *decoder) byte() byte {
	if d.off >= len(d.s) {
		d.fail()
		return 0
	}
	c := d.s[d.off]
	d.off++
	return c
}

// intIn reads a signed varint that must fit [lo, hi].
func (d *decoder) intIn(lo, hi int64) int64 {
	v := d.varint()
	if v < lo || v > hi {
		d.fail()
		return 0
	}
	return v
}

func (d *decoder) uintMax(hi uint64) uint64 {
	v := d.uvarint()
	if v > hi {
		d.fail()
		return 0
	}
	return v
}

// row reads a row's leading 0x00.
func (d *decoder) row() {
	if d.byte() != 0 {
		d.fail()
	}
}

// resultBlock is a decoded result and the row list of a one-row result
// (every cached lookup's), allocated together.
type resultBlock struct {
	r   result
	raw [1][]rawValue
	// The row description and first row of a pgx result of up to eight
	// columns, so that a one-row result is one allocation with its entry.
	fields [8]pgconn.FieldDescription
	row    [8]rawValue
}

// result reads one length-prefixed result body, into one if not nil.
func (d *decoder) result(one *resultBlock) *result {
	body := d.str()
	if d.bad {
		return nil
	}
	end := d.off
	d.off -= len(body)
	if one == nil {
		one = new(resultBlock)
	}
	r := &one.r
	r.codec = resultCodec(d.byte())
	switch r.codec {
	case codecPgx:
		d.pgx(r, one)
	case codecGeneric:
		d.generic(r)
	default:
		d.fail()
	}
	if d.bad || d.off != end {
		d.fail()
		return nil
	}
	// The stored body is reused as is when the entry is re-encoded.
	r.body = body
	return r
}

// pgx reads a pgx-codec body into r, which lives in blk: the row list of
// a one-row result, and the row description and first row of up to eight
// columns, use blk's arrays (capacities capped: nothing can append into
// another).
func (d *decoder) pgx(r *result, blk *resultBlock) {
	ncols := d.countMin(7)
	oneRow := blk.raw[:]
	var firstRow []rawValue
	if ncols >= 1 && ncols <= len(blk.fields) {
		r.fields, firstRow = blk.fields[:ncols:ncols], blk.row[:ncols:ncols]
	} else {
		r.fields = make([]pgconn.FieldDescription, ncols)
	}
	for i := range r.fields {
		f := &r.fields[i]
		f.Name = d.str()
		f.TableOID = uint32(d.uintMax(math.MaxUint32))
		f.TableAttributeNumber = uint16(d.uintMax(math.MaxUint16))
		f.DataTypeOID = uint32(d.uintMax(math.MaxUint32))
		f.DataTypeSize = int16(d.intIn(math.MinInt16, math.MaxInt16))
		f.TypeModifier = int32(d.intIn(math.MinInt32, math.MaxInt32))
		f.Format = int16(d.intIn(math.MinInt16, math.MaxInt16))
	}
	nrows := d.count()
	if d.bad {
		return
	}
	if nrows == 1 {
		r.raw = oneRow
	} else {
		r.raw = make([][]rawValue, nrows)
	}
	for i := range r.raw {
		d.row()
		if d.bad || ncols > len(d.s)-d.off {
			d.fail()
			return
		}
		row := firstRow
		if i > 0 || row == nil {
			row = make([]rawValue, ncols)
		}
		for j := range row {
			n := d.uvarint()
			if n == 0 {
				continue
			}
			if n-1 > uint64(len(d.s)-d.off) {
				d.fail()
				return
			}
			row[j] = rawValue{s: d.s[d.off : d.off+int(n-1)], ok: true}
			d.off += int(n - 1)
		}
		r.raw[i] = row
	}
}

func (d *decoder) generic(r *result) {
	r.ifaces = rowsIfaces(d.byte())
	if r.ifaces&^ifacesAll != 0 {
		d.fail()
	}
	if r.ifaces&hasColumnScanner != 0 {
		d.fail() // never stored: see materializeRows
	}
	ncols := d.countMin(8)
	r.columns = make([]string, ncols)
	r.meta = make([]columnMeta, ncols)
	for i := range r.meta {
		m := &r.meta[i]
		r.columns[i] = d.str()
		m.scanType = scanTypes[d.uintMax(uint64(len(scanTypes)-1))]
		m.databaseTypeName = d.str()
		flags := d.byte()
		if flags > 0xf {
			d.fail()
		}
		m.lengthOK, m.nullable, m.nullableOK, m.precisionScaleOK = flags&1 != 0, flags&2 != 0, flags&4 != 0, flags&8 != 0
		m.length = d.varint()
		m.precision = d.varint()
		m.scale = d.varint()
	}
	nrows := d.count()
	if d.bad {
		return
	}
	r.values = make([][]driver.Value, nrows)
	for i := range r.values {
		d.row()
		if d.bad || ncols > len(d.s)-d.off {
			d.fail()
			return
		}
		row := make([]driver.Value, ncols)
		for j := range row {
			row[j] = d.value()
		}
		r.values[i] = row
	}
}

func (d *decoder) value() driver.Value {
	tag := d.byte()
	switch tag {
	case tagNil:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagInt64:
		return d.varint()
	case tagFloat64:
		if len(d.s)-d.off < 8 {
			d.fail()
			return nil
		}
		s := d.s[d.off : d.off+8]
		d.off += 8
		return math.Float64frombits(uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56)
	case tagString:
		return d.str()
	case tagBytes:
		return bytesValue(d.str())
	case tagNilBytes:
		return []byte(nil)
	case tagTimeUTC, tagTimeLocal:
		sec := d.intIn(-1<<62, 1<<62) // far from time.Time's overflow
		nsec := d.uintMax(999_999_999)
		t := time.Unix(sec, int64(nsec)) // in time.Local
		if tag == tagTimeUTC {
			t = t.UTC()
		}
		return t
	}
	d.fail()
	return nil
}
