package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cachedsql/cachedsql/internal/testenv"
)

// TestSmokePostgres runs the runner's sections on PostgreSQL and
// memcached, briefly, so CI exercises them: the figures are too short to
// mean anything, but what each section checks of itself (all hits, exact
// flushes, no database trip for a prepared hit) must hold. Only the scale
// section does not run: it needs more than 10,000 rows. The second server
// list is the same memcached, so the two-instance paths run, on one.
func TestSmokePostgres(t *testing.T) {
	dsn, mc := testenv.PostgresDSN(t), testenv.MemcacheAddr(t)
	ctx := context.Background()
	rep, err := Run(ctx, Config{DSN: dsn, Memcache: mc, Memcache2: mc, Table: "bench_smoke", Rows: 300, Conc: []int{1, 8},
		Duration: 20 * time.Millisecond, Rounds: 1, MaxDBConns: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rep.Print(&buf)
	t.Log("\n" + buf.String())
	if rep.Failed != "" {
		t.Fatalf("run stopped: %s", rep.Failed)
	}
	seen := map[string]bool{}
	for _, r := range rep.Rows {
		if r.Ops == 0 {
			t.Errorf("%s/%s at %d: no operations measured", r.Workload, r.Contender, r.Conc)
		}
		seen[r.Contender] = true
	}
	for _, want := range []string{"a plain pgx", "b cachedsql hit", "c floor gomemcache Get", "c2 floor GetMulti(entry,gen)",
		"c3 floor through database/sql", "d hand-written aside", "e cachedsql in-process hit", "f cachedsql pass", "g cachedsql prepared",
		"b with default pools"} {
		if !seen[want] {
			t.Errorf("no row for contender %q", want)
		}
	}
	if p := rep.Prepared; p == nil || p.DatabaseTrips != 0 {
		t.Errorf("prepared hits reached the database: %+v", p)
	}
	for _, o := range rep.Offload {
		if strings.HasPrefix(o.Name, "cachedsql") && o.DBReads >= o.Reads {
			t.Errorf("95/5 mix: no read served from the cache (%+v)", o)
		}
	}
	// A fill that timed out on the loaded CI machine leaves its key for
	// the second pass to read from the database: a few may.
	for _, c := range rep.Cold {
		if strings.Contains(c.Name, "second pass") && c.DBReads > int64(c.Lookups/20) {
			t.Errorf("cold start: %d database reads on the second pass (%+v)", c.DBReads, c)
		}
	}
	if fc := rep.FlushCost; fc == nil || len(fc.Points) != len(flushRows) {
		t.Errorf("flush cost: %+v", fc)
	} else {
		// The section checked the exact keys once (verifyFlush); here a
		// release past FlushTimeout is retried in the background and
		// counted late, so the per-write average may stray a little.
		for _, p := range fc.Points {
			if k := float64(p.Keys); p.FlushedPerWrite < 0.9*k || p.FlushedPerWrite > 1.1*k {
				t.Errorf("flush of %d rows: %.1f keys flushed per write; want %d", p.Rows, p.FlushedPerWrite, p.Keys)
			}
		}
		if fc.Points[0].Cached2Writes == 0 {
			t.Errorf("flush cost: the second server list was not measured: %+v", fc.Points[0])
		}
	}
	found2 := false
	for _, r := range rep.Rows {
		found2 = found2 || strings.HasSuffix(r.Workload, "memcached")
	}
	if !found2 {
		t.Errorf("no rows measured on the second server list")
	}
	if rep.Memory == nil || rep.Sharding == nil {
		t.Errorf("memory or sharding section missing (memory %v, sharding %v, %s)", rep.Memory != nil, rep.Sharding != nil, rep.ShardingSkipped)
	}
}
