package cachedsql

import (
	"crypto/sha256"
	"database/sql/driver"
	"encoding/base64"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Cache keys.
//
// An entry key is
//
//	cs1:<namespace>:<len>:<table>:<len>:<key name>:<len>:<value>...
//
// with the table schema-qualified in canonical spelling ("public.users"),
// the key name as KeyName spells it ("org_id,slug") and each canonical value
// length-prefixed, so that no choice of names or values can make two
// different lookups share a key (("a,b","c") vs ("a","b,c"); a table named
// like a key name). A key longer than MaxKeyLength, or holding a byte
// memcached forbids in keys (space, control characters) or any non-ASCII
// byte, is replaced by
//
//	cs1:<namespace>:#<readable prefix>:<base64url sha256 of the whole key>
//
// The namespace is fixed-length base64url (no ':'), and an unhashed key's
// next byte is a digit while a hashed one's is '#', and a generation key's is
// 'g', so the three forms never collide.

// keyFormat is the key format version: change it when keys or the meaning
// of canonical values change, so old entries are never read.
const keyFormat = "cs1"

// genBuckets is how many generation items each table has. A lookup reads
// the one its entry key hashes to, so no single item is read by every
// lookup of a hot table; a table bump writes all of them.
const genBuckets = 16

// hashPrefixLen bounds the readable part of a hashed key:
// 4 ("cs1:") + 16 (namespace) + 2 (":#") + 120 + 1 + 43 (sha256) = 186.
const hashPrefixLen = 120

// entryKey is the cache key of the entry of table t, key t.keys[key], for
// the canonical values canon (from canonicalKey).
func entryKey(ns string, t *tableInfo, key int, canon []string) string {
	var buf [keyBufSize]byte
	return string(appendEntryKey(buf[:0], ns, t.qualified(), t.keys[key].name, canon))
}

// genKey is the key of generation bucket bucket of table t.
func genKey(ns string, t *tableInfo, bucket int) string {
	var buf [keyBufSize]byte
	return string(appendGenKey(buf[:0], ns, t.qualified(), bucket))
}

// lookupKeys returns entryKey(ns, t, key, canon) and the key of its
// generation bucket, genKey(ns, t, bucketOf(entry, genBuckets)): spelled
// at catalog load when ns is the catalog's namespace.
func lookupKeys(ns string, t *tableInfo, key int, canon []string) (entry, gen string) {
	var buf [keyBufSize]byte
	entry = string(appendEntryKey(buf[:0], ns, t.qualified(), t.keys[key].name, canon))
	bucket := bucketOf(entry, genBuckets)
	if t.genNS == ns && ns != "" {
		gen = t.genKeys[bucket]
	} else {
		gen = genKey(ns, t, bucket)
	}
	return entry, gen
}

// keyBufSize holds any key memcached accepts unhashed, so the buffers of
// entryKey, genKey and lookupKeys stay on the stack for them.
const keyBufSize = MaxKeyLength + 6

func appendEntryKey(b []byte, ns, qualified, keyName string, canon []string) []byte {
	b = appendKeyHead(b, ns)
	head := len(b)
	b = appendField(b, qualified)
	b = appendField(b, keyName)
	for _, v := range canon {
		b = appendField(b, v)
	}
	return appendFinished(b, ns, head)
}

func appendGenKey(b []byte, ns, qualified string, bucket int) []byte {
	b = appendKeyHead(b, ns)
	head := len(b)
	b = append(b, 'g')
	b = strconv.AppendInt(b, int64(bucket), 10)
	b = append(b, ':')
	b = appendField(b, qualified)
	return appendFinished(b, ns, head)
}

// appendKeyHead appends the head finishKey puts before a key's body.
func appendKeyHead(b []byte, ns string) []byte {
	b = append(b, keyFormat...)
	b = append(b, ':')
	b = append(b, ns...)
	return append(b, ':')
}

// appendFinished is finishKey over b, whose body starts at b[head:]: b
// itself when memcached accepts it, else the hashed form.
func appendFinished(b []byte, ns string, head int) []byte {
	if len(b) <= MaxKeyLength && keySafeBytes(b) {
		return b
	}
	return append(b[:0], finishKey(ns, string(b[head:]))...)
}

// bucketOf picks the generation bucket of an entry key. FNV-1a is stable
// across processes and releases, which every process sharing the cache
// needs. (32-bit FNV-1a, as hash/fnv's New32a computes it.)
func bucketOf(entryKey string, buckets int) int {
	if buckets <= 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(entryKey); i++ {
		h ^= uint32(entryKey[i])
		h *= 16777619
	}
	return int(h % uint32(buckets))
}

func appendField(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	b = append(b, s...)
	return append(b, ':')
}

// finishKey prefixes body with the format and namespace, and hashes the
// result when memcached would refuse it.
func finishKey(ns, body string) string {
	head := keyFormat + ":" + ns + ":"
	k := head + body
	if len(k) <= MaxKeyLength && keySafe(k) {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	var b strings.Builder
	b.WriteString(head)
	b.WriteByte('#')
	for i := 0; i < len(body) && i < hashPrefixLen; i++ {
		if c := body[i]; c > ' ' && c < 0x7f {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteByte(':')
	b.WriteString(base64.RawURLEncoding.EncodeToString(sum[:]))
	return b.String()
}

// keySafeBytes is keySafe for a []byte.
func keySafeBytes(s []byte) bool {
	for _, c := range s {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// keySafe reports whether memcached's text protocol accepts s as a key:
// printable ASCII without space. (memcached allows other bytes > 0x7f, but
// proxies and tools do not all agree, and hashing costs nothing here.)
func keySafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// ---- canonical key values ----

// colKind is the comparison family of a key column's SQL type: values that
// the database finds equal must canonicalise to one string, and values it
// finds different to different strings.
type colKind uint8

const (
	// kindUnknown: the catalog could not be read (generic drivers) or the
	// column has no type affinity (SQLite BLOB). Values are kept apart by
	// Go type: int 5 and "5" get different keys.
	kindUnknown colKind = iota
	kindInt             // int2, int4, int8 (serial); SQLite INTEGER affinity
	kindText            // text, varchar, citext, name; SQLite TEXT affinity
	kindBpchar          // char(n): compared ignoring trailing spaces
	kindUUID
	kindBool
	kindTimestamptz
	kindTimestamp
	kindDate
	// kindUnsupported: float, numeric, nondeterministic collations, and
	// everything else whose equality we do not reproduce: never a key
	// value, so lookups pass through and writes bump the table.
	kindUnsupported
)

var kindNames = [...]string{"unknown", "integer", "text", "char", "uuid", "boolean", "timestamptz", "timestamp", "date", "unsupported"}

func (k colKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "colKind(?)"
}

// keyCol is one column of a resolved key.
type keyCol struct {
	name string  // folded, as the catalog spells it
	kind colKind // comparison family
	bits int     // kindInt: 16, 32 or 64 (the column's range)
	// lower: values are compared lower-cased (rule Normalize "lower", a
	// citext column, a SQLite NOCASE collation), so canonical values are
	// lower-cased. See nativeLower.
	lower bool
	// nativeLower: the column's own equality ignores case (citext, NOCASE),
	// so "col = $1" lookups with different cases find the same row. When
	// lower is set without nativeLower (a text column with a unique
	// lower(col) index), only "lower(col) = lower($1)" lookups find the
	// same row for every case; "col = $1" lookups do not, and the plan must
	// not share one entry between them.
	nativeLower bool
	// stringsOnly (SQLite text): a []byte is a BLOB there, never equal to
	// TEXT, so only Go strings are text values.
	stringsOnly bool
}

// keyInfo is one key of a table rule, resolved against the catalog.
type keyInfo struct {
	name   string   // KeyName of the rule's columns: part of cache keys
	cols   []keyCol // in the rule's order; canonicalKey's args follow it
	backed bool     // a primary key, unique constraint or unique index guarantees it
}

// maxValuerDepth bounds driver.Valuer chains (a Valuer returning a Valuer).
const maxValuerDepth = 4

// canonicalKey returns the canonical values of key k for args (one per
// column, in k.cols order), or false when any cannot be canonicalised: the
// read then passes through and the write bumps the table. nil is never a
// key value: "col = NULL" matches no row, and caching that would be wrong
// for "IS NOT DISTINCT FROM" shapes.
func canonicalKey(k keyInfo, args []any) ([]string, bool) {
	return appendCanonicalKey(nil, k, args)
}

// appendCanonicalKey is canonicalKey appending to dst (whose spare capacity
// a caller may keep on its stack).
func appendCanonicalKey(dst []string, k keyInfo, args []any) ([]string, bool) {
	if len(args) != len(k.cols) || len(k.cols) == 0 {
		return nil, false
	}
	out := append(dst, make([]string, len(args))...)[len(dst):]
	for i, a := range args {
		s, ok := canonicalValue(k.cols[i], a)
		if !ok {
			return nil, false
		}
		out[i] = s
	}
	return out, true
}

// canonicalValue canonicalises one value for column c. It never panics: a
// Valuer that panics makes the value unusable, not the lookup.
func canonicalValue(c keyCol, v any) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			s, ok = "", false
		}
	}()
	v, ok = underlying(v, 0)
	if !ok || v == nil {
		return "", false
	}
	switch c.kind {
	case kindInt:
		return canonInt(v, c.bits)
	case kindText, kindBpchar:
		var t string
		switch x := v.(type) {
		case string:
			t = x
		case []byte:
			if c.stringsOnly {
				return "", false
			}
			t = string(x)
		default:
			return "", false
		}
		if c.kind == kindBpchar {
			// PostgreSQL compares character(n) ignoring trailing spaces.
			t = strings.TrimRight(t, " ")
		}
		if c.lower {
			return asciiLower(t)
		}
		return t, true
	case kindUUID:
		return canonUUID(v)
	case kindBool:
		if b, isBool := v.(bool); isBool {
			if b {
				return "t", true
			}
			return "f", true
		}
		return "", false
	case kindTimestamptz, kindTimestamp, kindDate:
		t, isTime := v.(time.Time)
		if !isTime {
			return "", false
		}
		return canonTime(c.kind, t)
	case kindUnknown:
		return canonGeneric(v, c.lower)
	}
	return "", false
}

// underlying reduces v to a basic Go value: driver.Valuer results
// (pgtype.Int8, uuid.UUID, sql.NullString...), dereferenced pointers, and
// named types of basic kinds (type UserID int64), as pgx and database/sql's
// default converter do. [16]byte is kept for uuid columns.
func underlying(v any, depth int) (any, bool) {
	if depth > maxValuerDepth {
		return nil, false
	}
	switch x := v.(type) {
	case nil, bool, string, []byte, time.Time, json.Number, [16]byte,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return x, true
	case driver.Valuer:
		rv := reflect.ValueOf(x)
		if rv.Kind() == reflect.Pointer && rv.IsNil() {
			return nil, true // a nil *T Valuer is NULL, as database/sql sends it
		}
		r, err := x.Value()
		if err != nil {
			return nil, false
		}
		return underlying(r, depth+1)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return nil, true
		}
		return underlying(rv.Elem().Interface(), depth+1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return rv.Uint(), true
	case reflect.String:
		return rv.String(), true
	case reflect.Bool:
		return rv.Bool(), true
	case reflect.Array:
		if rv.Type().Elem().Kind() == reflect.Uint8 && rv.Len() == 16 {
			var a [16]byte
			reflect.Copy(reflect.ValueOf(&a).Elem(), rv)
			return a, true
		}
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return rv.Bytes(), true
		}
	}
	return nil, false
}

// canonInt is the decimal form of an integer that fits bits, or false.
// Strings: an optional sign and decimal digits ("05" and "+5" are 5, as
// PostgreSQL's int8in reads them); no spaces, underscores, hex or
// exponents, which some versions accept and others reject: those pass
// through. Floats are refused even when whole: drivers disagree on them.
func canonInt(v any, bits int) (string, bool) {
	if bits == 0 {
		bits = 64
	}
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case uint, uint8, uint16, uint32, uint64:
		u := reflect.ValueOf(x).Uint()
		if u > math.MaxInt64 {
			return "", false
		}
		n = int64(u)
	case string:
		return canonIntString(x, bits)
	case json.Number:
		return canonIntString(string(x), bits)
	default: // []byte included: drivers may send it as a blob
		return "", false
	}
	if bits < 64 && (n < -1<<(bits-1) || n > 1<<(bits-1)-1) {
		return "", false // the database would refuse it: no key
	}
	return strconv.FormatInt(n, 10), true
}

func canonIntString(s string, bits int) (string, bool) {
	digits := s
	if digits != "" && (digits[0] == '-' || digits[0] == '+') {
		digits = digits[1:]
	}
	if digits == "" {
		return "", false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return "", false
		}
	}
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		return "", false
	}
	return strconv.FormatInt(n, 10), true
}

