package cachedsql_test

import (
	"context"
	"database/sql"
	"slices"
	"testing"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// TestReplayRowsReuse: a connection reuses its last replay's rows once
// they are closed. Rows still open on the same connection must keep their
// own values, and column names handed out earlier must not change.
func TestReplayRowsReuse(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	plain := hfPlain(t, dsn)
	schema := hfSchema(t, plain, 3)
	query := hfLookup(schema)
	db, _, _ := hfOpen(t, dsn, cachedsql.Config{Rules: hfRules(schema), Cache: cachedsql.NewMemoryCache(1 << 20)})
	ctx := context.Background()
	for id := int64(1); id <= 3; id++ { // fill
		if _, err := hfGet(ctx, db, query, id); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	first, err := conn.QueryContext(ctx, query, int64(1))
	if err != nil {
		t.Fatal(err)
	}
	cols, err := first.Columns()
	if err != nil {
		t.Fatal(err)
	}
	// A second hit while the first rows are open, then a third after the
	// second closed (which reuses the second's rows).
	second, err := conn.QueryContext(ctx, query, int64(2))
	if err != nil {
		t.Fatal(err)
	}
	scan := func(rows *sql.Rows) hfItem {
		t.Helper()
		var it hfItem
		if !rows.Next() {
			t.Fatal("no row")
		}
		if err := rows.Scan(&it.ID, &it.Name, &it.Version); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		return it
	}
	if it := scan(second); it.ID != 2 {
		t.Errorf("second lookup read %+v; want id 2", it)
	}
	third, err := conn.QueryContext(ctx, "SELECT version, name, id FROM "+schema+".items WHERE id = $1", int64(3))
	if err != nil {
		t.Fatal(err)
	}
	thirdCols, _ := third.Columns()
	var v int
	var name string
	var id int64
	if !third.Next() || third.Scan(&v, &name, &id) != nil || id != 3 {
		t.Errorf("third lookup read id %d", id)
	}
	third.Close()
	if it := scan(first); it.ID != 1 || it.Name != "item-1-v1" {
		t.Errorf("first lookup, read last, gave %+v; want id 1", it)
	}
	if want := []string{"id", "name", "version"}; !slices.Equal(cols, want) {
		t.Errorf("first rows' columns became %q; want %q", cols, want)
	}
	if want := []string{"version", "name", "id"}; !slices.Equal(thirdCols, want) {
		t.Errorf("third rows' columns %q; want %q", thirdCols, want)
	}
}
