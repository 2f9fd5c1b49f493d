package cachedsql

import (
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"hash/fnv"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

type valuer struct{ v any }

func (v valuer) Value() (driver.Value, error) { return v.v, nil }

type failingValuer struct{}

func (failingValuer) Value() (driver.Value, error) { return nil, errors.New("boom") }

type selfValuer struct{}

func (s selfValuer) Value() (driver.Value, error) { return s, nil }

type ptrValuer struct{ n int64 }

func (p *ptrValuer) Value() (driver.Value, error) { return p.n, nil }

type panicValuer struct{}

func (panicValuer) Value() (driver.Value, error) { panic("no") }

type userID int64

func col(kind colKind) keyCol { return keyCol{name: "c", kind: kind, bits: 64} }

func TestCanonicalValue(t *testing.T) {
	five := int64(5)
	paris, _ := time.LoadLocation("Europe/Paris")
	instant := time.Date(2024, 3, 1, 12, 30, 0, 123456000, time.UTC)
	u := uuid.MustParse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
	const uCanon = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"

	tests := []struct {
		name string
		col  keyCol
		in   any
		want string // "" with ok false
		ok   bool
	}{
		// One bigint key for every spelling of 5.
		{"int64", col(kindInt), int64(5), "5", true},
		{"int32", col(kindInt), int32(5), "5", true},
		{"int", col(kindInt), 5, "5", true},
		{"uint8", col(kindInt), uint8(5), "5", true},
		{"string", col(kindInt), "5", "5", true},
		{"leading zero", col(kindInt), "05", "5", true},
		{"plus", col(kindInt), "+5", "5", true},
		{"minus zero", col(kindInt), "-0", "0", true},
		{"json.Number", col(kindInt), json.Number("5"), "5", true},
		{"pgtype.Int8", col(kindInt), pgtype.Int8{Int64: 5, Valid: true}, "5", true},
		{"pgtype.Int4", col(kindInt), pgtype.Int4{Int32: 5, Valid: true}, "5", true},
		{"valuer", col(kindInt), valuer{int64(5)}, "5", true},
		{"valuer of string", col(kindInt), valuer{"5"}, "5", true},
		{"pointer", col(kindInt), &five, "5", true},
		{"named type", col(kindInt), userID(5), "5", true},
		{"sql.NullInt64", col(kindInt), sql.NullInt64{Int64: 5, Valid: true}, "5", true},
		{"pointer valuer", col(kindInt), &ptrValuer{5}, "5", true},
		{"negative", col(kindInt), int64(-7), "-7", true},
		{"min int64", col(kindInt), int64(math.MinInt64), "-9223372036854775808", true},

		// Not keys.
		{"nil", col(kindInt), nil, "", false},
		{"nil pointer", col(kindInt), (*int64)(nil), "", false},
		{"nil pointer valuer", col(kindInt), (*ptrValuer)(nil), "", false},
		{"invalid pgtype", col(kindInt), pgtype.Int8{}, "", false},
		{"sql.NullInt64 null", col(kindInt), sql.NullInt64{}, "", false},
		{"uint64 overflow", col(kindInt), uint64(math.MaxUint64), "", false},
		{"string overflow", col(kindInt), "9223372036854775808", "", false},
		{"int2 range", keyCol{kind: kindInt, bits: 16}, 40000, "", false},
		{"int2 in range", keyCol{kind: kindInt, bits: 16}, -32768, "-32768", true},
		{"int4 string range", keyCol{kind: kindInt, bits: 32}, "2147483648", "", false},
		{"float", col(kindInt), 5.0, "", false},
		{"NaN", col(kindInt), math.NaN(), "", false},
		{"space", col(kindInt), " 5", "", false},
		{"underscore", col(kindInt), "1_000", "", false},
		{"hex", col(kindInt), "0x10", "", false},
		{"sign only", col(kindInt), "-", "", false},
		{"empty", col(kindInt), "", "", false},
		{"bool", col(kindInt), true, "", false},
		{"bytes", col(kindInt), []byte("5"), "", false},
		{"struct", col(kindInt), struct{}{}, "", false},
		{"failing valuer", col(kindInt), failingValuer{}, "", false},
		{"recursive valuer", col(kindInt), selfValuer{}, "", false},
		{"panicking valuer", col(kindInt), panicValuer{}, "", false},
		{"float column", col(kindUnsupported), 5, "", false},
		{"numeric column", col(kindUnsupported), "5", "", false},

		// Text.
		{"text", col(kindText), "Ab c", "Ab c", true},
		{"text bytes", col(kindText), []byte("Ab"), "Ab", true},
		{"text valuer", col(kindText), pgtype.Text{String: "x", Valid: true}, "x", true},
		{"text int", col(kindText), 5, "", false},
		{"text bytes sqlite", keyCol{kind: kindText, stringsOnly: true}, []byte("Ab"), "", false},
		{"lower", keyCol{kind: kindText, lower: true}, "Bob@Example.COM", "bob@example.com", true},
		{"lower non-ASCII", keyCol{kind: kindText, lower: true}, "Élodie@x", "", false},
		{"non-ASCII kept", col(kindText), "Élodie", "Élodie", true},
		{"bpchar trailing", col(kindBpchar), "ab  ", "ab", true},
		{"bpchar leading kept", col(kindBpchar), "  ab", "  ab", true},
		{"text trailing kept", col(kindText), "ab  ", "ab  ", true},

		// uuid.
		{"uuid canonical", col(kindUUID), uCanon, uCanon, true},
		{"uuid upper", col(kindUUID), strings.ToUpper(uCanon), uCanon, true},
		{"uuid braces", col(kindUUID), "{" + uCanon + "}", uCanon, true},
		{"uuid no hyphens", col(kindUUID), strings.ReplaceAll(uCanon, "-", ""), uCanon, true},
		{"uuid groups of four", col(kindUUID), "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", uCanon, true},
		{"uuid google", col(kindUUID), u, uCanon, true},
		{"uuid array", col(kindUUID), [16]byte(u), uCanon, true},
		{"uuid pgtype", col(kindUUID), pgtype.UUID{Bytes: u, Valid: true}, uCanon, true},
		{"uuid short", col(kindUUID), uCanon[:35], "", false},
		{"uuid long", col(kindUUID), uCanon + "0", "", false},
		{"uuid one brace", col(kindUUID), "{" + uCanon, "", false},
		{"uuid bad hyphen", col(kindUUID), "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11", "", false},
		{"uuid double hyphen", col(kindUUID), "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11", "", false},
		{"uuid trailing hyphen", col(kindUUID), strings.ReplaceAll(uCanon, "-", "") + "-", "", false},
		{"uuid bytes", col(kindUUID), u[:], "", false},
		{"uuid not hex", col(kindUUID), "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "", false},

		// bool.
		{"bool true", col(kindBool), true, "t", true},
		{"bool false", col(kindBool), pgtype.Bool{Bool: false, Valid: true}, "f", true},
		{"bool string", col(kindBool), "true", "", false},

		// Times.
		{"timestamptz utc", col(kindTimestamptz), instant, "2024-03-01T12:30:00.123456Z", true},
		{"timestamptz paris", col(kindTimestamptz), instant.In(paris), "2024-03-01T12:30:00.123456Z", true},
		{"timestamptz nanos", col(kindTimestamptz), instant.Add(1), "", false},
		{"timestamptz year 0", col(kindTimestamptz), time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), "", false},
		{"timestamp wall clock", col(kindTimestamp), time.Date(2024, 3, 1, 12, 0, 0, 0, paris), "2024-03-01T12:00:00", true},
		{"timestamp utc same clock", col(kindTimestamp), time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC), "2024-03-01T12:00:00", true},
		{"date", col(kindDate), time.Date(2024, 3, 1, 23, 59, 0, 1, paris), "2024-03-01", true},
		{"time string", col(kindTimestamptz), "2024-03-01", "", false},

		// Unknown column type: Go types kept apart.
		{"generic int", col(kindUnknown), 5, "i5", true},
		{"generic int64", col(kindUnknown), int64(5), "i5", true},
		{"generic string", col(kindUnknown), "5", "s5", true},
		{"generic bytes", col(kindUnknown), []byte("5"), "x5", true},
		{"generic lower", keyCol{kind: kindUnknown, lower: true}, "AB", "sab", true},
		{"generic float", col(kindUnknown), 5.0, "", false},
		{"generic time", col(kindUnknown), instant, "", false},
		{"generic nil", col(kindUnknown), nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := canonicalValue(tt.col, tt.in)
			if ok != tt.ok || got != tt.want {
				t.Errorf("canonicalValue(%v, %#v) = %q, %v; want %q, %v", tt.col.kind, tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCanonicalKey(t *testing.T) {
	k := keyInfo{name: "org_id,slug", cols: []keyCol{{name: "org_id", kind: kindInt, bits: 64}, {name: "slug", kind: kindText}}}
	got, ok := canonicalKey(k, []any{int32(7), "a"})
	if !ok || len(got) != 2 || got[0] != "7" || got[1] != "a" {
		t.Errorf("canonicalKey = %q, %v; want [7 a], true", got, ok)
	}
	if _, ok := canonicalKey(k, []any{7, nil}); ok {
		t.Error("a nil value made a key")
	}
	if _, ok := canonicalKey(k, []any{7}); ok {
		t.Error("too few values made a key")
	}
	if _, ok := canonicalKey(keyInfo{}, nil); ok {
		t.Error("an empty key made a key")
	}
}

func testTable(schema, name string, keys ...keyInfo) *tableInfo {
	return &tableInfo{schema: schema, name: name, keys: keys}
}

func TestEntryKeyDistinct(t *testing.T) {
	two := keyInfo{name: "a,b", cols: []keyCol{col(kindText), col(kindText)}}
	one := keyInfo{name: "a", cols: []keyCol{col(kindText)}}
	users := testTable("public", "users", two, one)
	keys := map[string]string{}
	add := func(desc, k string) {
		t.Helper()
		if prev, dup := keys[k]; dup {
			t.Errorf("%s and %s share key %q", desc, prev, k)
		}
		keys[k] = desc
		if len(k) > MaxKeyLength || !keySafe(k) {
			t.Errorf("%s: key %q is not memcached-legal", desc, k)
		}
	}
	add(`("a,b","c")`, entryKey("ns", users, 0, []string{"a,b", "c"}))
	add(`("a","b,c")`, entryKey("ns", users, 0, []string{"a", "b,c"}))
	add(`("a:1:b", "")`, entryKey("ns", users, 0, []string{"a:1:b", ""}))
	add(`("a", "1:b")`, entryKey("ns", users, 0, []string{"a", "1:b"}))
	add(`key a "x"`, entryKey("ns", users, 1, []string{"x"}))
	add(`other ns`, entryKey("ns2", users, 1, []string{"x"}))
	add(`other schema`, entryKey("ns", testTable("app", "users", two, one), 1, []string{"x"}))
	add(`table "public.users"`, entryKey("ns", testTable("", `public.users`, two, one), 1, []string{"x"}))
	add(`space`, entryKey("ns", users, 1, []string{"a b"}))
	add(`underscore`, entryKey("ns", users, 1, []string{"a_b"}))
	for b := 0; b < genBuckets; b++ {
		add("gen", genKey("ns", users, b))
	}
	if got := entryKey("ns", users, 1, []string{"x"}); got != "cs1:ns:12:public.users:1:a:1:x:" {
		t.Errorf("entryKey = %q; want the readable form", got)
	}
}

func TestEntryKeyHashed(t *testing.T) {
	k := keyInfo{name: "email", cols: []keyCol{col(kindText)}}
	users := testTable("public", "users", k)
	long := entryKey("ns", users, 0, []string{strings.Repeat("x", 300)})
	if len(long) > MaxKeyLength || !keySafe(long) || !strings.HasPrefix(long, "cs1:ns:#12:public.users:") {
		t.Errorf("long key %q (%d bytes): want hashed, readable prefix, <= %d", long, len(long), MaxKeyLength)
	}
	long2 := entryKey("ns", users, 0, []string{strings.Repeat("x", 299) + "y"})
	if long == long2 {
		t.Error("two long keys differing at the end share a key")
	}
	for _, v := range []string{"a b", "a\nb", "a\x00b", "é", "a\x7fb"} {
		got := entryKey("ns", users, 0, []string{v})
		if !keySafe(got) || len(got) > MaxKeyLength {
			t.Errorf("key for %q = %q: not memcached-legal", v, got)
		}
	}
	// A hashed key cannot equal an unhashed one: '#' vs a digit.
	if a, b := entryKey("ns", users, 0, []string{"a b"}), entryKey("ns", users, 0, []string{"a_b"}); a == b {
		t.Errorf("%q and %q share a key", "a b", "a_b")
	}
	longTable := testTable("public", strings.Repeat("t", 300), k)
	if g := genKey("ns", longTable, 3); len(g) > MaxKeyLength || !keySafe(g) {
		t.Errorf("genKey for a long table = %q", g)
	}
}

func TestBucketOf(t *testing.T) {
	users := testTable("public", "users", keyInfo{name: "id", cols: []keyCol{col(kindInt)}})
	seen := map[int]bool{}
	for i := range 1000 {
		k := entryKey("ns", users, 0, []string{strings.Repeat("1", i%50) + string(rune('0'+i%10))})
		b := bucketOf(k, genBuckets)
		if b < 0 || b >= genBuckets {
			t.Fatalf("bucketOf = %d, out of [0, %d)", b, genBuckets)
		}
		if b != bucketOf(k, genBuckets) {
			t.Fatal("bucketOf is not deterministic")
		}
		seen[b] = true
	}
	if len(seen) < genBuckets/2 {
		t.Errorf("1000 keys used %d of %d buckets", len(seen), genBuckets)
	}
	if got := bucketOf("x", 1); got != 0 {
		t.Errorf("bucketOf(x, 1) = %d", got)
	}
	// Pinned: every process and release must pick the same bucket.
	if got := bucketOf("cs1:ns:12:public.users:2:id:1:5:", 16); got != bucketOf("cs1:ns:12:public.users:2:id:1:5:", 16) {
		t.Errorf("unstable")
	}
}

func FuzzEntryKey(f *testing.F) {
	f.Add("public", "users", "id", "5", "")
	f.Add("", `We"ird`, "a,b", "a,b", "c")
	f.Add("s", strings.Repeat("t", 250), "k", "é\x00 \n", "")
	f.Add("a:b", "1:c", "2:", ":", "::")
	f.Fuzz(func(t *testing.T, schema, name, keyName, v1, v2 string) {
		tab := testTable(schema, name, keyInfo{name: keyName, cols: []keyCol{col(kindText), col(kindText)}})
		k := entryKey("AAAAAAAAAAAAAAAA", tab, 0, []string{v1, v2})
		if len(k) > MaxKeyLength || !keySafe(k) {
			t.Fatalf("entryKey = %q (%d bytes): not memcached-legal", k, len(k))
		}
		// Moving bytes between values never keeps the key.
		if v1 != "" {
			k2 := entryKey("AAAAAAAAAAAAAAAA", tab, 0, []string{v1[:len(v1)-1], v1[len(v1)-1:] + v2})
			if k2 == k {
				t.Fatalf("(%q,%q) and a split of it share key %q", v1, v2, k)
			}
		}
		g := genKey("AAAAAAAAAAAAAAAA", tab, bucketOf(k, genBuckets))
		if len(g) > MaxKeyLength || !keySafe(g) || g == k {
			t.Fatalf("genKey = %q: not memcached-legal or equal to the entry key", g)
		}
		for _, kind := range []colKind{kindInt, kindText, kindUUID, kindUnknown, kindBpchar} {
			canonicalValue(keyCol{kind: kind, lower: true}, v1) // must not panic
		}
	})
}

// TestBucketOfIsFNV pins bucketOf's inline loop to hash/fnv's FNV-1a, the
// hash every process sharing the cache has always used.
func TestBucketOfIsFNV(t *testing.T) {
	for _, k := range []string{"", "x", "cs1:ns:12:public.users:2:id:1:5:", strings.Repeat("\xff\x00ab", 70)} {
		h := fnv.New32a()
		h.Write([]byte(k))
		for _, n := range []int{2, 7, 16, 1 << 20} {
			if got, want := bucketOf(k, n), int(h.Sum32()%uint32(n)); got != want {
				t.Errorf("bucketOf(%q, %d) = %d, fnv says %d", k, n, got, want)
			}
		}
	}
}

// TestLookupKeys checks the one-buffer keys of a lookup against entryKey
// and genKey, hashed keys included.
func TestLookupKeys(t *testing.T) {
	users := testTable("public", "users", keyInfo{name: "id", cols: []keyCol{col(kindInt)}})
	long := testTable("public", strings.Repeat("t", 300), keyInfo{name: "id", cols: []keyCol{col(kindInt)}})
	for _, tab := range []*tableInfo{users, long} {
		for _, v := range []string{"5", "a b", strings.Repeat("x", 300), "é"} {
			ek, gk := lookupKeys("ns", tab, 0, []string{v})
			if want := entryKey("ns", tab, 0, []string{v}); ek != want {
				t.Errorf("entry key %q, want %q", ek, want)
			}
			if want := genKey("ns", tab, bucketOf(ek, genBuckets)); gk != want {
				t.Errorf("gen key %q, want %q", gk, want)
			}
		}
	}
}