// asciiLower lower-cases ASCII letters. A value with any non-ASCII byte is
// refused: PostgreSQL's lower() follows the database collation for other
// letters (and SQLite's NOCASE does not fold them at all), which we do not
// reproduce; such lookups pass through.
func asciiLower(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// canonUUID is the lower-case hyphenated form. Strings are read as
// PostgreSQL's uuid_in reads them: optional braces, any case, a hyphen
// allowed after any group of four digits. Raw bytes only as [16]byte
// (uuid.UUID, pgtype.UUID's Value is a string): a []byte is ambiguous
// between text and raw form.
func canonUUID(v any) (string, bool) {
	var b [16]byte
	switch x := v.(type) {
	case [16]byte:
		b = x
	case string:
		var ok bool
		if b, ok = parseUUID(x); !ok {
			return "", false
		}
	default:
		return "", false
	}
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&15])
	}
	return string(out), true
}

// parseUUID mirrors PostgreSQL's string_to_uuid.
func parseUUID(s string) ([16]byte, bool) {
	var b [16]byte
	braces := strings.HasPrefix(s, "{")
	if braces {
		s = s[1:]
	}
	for i := 0; i < 16; i++ {
		if len(s) < 2 {
			return b, false
		}
		hi, ok1 := unhex(s[0])
		lo, ok2 := unhex(s[1])
		if !ok1 || !ok2 {
			return b, false
		}
		b[i] = hi<<4 | lo
		s = s[2:]
		if i%2 == 1 && i < 15 && strings.HasPrefix(s, "-") {
			s = s[1:]
		}
	}
	if braces {
		if !strings.HasPrefix(s, "}") {
			return b, false
		}
		s = s[1:]
	}
	return b, s == ""
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// canonTime canonicalises a time.Time as pgx sends it:
//   - timestamptz: the instant, in UTC;
//   - timestamp (without time zone): the wall clock as written in the
//     value's own location (pgx sends t's clock, discarding the zone), so
//     12:00 in Paris and 12:00 UTC are one key, and one instant in two
//     locations is two;
//   - date: the date of that wall clock.
//
// Sub-microsecond times are refused: PostgreSQL keeps microseconds, and
// the binary protocol truncates while text input rounds, so we cannot know
// which row they find. Years outside 1..9999 are refused too (BC dates,
// infinity and pgx's range limits).
func canonTime(k colKind, t time.Time) (string, bool) {
	if k != kindDate && t.Nanosecond()%1000 != 0 {
		return "", false
	}
	if k == kindTimestamptz {
		t = t.UTC()
	}
	if y := t.Year(); y < 1 || y > 9999 {
		return "", false
	}
	switch k {
	case kindTimestamptz:
		return t.Format("2006-01-02T15:04:05.999999Z"), true
	case kindTimestamp:
		return t.Format("2006-01-02T15:04:05.999999"), true
	case kindDate:
		// pgx sends a time.Time as a date by its wall-clock date, dropping
		// the time of day.
		return t.Format("2006-01-02"), true
	}
	return "", false
}

// canonGeneric handles columns of unknown type. Go types are tagged so that
// int 5 and "5" never share a key: on a text column they are one row, on an
// integer column one row, but on a column that compares by storage class
// (SQLite without affinity) they are two, and we cannot tell which.
func canonGeneric(v any, lower bool) (string, bool) {
	switch x := v.(type) {
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		s, ok := canonInt(x, 64)
		return "i" + s, ok
	case string:
		if lower {
			l, ok := asciiLower(x)
			return "s" + l, ok
		}
		return "s" + x, true
	case []byte:
		if lower {
			l, ok := asciiLower(string(x))
			return "x" + l, ok
		}
		return "x" + string(x), true
	}
	return "", false
}
