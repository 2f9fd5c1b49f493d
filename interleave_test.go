package cachedsql_test

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// Deterministic tests of the interleavings of design brief §3 that the read
// path alone decides (1, 4, 7). The fill is paused with the filler's test
// hooks (export_test.go), the writer is simulated: its commit is an UPDATE
// through a plain pgx pool, its flush a Delete of the entry key, its
// generation bump a Set of the generation key; the write path proper is
// tested elsewhere. Every test runs on real PostgreSQL, counts what reaches
// it with a tracer, and uses the in-process cache, which passes the same
// conformance suite as memcached.

// hfInterleaveEnv is one test's table, cache and cachedsql pool.
type hfInterleaveEnv struct {
	plain  *sql.DB
	schema string
	cache  cachedsql.Cache
	db     *sql.DB
	cn     *cachedsql.Connector
	qc     *hfCounter
}

func newHFInterleaveEnv(t *testing.T, cache cachedsql.Cache, leaseWait time.Duration) *hfInterleaveEnv {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	e := &hfInterleaveEnv{plain: hfPlain(t, dsn), cache: cache}
	e.schema = hfSchema(t, e.plain, 5)
	e.db, e.cn, e.qc = hfOpen(t, dsn, cachedsql.Config{
		Rules:     hfRules(e.schema),
		Cache:     cache,
		Namespace: "interleave-" + hfRandom(),
		LeaseWait: leaseWait,
		// These tests are about orderings, not a slow cache: no operation
		// may time out on a loaded machine and change the path taken.
		CacheTimeout: 5 * time.Second,
	})
	// Open connections up front, so that no lookup's timing includes
	// connecting.
	e.db.SetMaxIdleConns(16)
	var conns []*sql.Conn
	for range 10 {
		c, err := e.db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	return e
}

// entryKey is the cache key of the entry that query on id reads.
func (e *hfInterleaveEnv) entryKey(t *testing.T, query string, id int64) (entry, gen string) {
	t.Helper()
	entry, gen, ok := cachedsql.LookupKeys(e.cn, query, id)
	if !ok {
		t.Fatalf("%s is not a cacheable lookup", query)
	}
	return entry, gen
}

// update commits a new name and version for id, bypassing cachedsql.
func (e *hfInterleaveEnv) update(t *testing.T, id int64, name string, version int) {
	t.Helper()
	if _, err := e.plain.Exec("UPDATE "+e.schema+".items SET name = $2, version = $3 WHERE id = $1", id, name, version); err != nil {
		t.Fatal(err)
	}
}

// get runs the lookup through cachedsql, failing the test on error.
func (e *hfInterleaveEnv) get(t *testing.T, id int64) hfItem {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	it, err := hfGet(ctx, e.db, hfLookup(e.schema), id)
	if err != nil {
		t.Fatalf("lookup %d: %v", id, err)
	}
	return it
}

type hfResult struct {
	it  hfItem
	err error
}

// §3.1, late joiner: R1 leads a fill and reads v1; W commits v2 and
// flushes; R2 starts after the flush and must see v2: it must not join R1's
// flight, which was closed when R1 queried. R1's fill must then fail (its
// lease was flushed), so v1 is never stored.
func TestInterleaveLateJoiner(t *testing.T) {
	for _, refill := range []bool{true, false} {
		name := "R2 refills"
		if !refill {
			name = "flush only"
		}
		t.Run(name, func(t *testing.T) {
			e := newHFInterleaveEnv(t, cachedsql.NewMemoryCache(0), 50*time.Millisecond)
			query := hfLookup(e.schema)
			const id = 1
			ek, _ := e.entryKey(t, query, id)
			v1 := hfItem{id, "item-1-v1", 1}
			v2 := hfItem{id, "item-1-v2", 2}

			// R1, the first filler of ek, pauses after its database read,
			// before its cas.
			paused, release := make(chan struct{}), make(chan struct{})
			var fills atomic.Int32
			cachedsql.SetFillHooks(e.cn, nil, func(key string) {
				if key == ek && fills.Add(1) == 1 {
					close(paused)
					<-release
				}
			})
			var releaseOnce sync.Once
			releaseR1 := func() { releaseOnce.Do(func() { close(release) }) }
			t.Cleanup(releaseR1)

			r1 := make(chan hfResult, 1)
			go func() {
				it, err := hfGet(context.Background(), e.db, query, id)
				r1 <- hfResult{it, err}
			}()
			select {
			case <-paused:
			case res := <-r1:
				t.Fatalf("R1 finished without reaching its cas: %+v", res)
			case <-time.After(10 * time.Second):
				t.Fatal("R1 never reached its cas")
			}

			// W commits v2, then flushes what R1 leases.
			e.update(t, id, v2.Name, v2.Version)
			if err := e.cache.Delete(context.Background(), ek); err != nil {
				t.Fatalf("flush %s: %v (R1's lease should be there)", ek, err)
			}
			before := e.cn.Stats()

			if refill {
				// R2 starts after the write: it must read v2, without
				// waiting for R1 (a joiner of R1's flight would wait for
				// R1, which waits for us).
				r2 := make(chan hfResult, 1)
				go func() {
					it, err := hfGet(context.Background(), e.db, query, id)
					r2 <- hfResult{it, err}
				}()
				var res hfResult
				select {
				case res = <-r2:
				case <-time.After(5 * time.Second):
					releaseR1()
					res = <-r2
					t.Errorf("R2 waited for R1's flight, which opened before the write (it then got %+v)", res.it)
				}
				if res.err != nil || res.it != v2 {
					t.Errorf("R2, started after the write: %+v, %v; want %+v", res.it, res.err, v2)
				}
				if got := e.cn.Stats().Fills - before.Fills; got != 1 {
					t.Errorf("R2 fills = %d; want 1", got)
				}
			}

			releaseR1()
			res := <-r1
			if res.err != nil || res.it != v1 {
				t.Errorf("R1, started before the write: %+v, %v; want %+v", res.it, res.err, v1)
			}
			st := e.cn.Stats()
			if got := st.FillRacesLost - before.FillRacesLost; got != 1 {
				t.Errorf("R1's cas after the flush: FillRacesLost moved by %d; want 1", got)
			}
			if !refill && st.Fills != before.Fills {
				t.Errorf("R1's cas after the flush stored its row (fills %d -> %d)", before.Fills, st.Fills)
			}

			// Whatever is cached now is v2; after R2's fill it is a hit.
			dbBefore := e.qc.count(query)
			if got := e.get(t, id); got != v2 {
				t.Errorf("lookup after R1's failed fill: %+v; want %+v", got, v2)
			}
			if refill && e.qc.count(query) != dbBefore {
				t.Errorf("lookup after R2's fill went to the database")
			}
			if got := e.get(t, id); got != v2 {
				t.Errorf("second lookup: %+v; want %+v", got, v2)
			}
			if e.qc.count(query) > dbBefore+1 {
				t.Errorf("the database saw %d lookups after the race; want at most 1", e.qc.count(query)-dbBefore)
			}
		})
	}
}

// §3.4, merge into an old generation: shape A is cached at generation g1;
// the row changes and the table's generation moves on; shape B is filled.
// The entry B lands in must not carry A's result from g1: a lookup of A
// must go to the database and see the new row.
func TestInterleaveMergeOldGeneration(t *testing.T) {
	e := newHFInterleaveEnv(t, cachedsql.NewMemoryCache(0), 50*time.Millisecond)
	const id = 2
	qa := "SELECT id, name FROM " + e.schema + ".items WHERE id = $1"
	qb := "SELECT id, version FROM " + e.schema + ".items WHERE id = $1"
	ctx := context.Background()
	getA := func() (name string) {
		t.Helper()
		var got int64
		if err := e.db.QueryRowContext(ctx, qa, id).Scan(&got, &name); err != nil {
			t.Fatal(err)
		}
		return name
	}
	getB := func() (version int) {
		t.Helper()
		var got int64
		if err := e.db.QueryRowContext(ctx, qb, id).Scan(&got, &version); err != nil {
			t.Fatal(err)
		}
		return version
	}
	eka, gk := e.entryKey(t, qa, id)
	if ekb, gkb := e.entryKey(t, qb, id); ekb != eka || gkb != gk {
		t.Fatalf("shapes A and B of one key use different items: %q %q, %q %q", eka, ekb, gk, gkb)
	}

	// A at g1: filled, then a hit.
	if got := getA(); got != "item-2-v1" {
		t.Fatalf("A: %q", got)
	}
	if got := getA(); got != "item-2-v1" || e.qc.count(qa) != 1 {
		t.Fatalf("A again: %q, database %d; want a hit", got, e.qc.count(qa))
	}

	// The row changes and the generation moves on (a table bump).
	e.update(t, id, "item-2-v2", 2)
	if err := e.cache.Set(ctx, &cachedsql.Item{Key: gk, Value: cachedsql.GenValue("bumped" + hfRandom())}); err != nil {
		t.Fatal(err)
	}

	// B, filled under the new generation, into the item that holds A at g1.
	before := e.cn.Stats()
	if got := getB(); got != 2 {
		t.Errorf("B after the bump: version %d; want 2", got)
	}
	if got := e.cn.Stats().Fills - before.Fills; got != 1 {
		t.Errorf("B after the bump: fills %d; want 1", got)
	}

	// A must not be served from what g1 cached.
	if got := getA(); got != "item-2-v2" {
		t.Errorf("A after the bump and B's fill: %q; want %q (A's g1 result was merged into the new generation)", got, "item-2-v2")
	}
	if got := e.qc.count(qa); got != 2 {
		t.Errorf("A after the bump: the database saw A %d times in all; want 2", got)
	}

	// Both shapes now live in the entry of the current generation.
	a, b := e.qc.count(qa), e.qc.count(qb)
	if getA() != "item-2-v2" || getB() != 2 || e.qc.count(qa) != a || e.qc.count(qb) != b {
		t.Errorf("A and B after both refills: not hits (database A %d -> %d, B %d -> %d)", a, e.qc.count(qa), b, e.qc.count(qb))
	}
}

// §3.7, a lease holder that dies: its lease stays until its TTL. Meanwhile
// every lookup waits at most LeaseWait, then reads the database without
// filling; once the lease has expired, lookups fill and hit. The cache's
// clock is the test's, so the lease expires without sleeping.
func TestInterleaveDeadLeaseHolder(t *testing.T) {
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	const leaseWait = 100 * time.Millisecond
	e := newHFInterleaveEnv(t, cachedsql.NewMemoryCacheClock(0, now), leaseWait)
	query := hfLookup(e.schema)
	const id = 3
	want := hfItem{id, "item-3-v1", 1}
	ek, _ := e.entryKey(t, query, id)

	// Another process took the lease, then died.
	ctx := context.Background()
	if err := e.cache.Add(ctx, &cachedsql.Item{Key: ek, Value: cachedsql.LeaseValue(), TTL: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}

	// Bounded: LeaseWait, plus scheduling slack on a loaded machine; a
	// lookup that waited for the lease would wait for its TTL (here,
	// forever: the clock does not move) and run into its 10s deadline.
	const bound = leaseWait + 600*time.Millisecond
	lookup := func() (hfItem, time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		begin := time.Now()
		it, err := hfGet(ctx, e.db, query, id)
		return it, time.Since(begin), err
	}
	before := e.cn.Stats()
	const sequential, concurrent = 3, 8
	for range sequential {
		it, d, err := lookup()
		if err != nil || it != want {
			t.Fatalf("lookup under a dead lease: %+v, %v; want %+v", it, err, want)
		}
		if d > bound {
			t.Errorf("lookup under a dead lease took %v; want at most %v (LeaseWait %v)", d, bound, leaseWait)
		}
	}
	var wg sync.WaitGroup
	for range concurrent {
		wg.Go(func() {
			it, d, err := lookup()
			if err != nil || it != want {
				t.Errorf("concurrent lookup under a dead lease: %+v, %v; want %+v", it, err, want)
			}
			if d > bound {
				t.Errorf("concurrent lookup under a dead lease took %v; want at most %v", d, bound)
			}
		})
	}
	wg.Wait()
	st := e.cn.Stats()
	if got := e.qc.count(query); got != sequential+concurrent {
		t.Errorf("under a dead lease: the database saw %d lookups; want %d (each after its bounded wait)", got, sequential+concurrent)
	}
	if st.Fills != before.Fills || st.Hits != before.Hits {
		t.Errorf("under a dead lease: fills %d -> %d, hits %d -> %d; want neither to move", before.Fills, st.Fills, before.Hits, st.Hits)
	}
	if got := st.LeaseWaits - before.LeaseWaits; got != sequential+concurrent {
		t.Errorf("under a dead lease: %d lease waits; want %d", got, sequential+concurrent)
	}

	// The lease's TTL passes: the next lookup fills, the one after hits.
	skew.Store(int64(4 * time.Second))
	n := e.qc.count(query)
	if it, _, err := lookup(); err != nil || it != want {
		t.Fatalf("lookup after the lease expired: %+v, %v", it, err)
	}
	if it, _, err := lookup(); err != nil || it != want {
		t.Fatalf("second lookup after the lease expired: %+v, %v", it, err)
	}
	st2 := e.cn.Stats()
	if e.qc.count(query) != n+1 || st2.Fills != st.Fills+1 || st2.Hits != st.Hits+1 {
		t.Errorf("after the lease expired: database %d, fills %d, hits %d; want 1, 1, 1",
			e.qc.count(query)-n, st2.Fills-st.Fills, st2.Hits-st.Hits)
	}
}
