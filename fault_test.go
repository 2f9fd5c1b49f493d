package cachedsql_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/fakememcache"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// G8, reads: with memcached stopped, black-holed, slow or returning
// garbage, every read succeeds with the database's data, within the
// database's latency plus one cache budget, and reads are served from the
// cache again soon after it recovers.
//
// The latency bound is checked on p99 over hfFaultReads sequential reads
// each side: the database's (plain pgx, measured just before) and
// cachedsql's with the fault. A read may spend at most CacheTimeout on the
// cache before it goes to the database (and nothing once the breaker is
// open), so p99(cachedsql) <= p99(database) + CacheTimeout, plus
// hfFaultSlack for scheduling on a loaded 2-core machine under the race
// detector (p99 was seen at ~250ms with the machine's load average above
// 20). The gomemcache client's own timeout is set far above that (2s), and
// the slow server's delay too (2s), so a read that the budget does not
// bound breaks the bound by far more than the slack.
const (
	hfFaultReads   = 200
	hfFaultIDs     = 20
	hfCacheTimeout = 50 * time.Millisecond
	hfFaultSlack   = 400 * time.Millisecond
	hfClientTO     = 2 * time.Second
)

func TestFaultReads(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	plain := hfPlain(t, dsn)
	schema := hfSchema(t, plain, hfFaultIDs)
	query := hfLookup(schema)
	want := make(map[int64]hfItem)
	for id := int64(1); id <= hfFaultIDs; id++ {
		it, err := hfGet(context.Background(), plain, query, id)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = it
	}

	cases := []struct {
		name    string
		inject  func(t *testing.T, s *fakememcache.Server)
		recover func(t *testing.T, s *fakememcache.Server)
		trips   bool // the breaker must open
		noHits  bool // no read may be served from the cache during the fault
	}{
		{
			name: "stopped",
			inject: func(t *testing.T, s *fakememcache.Server) {
				if err := s.Refuse(true); err != nil {
					t.Fatal(err)
				}
			},
			recover: func(t *testing.T, s *fakememcache.Server) {
				if err := s.Refuse(false); err != nil {
					t.Fatal(err)
				}
			},
			trips: true, noHits: true,
		},
		{
			name:    "blackhole",
			inject:  func(t *testing.T, s *fakememcache.Server) { s.SetFaults(fakememcache.Faults{BlackHole: true}) },
			recover: func(t *testing.T, s *fakememcache.Server) { s.SetFaults(fakememcache.Faults{}) },
			trips:   true, noHits: true,
		},
		{
			name:    "slow",
			inject:  func(t *testing.T, s *fakememcache.Server) { s.SetFaults(fakememcache.Faults{Delay: hfClientTO}) },
			recover: func(t *testing.T, s *fakememcache.Server) { s.SetFaults(fakememcache.Faults{}) },
			noHits:  true,
		},
		{
			name:    "corrupt",
			inject:  func(t *testing.T, s *fakememcache.Server) { s.SetFaults(fakememcache.Faults{Corrupt: true}) },
			recover: func(t *testing.T, s *fakememcache.Server) { s.SetFaults(fakememcache.Faults{}) },
			// Corrupt entries are misses: every read goes to the database.
			noHits: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Both memcached backends: Memcache over gomemcache, and
			// NewMemcache's own read path.
			for _, backend := range memcacheBackends {
				t.Run(backend.name, func(t *testing.T) {
					s := fakememcache.Start(t)
					db, cn, qc := hfOpen(t, dsn, cachedsql.Config{
						Rules:        hfRules(schema),
						Cache:        backend.open(t, s.Addr(), hfClientTO),
						Namespace:    "fault-" + hfRandom(),
						CacheTimeout: hfCacheTimeout,
					})
					ctx := context.Background()
					read := func(id int64) time.Duration {
						t.Helper()
						begin := time.Now()
						got, err := hfGet(ctx, db, query, id)
						d := time.Since(begin)
						if err != nil {
							t.Fatalf("read %d: %v", id, err)
						}
						if got != want[id] {
							t.Fatalf("read %d: %+v; the database holds %+v", id, got, want[id])
						}
						return d
					}
					// cleanPass reads every key until one pass over them all is
					// served from the cache (no database query, a hit each), and
					// returns how long that took. A cache operation may still time
					// out now and then on a loaded machine: that costs another
					// pass, not a failure.
					cleanPass := func(what string) time.Duration {
						t.Helper()
						begin := time.Now()
						for {
							st, n := cn.Stats(), qc.count(query)
							for id := int64(1); id <= hfFaultIDs; id++ {
								read(id)
							}
							if qc.count(query) == n && cn.Stats().Hits-st.Hits == hfFaultIDs {
								return time.Since(begin)
							}
							if time.Since(begin) > 10*time.Second {
								t.Fatalf("cache %s, %s: no pass of %d reads served from the cache within 10s (stats %+v)",
									c.name, what, hfFaultIDs, cn.Stats())
							}
							time.Sleep(20 * time.Millisecond)
						}
					}
					// Warm: every key filled, then served from the cache.
					cleanPass("warming")

					dbP99 := hfP99(hfFaultReads, func(i int) time.Duration {
						id := int64(i%hfFaultIDs + 1)
						begin := time.Now()
						if _, err := hfGet(ctx, plain, query, id); err != nil {
							t.Fatal(err)
						}
						return time.Since(begin)
					})

					c.inject(t, s)
					before, dbBefore, opsBefore := cn.Stats(), qc.count(query), hfOps(s)
					bound := dbP99 + hfCacheTimeout + hfFaultSlack
					var worst time.Duration
					over := 0
					p99 := hfP99(hfFaultReads, func(i int) time.Duration {
						d := read(int64(i%hfFaultIDs + 1))
						worst = max(worst, d)
						if d > bound {
							// Past 1% of the reads over the bound, p99 is: stop
							// rather than wait for a broken budget 200 times.
							if over++; over > hfFaultReads/100 {
								t.Fatalf("cache %s: read %d took %v, read number %d over the bound %v (database p99 %v + CacheTimeout %v + %v slack)",
									c.name, i, d, over, bound, dbP99, hfCacheTimeout, hfFaultSlack)
							}
						}
						return d
					})
					after, dbAfter, opsAfter := cn.Stats(), qc.count(query), hfOps(s)
					t.Logf("p99: database %v, cachedsql with the cache %s %v (worst %v); bound %v; breaker trips %d, cache errors %d, server saw %d commands",
						dbP99, c.name, p99, worst, bound,
						after.BreakerTrips, after.CacheErrors-before.CacheErrors, opsAfter-opsBefore)
					if p99 > bound {
						t.Errorf("p99 of reads with the cache %s is %v; want at most the database's p99 %v + CacheTimeout %v (+ %v slack)",
							c.name, p99, dbP99, hfCacheTimeout, hfFaultSlack)
					}
					if c.trips && after.BreakerTrips == 0 {
						t.Errorf("cache %s: the circuit breaker never opened (cache errors %d)", c.name, after.CacheErrors)
					}
					if c.noHits && after.Hits != before.Hits {
						t.Errorf("cache %s: %d reads were served from the cache", c.name, after.Hits-before.Hits)
					}
					if c.noHits && dbAfter-dbBefore != hfFaultReads {
						t.Errorf("cache %s: the database saw %d lookups; want %d", c.name, dbAfter-dbBefore, hfFaultReads)
					}
					if c.name == "blackhole" && opsAfter-opsBefore > 20 {
						// Once open, the breaker stops calling the cache: a few
						// failures, then one probe a second.
						t.Errorf("black hole: the server received %d commands during %d reads; the breaker should have stopped them",
							opsAfter-opsBefore, hfFaultReads)
					}

					// Recovery: once the cache is healthy and the breaker's cooldown
					// (1s) has passed, reads are hits again and the database sees
					// nothing (after one round that refills what the fault left).
					c.recover(t, s)
					t.Logf("served from the cache again %v after recovery", cleanPass("after recovery").Round(time.Millisecond))
				})
			}
		})
	}
}

// hfP99 runs f(0..n-1) and returns the 99th percentile of its durations.
func hfP99(n int, f func(i int) time.Duration) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = f(i)
	}
	slices.Sort(ds)
	return ds[(n*99+99)/100-1]
}

// hfOps is how many commands s has received.
func hfOps(s *fakememcache.Server) int64 {
	var n int64
	for _, v := range s.OpCounts() {
		n += v
	}
	return n
}
