package cachedsql_test

import (
	"context"
	"testing"
	"time"
)

// TestMarkersOutliveALongWrite: a write protected before it runs (a table
// bump, sent as one autocommit statement) that waits on a row lock for
// longer than MarkerTTL must keep its markers: if they expired, a reader
// would fill the row as it was, and a release failing after COMMIT would
// leave it stale after the write was acknowledged (found by the
// consistency checker, issue 6).
func TestMarkersOutliveALongWrite(t *testing.T) {
	lf := newLockedRow(t, 20*time.Millisecond, 2*time.Second)
	ctx := context.Background()
	writer, writerCn, _ := hfOpen(t, lf.dsn, lf.cfg())
	reader, readerCn, qc := hfOpen(t, lf.dsn, lf.cfg())
	plain, query, lock := lf.plain, lf.query, lf.lock
	done := lf.startWrite(t, writer)
	// Read through 2.5 MarkerTTLs of waiting: every read must go to the
	// database, and none may fill.
	fillsBefore, dbBefore := readerCn.Stats().Fills, qc.count(query)
	reads := 0
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(100 * time.Millisecond) {
		if _, err := hfGet(ctx, reader, query, 1); err != nil {
			t.Fatal(err)
		}
		reads++
	}
	if fills := readerCn.Stats().Fills - fillsBefore; fills != 0 {
		t.Errorf("while a write waited 5s (MarkerTTL 2s), readers filled %d times: its markers expired", fills)
	}
	if n := qc.count(query) - dbBefore; n != reads {
		t.Errorf("while a write waited, %d of %d reads reached the database; want all", n, reads)
	}
	if r := writerCn.Stats().MarkerRefreshes; r < 2 {
		t.Errorf("%d marker refreshes in 5s with MarkerTTL 2s; want at least 2", r)
	}
	if err := lock.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want, err := hfGet(ctx, plain, query, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := hfGet(ctx, reader, query, 1); err != nil || got != want {
		t.Fatalf("after the write: cachedsql reads %+v (%v); the database holds %+v", got, err, want)
	}
}
