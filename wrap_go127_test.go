//go:build go1.27

package cachedsql_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"slices"
	"testing"

	fd "github.com/cachedsql/cachedsql/internal/fakedriver"
)

// TestWrapRowsColumnScanner checks that Go 1.27's RowsColumnScanner
// survives the wrapper: the rows are the fake's own, and database/sql scans
// through ScanColumn with and without the wrapper alike.
func TestWrapRowsColumnScanner(t *testing.T) {
	ctx := context.Background()
	for _, r := range []fd.Features{fd.ColumnScanner, fd.ColumnScanner | fd.ColumnTypes} {
		f := fd.ConnFeatures | fd.StmtFeatures | r
		t.Run(r.String(), func(t *testing.T) {
			fc := newFake(t, f)
			dc, err := wrap(t, fc).Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer dc.Close()
			rows, err := dc.(driver.QueryerContext).QueryContext(ctx, "echo", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := rows.(driver.RowsColumnScanner); !ok || rows != fc.LastRows() {
				t.Errorf("rows: got %T (RowsColumnScanner: %t); want the fake's own %T", rows, ok, fc.LastRows())
			}
			rows.Close()

			scan := func(db *sql.DB, fc *fd.Connector) (string, []string) {
				defer db.Close()
				fc.TakeEvents()
				got, err := queryAll(db.QueryContext(ctx, "echo ?", int64(5)))
				if err != nil {
					t.Fatal(err)
				}
				return got, fc.TakeEvents()
			}
			fcPlain := newFake(t, f)
			plain, plainEvents := scan(sql.OpenDB(fcPlain), fcPlain)
			fcWrapped := newFake(t, f)
			wrapped, wrappedEvents := scan(sql.OpenDB(wrap(t, fcWrapped)), fcWrapped)
			if wrapped != plain || !slices.Equal(wrappedEvents, plainEvents) {
				t.Errorf("through the wrapper: got %s %q; want %s %q", wrapped, wrappedEvents, plain, plainEvents)
			}
			if !slices.Contains(wrappedEvents, "Rows.ScanColumn 2") {
				t.Errorf("calls: got %q; want Rows.ScanColumn", wrappedEvents)
			}
		})
	}
}
