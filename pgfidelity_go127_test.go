//go:build go1.27

package cachedsql_test

import (
	"database/sql"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cachedsql/cachedsql"
)

// As of Go 1.27, database/sql lets a driver's Rows scan columns itself
// (driver.RowsColumnScanner), and pgx uses that to scan arrays into Go
// slices and its own pgtype values. The wrapper must keep that path: rows
// it does not serve must reach database/sql as pgx's own.
func TestPGFidelityGo127(t *testing.T) {
	runFidelity(t, fidVariants(), fidBodyColumnScanner)
}

func fidBodyColumnScanner(t *testing.T, r *fidRun) {
	scan := func(key, query string, dest func() any, args ...any) any {
		d := dest()
		err := r.db.QueryRowContext(r.ctx, r.q(query), args...).Scan(d)
		r.record(key, fidScanResult{fidSnapshot(d), fidErrOf(err)})
		return d
	}
	for _, id := range fidTypeRows {
		key := fmt.Sprintf("id%d/", id)
		scan(key+"int8[]->[]int64", "SELECT c_int8arr FROM @.types WHERE id = $1", func() any { return new([]int64) }, id)
		scan(key+"int8[]->[]*int64", "SELECT c_int8arr FROM @.types WHERE id = $1", func() any { return new([]*int64) }, id)
		scan(key+"int8[]->[]NullInt64", "SELECT c_int8arr FROM @.types WHERE id = $1", func() any { return new([]sql.NullInt64) }, id)
		scan(key+"text[]->[]string", "SELECT c_textarr FROM @.types WHERE id = $1", func() any { return new([]string) }, id)
		scan(key+"text[]->[]*string", "SELECT c_textarr FROM @.types WHERE id = $1", func() any { return new([]*string) }, id)
		scan(key+"text[]->[]NullString", "SELECT c_textarr FROM @.types WHERE id = $1", func() any { return new([]sql.NullString) }, id)
		scan(key+"int4[][]->[][]int32", "SELECT c_int4arr2d FROM @.types WHERE id = $1", func() any { return new([][]int32) }, id)
		scan(key+"int4[][]->Array", "SELECT c_int4arr2d FROM @.types WHERE id = $1", func() any { return new(pgtype.Array[*int32]) }, id)
		scan(key+"uuid->[16]byte", "SELECT c_uuid FROM @.types WHERE id = $1", func() any { return new([16]byte) }, id)
		scan(key+"numeric->Numeric", "SELECT c_numeric FROM @.types WHERE id = $1", func() any { return new(pgtype.Numeric) }, id)
		scan(key+"interval->Interval", "SELECT c_interval FROM @.types WHERE id = $1", func() any { return new(pgtype.Interval) }, id)
		scan(key+"jsonb->map", "SELECT c_jsonb FROM @.types WHERE id = $1", func() any { return new(map[string]any) }, id)
		// Scalar destinations keep database/sql's conversions.
		scan(key+"int8[]->string", "SELECT c_int8arr FROM @.types WHERE id = $1", func() any { return new(string) }, id)
	}
	scan("range", "SELECT int4range(1, 5)", func() any { return new(pgtype.Range[pgtype.Int4]) })
	scan("null-array", "SELECT NULL::int8[]", func() any { return new([]int64) })

	// An array parameter, and its round trip.
	var n int
	err := r.db.QueryRowContext(r.ctx, "SELECT cardinality($1::text[])", []string{"a", "b", "c"}).Scan(&n)
	r.record("param/cardinality", fidScanResult{n, fidErrOf(err)})
	var back []int64
	err = r.db.QueryRowContext(r.ctx, "SELECT $1::int8[]", []int64{1, -2, 3}).Scan(&back)
	r.record("param/roundtrip", fidScanResult{back, fidErrOf(err)})

	// The same through a prepared statement and a transaction.
	st, err := r.db.PrepareContext(r.ctx, r.q("SELECT c_int8arr, c_textarr FROM @.types WHERE id = $1"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tx, err := r.db.BeginTx(r.ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, id := range fidTypeRows {
		var ids []int64
		var texts []*string
		err := st.QueryRowContext(r.ctx, id).Scan(&ids, &texts)
		r.record(fmt.Sprintf("stmt/id%d", id), fidScanResult{[]any{ids, fidDerefs(texts)}, fidErrOf(err)})
		ids, texts = nil, nil
		err = tx.StmtContext(r.ctx, st).QueryRowContext(r.ctx, id).Scan(&ids, &texts)
		r.record(fmt.Sprintf("tx/id%d", id), fidScanResult{[]any{ids, fidDerefs(texts)}, fidErrOf(err)})
	}

	// Sanity: the path works at all, so matching proves something.
	var ids []int64
	if err := r.db.QueryRowContext(r.ctx, r.q("SELECT c_int8arr FROM @.types WHERE id = 3")).Scan(&ids); err != nil ||
		!slices.Equal(ids, []int64{9223372036854775807, -9223372036854775808}) {
		t.Errorf("bigint[] into *[]int64: got %v, %v; want [9223372036854775807 -9223372036854775808], nil", ids, err)
	}
	var texts []string
	if err := r.db.QueryRowContext(r.ctx, r.q("SELECT c_textarr FROM @.types WHERE id = 4")).Scan(&texts); err != nil ||
		!slices.Equal(texts, []string{"NULL", "null"}) {
		t.Errorf("text[] into *[]string: got %q, %v; want [\"NULL\" \"null\"], nil", texts, err)
	}
}

// fidDerefs turns []*string into values, so records compare contents and
// print without addresses.
func fidDerefs(ps []*string) []fidNilable {
	if ps == nil {
		return nil
	}
	out := make([]fidNilable, len(ps))
	for i, p := range ps {
		if p == nil {
			out[i] = fidNilable{Nil: true}
		} else {
			out[i] = fidNilable{Elem: *p}
		}
	}
	return out
}

// TestPGFidelityGo127Cached scans cached rows through the same path.
func TestPGFidelityGo127Cached(t *testing.T) {
	var cn *cachedsql.Connector
	runFidelity(t, []fidVariant{fidVariants()[0], fidCachedVariant(&cn)}, fidBodyColumnScanner)
	if cn == nil {
		return
	}
	if st := cn.Stats(); st.Hits == 0 {
		t.Errorf("cache hits: got 0; want some (stats %+v)", st)
	}
}
