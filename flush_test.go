package cachedsql

import (
	"context"
	"crypto/rand"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachedsql/cachedsql/internal/fakememcache"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// ---- helpers ----

// flushBackend is a cache the flush tests run against.
type flushBackend struct {
	name  string
	cache func(t *testing.T) Cache
}

var flushBackends = []flushBackend{
	{"memory", func(*testing.T) Cache { return NewMemoryCache(0) }},
	{"fakememcache", func(t *testing.T) Cache { return Memcache(memcache.New(fakememcache.Start(t).Addr())) }},
	{"memcached", func(t *testing.T) Cache { return Memcache(memcache.New(testenv.MemcacheAddr(t))) }},
}

// testPrefix is a key prefix no other run shares (real memcached is shared).
func testPrefix(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	return "ft-" + hex.EncodeToString(b[:]) + ":"
}

// faultCache fails every operation while fail is set.
type faultCache struct {
	Cache
	fail atomic.Bool // read by every operation, set by the test
}

var errInjected = errors.New("injected cache fault")

func (c *faultCache) GetMulti(ctx context.Context, keys []string) (map[string]*Item, error) {
	if c.fail.Load() {
		return nil, errInjected
	}
	return c.Cache.GetMulti(ctx, keys)
}

func (c *faultCache) Add(ctx context.Context, it *Item) error {
	if c.fail.Load() {
		return errInjected
	}
	return c.Cache.Add(ctx, it)
}

func (c *faultCache) CompareAndSwap(ctx context.Context, it *Item) error {
	if c.fail.Load() {
		return errInjected
	}
	return c.Cache.CompareAndSwap(ctx, it)
}

// clockedMemory is a memory cache on a fake clock (memory_internal_test.go).
func clockedMemory() (Cache, *fakeClock) { return newTestMemory(0) }

func advance(c *fakeClock, d time.Duration) { c.set(c.now().Add(d)) }

const testMarkerTTL = 2 * time.Second

// newTestFlusher is a writer process's flusher on c.
func newTestFlusher(t *testing.T, c Cache) (*flusher, *counters) {
	return newTestFlusherTimeouts(t, c, 200*time.Millisecond, 500*time.Millisecond)
}

func newTestFlusherTimeouts(t *testing.T, c Cache, opTimeout, flushTimeout time.Duration) (*flusher, *counters) {
	stats := new(counters)
	cfg := &Config{MarkerTTL: testMarkerTTL, FlushTimeout: flushTimeout, Logger: slog.New(slog.DiscardHandler)}
	f := newFlusher(newGuard(c, opTimeout, stats), stats, cfg)
	t.Cleanup(f.close)
	return f, stats
}

// newTestFiller is a reader process's filler on c.
func newTestFiller(c Cache, hooks *fillHooks) (*filler, *counters) {
	stats := new(counters)
	return &filler{
		cache: newGuard(c, 200*time.Millisecond, stats),
		stats: stats,
		wait:  2 * time.Millisecond,
		cfg:   &Config{},
		hooks: hooks,
	}, stats
}

// flushTable names a table's generation shards.
func flushTable(prefix, name string) (string, []string) {
	keys := make([]string, genBuckets)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sg%d:%s", prefix, i, name)
	}
	return name, keys
}

// testLookup is a lookup of entry key "<prefix>k:<name>" in table.
func testLookup(prefix, name string, gens []string) *lookup {
	k := prefix + "k:" + name
	return &lookup{
		entryKey: k, genKey: gens[bucketOf(k, len(gens))], shape: "s", rule: "t(id)",
		ttl: time.Minute, missTTL: time.Minute, cacheMisses: true, canFill: true,
	}
}

func intResult(v int64) *result {
	r := &result{codec: codecGeneric, columns: []string{"v"}, ifaces: hasScanType,
		meta:   []columnMeta{{scanType: reflect.TypeOf(int64(0))}},
		values: [][]driver.Value{{v}}}
	return r.finish()
}

func resultInt(t testing.TB, r *result) int64 {
	t.Helper()
	if r == nil || len(r.values) != 1 || len(r.values[0]) != 1 {
		t.Fatalf("result %+v: want one int", r)
	}
	v, ok := r.values[0][0].(int64)
	if !ok {
		t.Fatalf("result value %T: want int64", r.values[0][0])
	}
	return v
}

// db is a one-value "database" with a query counter.
type db struct {
	v       atomic.Int64
	queries atomic.Int64
}

func (d *db) query(context.Context) (*result, error) {
	d.queries.Add(1)
	return intResult(d.v.Load()), nil
}

// readVia reads l through fl and checks the value and whether the
// database was queried.
func readVia(t *testing.T, fl *filler, l *lookup, d *db, want int64, wantQuery bool) {
	t.Helper()
	before := d.queries.Load()
	r, err := fl.read(context.Background(), l, d.query)
	if err != nil {
		t.Fatalf("read %s: %v", l.entryKey, err)
	}
	if got := resultInt(t, r); got != want {
		t.Fatalf("read %s: got %d, want %d", l.entryKey, got, want)
	}
	if queried := d.queries.Load() > before; queried != wantQuery {
		t.Fatalf("read %s: queried the database: %v, want %v", l.entryKey, queried, wantQuery)
	}
}

func getItem(t *testing.T, c Cache, key string) *Item {
	t.Helper()
	items, err := c.GetMulti(context.Background(), []string{key})
	if err != nil {
		t.Fatalf("GetMulti %s: %v", key, err)
	}
	return items[key]
}

func wantState(t *testing.T, c Cache, key string, want itemState) *Item {
	t.Helper()
	it := getItem(t, c, key)
	if st, _ := stateOf(it); st != want {
		t.Fatalf("%s: state %d (%q), want %d", key, st, itemValue(it), want)
	}
	return it
}

func itemValue(it *Item) string {
	if it == nil {
		return "<absent>"
	}
	return string(it.Value)
}

func tombstoneHolds(t *testing.T, c Cache, key string, want ...token) {
	t.Helper()
	it := getItem(t, c, key)
	ts, ok := tombstoneTokens(it)
	if !ok || len(ts) != len(want) {
		t.Fatalf("%s: %q, want a tombstone of %d writers", key, itemValue(it), len(want))
	}
	for _, w := range want {
		found := false
		for _, tk := range ts {
			found = found || tk == w
		}
		if !found {
			t.Fatalf("%s: tombstone lacks a writer's token", key)
		}
	}
}

// gens returns each shard's generation ("" when not "G"+gen) and marks.
func shardGens(t *testing.T, c Cache, keys []string) []string {
	t.Helper()
	items, err := c.GetMulti(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i], _ = parseGen(items[k])
	}
	return out
}

func keySet(keys ...string) *flushSet {
	s := newFlushSet()
	for _, k := range keys {
		s.addKey(k)
	}
	return s
}

// ---- tests ----

func TestFlushRoundTrip(t *testing.T) {
	for _, b := range flushBackends {
		t.Run(b.name, func(t *testing.T) {
			c := b.cache(t)
			p := testPrefix(t)
			table, gens := flushTable(p, "t")
			l := testLookup(p, "1", gens)
			d := &db{}
			d.v.Store(1)
			fl, _ := newTestFiller(c, nil)
			readVia(t, fl, l, d, 1, true)
			readVia(t, fl, l, d, 1, false) // filled
			gen0 := shardGens(t, c, gens)

			f, stats := newTestFlusher(t, c)
			s := keySet(l.entryKey)
			s.addTable(table, gens)
			tok := newToken()
			if err := f.protect(context.Background(), tok, s); err != nil {
				t.Fatalf("protect: %v", err)
			}
			tombstoneHolds(t, c, l.entryKey, tok)
			for i, g := range shardGens(t, c, gens) {
				if g != "" {
					t.Fatalf("shard %d: generation %q while in flight", i, g)
				}
			}
			d.v.Store(2)
			readVia(t, fl, l, d, 2, true) // in flight: the database, no fill
			tombstoneHolds(t, c, l.entryKey, tok)

			f.release(context.Background(), tok, s, true)
			wantState(t, c, l.entryKey, stateCleared)
			for i, g := range shardGens(t, c, gens) {
				if g == "" || g == gen0[i] {
					t.Fatalf("shard %d: generation %q after the bump, was %q", i, g, gen0[i])
				}
			}
			if st := stats.snapshot(); st.Flushes != 1 || st.TableBumps != 1 || st.FlushFailures != 0 {
				t.Fatalf("stats %+v: want 1 flush, 1 bump", st)
			}
			readVia(t, fl, l, d, 2, true)  // CLEARED is a miss, filled by cas
			readVia(t, fl, l, d, 2, false) // and filled
		})
	}
}

// §3 interleaving 2: two writers of one key never clear each other's
// protection.
func TestFlushTwoWritersOneKey(t *testing.T) {
	for _, w2Fails := range []bool{false, true} {
		t.Run(fmt.Sprintf("w2ReleaseFails=%v", w2Fails), func(t *testing.T) {
			c, clk := clockedMemory()
			fc2 := &faultCache{Cache: c}
			f1, _ := newTestFlusher(t, c)
			f2, stats2 := newTestFlusher(t, fc2)
			_, gens := flushTable("", "t")
			l := testLookup("", "1", gens)
			fl, _ := newTestFiller(c, nil)
			d := &db{}
			d.v.Store(1)
			readVia(t, fl, l, d, 1, true) // filled with 1

			s := keySet(l.entryKey)
			t1, t2 := newToken(), newToken()
			if err := f1.protect(context.Background(), t1, s); err != nil {
				t.Fatal(err)
			}
			if err := f2.protect(context.Background(), t2, s); err != nil {
				t.Fatal(err)
			}
			tombstoneHolds(t, c, l.entryKey, t1, t2)
			d.v.Store(2) // W1 commits
			f1.release(context.Background(), t1, s, true)
			tombstoneHolds(t, c, l.entryKey, t2) // W2's protection stays
			readVia(t, fl, l, d, 2, true)        // no fill under W2's tombstone
			tombstoneHolds(t, c, l.entryKey, t2)

			d.v.Store(3) // W2 commits
			fc2.fail.Store(w2Fails)
			f2.release(context.Background(), t2, s, true)
			if !w2Fails {
				wantState(t, c, l.entryKey, stateCleared)
				readVia(t, fl, l, d, 3, true)
				readVia(t, fl, l, d, 3, false)
				return
			}
			f2.close() // no more retries: W2 is gone
			if st := stats2.snapshot(); st.FlushFailures != 0 || st.Flushes != 0 {
				t.Fatalf("W2 stats %+v: want the failed release not counted as a flush", st)
			}
			tombstoneHolds(t, c, l.entryKey, t2)
			readVia(t, fl, l, d, 3, true) // still protected: no fill of anything
			tombstoneHolds(t, c, l.entryKey, t2)
			advance(clk, testMarkerTTL+time.Second)
			wantState(t, c, l.entryKey, stateAbsent)
			readVia(t, fl, l, d, 3, true)
			readVia(t, fl, l, d, 3, false)
		})
	}
}

// A writer whose release does not reach the cache at first retries in the
// background.
func TestFlushReleaseRetries(t *testing.T) {
	c := NewMemoryCache(0)
	fc := &faultCache{Cache: c}
	f, stats := newTestFlusher(t, fc)
	s := keySet("k")
	tok := newToken()
	if err := f.protect(context.Background(), tok, s); err != nil {
		t.Fatal(err)
	}
	fc.fail.Store(true)
	f.release(context.Background(), tok, s, true)
	tombstoneHolds(t, c, "k", tok)
	time.Sleep(50 * time.Millisecond)
	fc.fail.Store(false)
	deadline := time.Now().Add(3 * time.Second)
	for st, _ := stateOf(getItem(t, c, "k")); st != stateCleared; st, _ = stateOf(getItem(t, c, "k")) {
		if time.Now().After(deadline) {
			t.Fatalf("release not retried: %q", itemValue(getItem(t, c, "k")))
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.close()
	if st := stats.snapshot(); st.ReleaseRetries == 0 || st.Flushes != 1 {
		t.Fatalf("stats %+v: want retries and one flush", st)
	}
}

// §3 interleaving 3: two writers bumping one table.
func TestFlushTwoWritersOneTable(t *testing.T) {
	for _, w2Fails := range []bool{false, true} {
		t.Run(fmt.Sprintf("w2ReleaseFails=%v", w2Fails), func(t *testing.T) {
			c, clk := clockedMemory()
			fc2 := &faultCache{Cache: c}
			f1, _ := newTestFlusher(t, c)
			f2, _ := newTestFlusher(t, fc2)
			table, gens := flushTable("", "t")
			l := testLookup("", "1", gens)
			fl, _ := newTestFiller(c, nil)
			d := &db{}
			d.v.Store(1)
			readVia(t, fl, l, d, 1, true)
			readVia(t, fl, l, d, 1, false) // an entry of the first generation
			gen0 := shardGens(t, c, gens)

			s := newFlushSet()
			s.addTable(table, gens)
			t1, t2 := newToken(), newToken()
			if err := f1.protect(context.Background(), t1, s); err != nil {
				t.Fatal(err)
			}
			if err := f2.protect(context.Background(), t2, s); err != nil {
				t.Fatal(err)
			}
			d.v.Store(2) // W1 commits (a row the flush cannot name)
			f1.release(context.Background(), t1, s, true)
			for i, g := range shardGens(t, c, gens) {
				if g != "" {
					t.Fatalf("shard %d: generation %q set while W2 is in flight", i, g)
				}
			}
			readVia(t, fl, l, d, 2, true)
			readVia(t, fl, l, d, 2, true) // nothing filled

			d.v.Store(3) // W2 commits
			fc2.fail.Store(w2Fails)
			f2.release(context.Background(), t2, s, true)
			if w2Fails {
				f2.close()
				readVia(t, fl, l, d, 3, true) // still changing
				advance(clk, testMarkerTTL+time.Second)
			}
			readVia(t, fl, l, d, 3, true) // a new generation: the old entry is never served
			readVia(t, fl, l, d, 3, false)
			for i, g := range shardGens(t, c, gens) {
				if i == bucketOf(l.entryKey, len(gens)) && (g == "" || g == gen0[i]) {
					t.Fatalf("shard %d: generation %q, was %q", i, g, gen0[i])
				}
			}
		})
	}
}

// A rolled-back bump restores the generation; one that shared its mark
// with a committed writer does not.
func TestFlushTableRollback(t *testing.T) {
	c := NewMemoryCache(0)
	f, _ := newTestFlusher(t, c)
	table, gens := flushTable("", "t")
	l := testLookup("", "1", gens)
	fl, _ := newTestFiller(c, nil)
	d := &db{}
	d.v.Store(1)
	readVia(t, fl, l, d, 1, true)
	gen0 := shardGens(t, c, gens)
	s := newFlushSet()
	s.addTable(table, gens)
	tok := newToken()
	if err := f.protect(context.Background(), tok, s); err != nil {
		t.Fatal(err)
	}
	f.release(context.Background(), tok, s, false)
	if got := shardGens(t, c, gens); !reflect.DeepEqual(got[bucketOf(l.entryKey, genBuckets)], gen0[bucketOf(l.entryKey, genBuckets)]) {
		t.Fatalf("rolled back: generations %q, want %q", got, gen0)
	}
	readVia(t, fl, l, d, 1, false) // still served

	// W1 committed, but its mark was lost (evicted) and a reader restarted
	// the generation and filled a row read before W1's commit; W2 then
	// marked the table and rolls back: the generation must still change.
	t1, t2 := newToken(), newToken()
	if err := f.protect(context.Background(), t1, s); err != nil {
		t.Fatal(err)
	}
	for _, k := range gens {
		c.Delete(context.Background(), k)
	}
	c.Delete(context.Background(), l.entryKey)
	readVia(t, fl, l, d, 1, true) // pre-commit row, filled under a new generation
	readVia(t, fl, l, d, 1, false)
	g1 := shardGens(t, c, gens)[bucketOf(l.entryKey, genBuckets)]
	if err := f.protect(context.Background(), t2, s); err != nil {
		t.Fatal(err)
	}
	d.v.Store(2)
	f.release(context.Background(), t1, s, true)  // commits: marks W2's mark dirty
	f.release(context.Background(), t2, s, false) // rolls back
	if g := shardGens(t, c, gens)[bucketOf(l.entryKey, genBuckets)]; g == "" || g == g1 {
		t.Fatalf("generation %q after a dirty rollback, was %q", g, g1)
	}
	readVia(t, fl, l, d, 2, true)
}

// A reader's lease replaced by a tombstone: its cas fails.
func TestFlushReplacesLease(t *testing.T) {
	c := NewMemoryCache(0)
	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fl, fstats := newTestFiller(c, &fillHooks{beforeCas: func(string) {
		once.Do(func() { close(paused); <-resume })
	}})
	_, gens := flushTable("", "t")
	l := testLookup("", "1", gens)
	d := &db{}
	d.v.Store(1)
	done := make(chan int64)
	go func() {
		r, err := fl.read(context.Background(), l, d.query)
		if err != nil {
			t.Error(err)
			done <- -1
			return
		}
		done <- resultInt(t, r)
	}()
	<-paused // the reader holds a lease and has read 1
	f, _ := newTestFlusher(t, c)
	s := keySet(l.entryKey)
	tok := newToken()
	if err := f.protect(context.Background(), tok, s); err != nil {
		t.Fatal(err)
	}
	d.v.Store(2)
	close(resume)
	if got := <-done; got != 1 {
		t.Fatalf("reader got %d, want 1 (it read before the write)", got)
	}
	if n := fstats.fillRacesLost.Load(); n != 1 {
		t.Fatalf("fillRacesLost %d, want 1", n)
	}
	tombstoneHolds(t, c, l.entryKey, tok)
	f.release(context.Background(), tok, s, true)
	readVia(t, fl, l, d, 2, true)
	readVia(t, fl, l, d, 2, false)
}

// A writer whose tombstone was lost (evicted) before COMMIT clears the
// lease or entry it finds at release: it may hold a row read before COMMIT.
func TestFlushLostTombstone(t *testing.T) {
	c := NewMemoryCache(0)
	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fl, fstats := newTestFiller(c, &fillHooks{beforeCas: func(string) {
		once.Do(func() { close(paused); <-resume })
	}})
	_, gens := flushTable("", "t")
	l := testLookup("", "1", gens)
	d := &db{}
	d.v.Store(1)
	f, _ := newTestFlusher(t, c)
	s := keySet(l.entryKey)
	tok := newToken()
	if err := f.protect(context.Background(), tok, s); err != nil {
		t.Fatal(err)
	}
	c.Delete(context.Background(), l.entryKey) // evicted
	done := make(chan struct{})
	go func() {
		defer close(done)
		fl.read(context.Background(), l, d.query)
	}()
	<-paused // a lease, and the row from before COMMIT
	d.v.Store(2)
	f.release(context.Background(), tok, s, true)
	wantState(t, c, l.entryKey, stateCleared)
	close(resume)
	<-done
	if n := fstats.fillRacesLost.Load(); n != 1 {
		t.Fatalf("fillRacesLost %d, want 1", n)
	}
	readVia(t, fl, l, d, 2, true)

	// The same with an entry filled in the gap.
	tok = newToken()
	if err := f.protect(context.Background(), tok, s); err != nil {
		t.Fatal(err)
	}
	c.Delete(context.Background(), l.entryKey)
	readVia(t, fl, l, d, 2, true) // filled with 2, before the commit of 3
	d.v.Store(3)
	f.release(context.Background(), tok, s, true)
	readVia(t, fl, l, d, 3, true)
}

// G8: a cache that is down makes protect fail fast with
// ErrFlushUnavailable naming the keys, and undo what it recorded.
func TestFlushCacheDown(t *testing.T) {
	srv := fakememcache.Start(t)
	c := Memcache(memcache.New(srv.Addr()))
	table, gens := flushTable("", "orders")
	s := keySet("users-key-1")
	s.addTable(table, gens)

	for _, mode := range []string{"refused", "blackhole", "breaker"} {
		t.Run(mode, func(t *testing.T) {
			var f *flusher
			switch mode {
			case "refused":
				f, _ = newTestFlusher(t, c)
				if err := srv.Refuse(true); err != nil {
					t.Fatal(err)
				}
				defer srv.Refuse(false)
			case "blackhole":
				f, _ = newTestFlusher(t, c)
				srv.SetFaults(fakememcache.Faults{BlackHole: true})
				defer srv.SetFaults(fakememcache.Faults{})
			case "breaker":
				f, _ = newTestFlusher(t, c)
				srv.SetFaults(fakememcache.Faults{ServerError: true})
				defer srv.SetFaults(fakememcache.Faults{})
				for range breakerThreshold {
					f.protect(context.Background(), newToken(), s)
				}
			}
			start := time.Now()
			err := f.protect(context.Background(), newToken(), s)
			elapsed := time.Since(start)
			if !errors.Is(err, ErrFlushUnavailable) {
				t.Fatalf("protect: %v, want ErrFlushUnavailable", err)
			}
			if !strings.Contains(err.Error(), "users-key-1") || !strings.Contains(err.Error(), "orders") {
				t.Fatalf("error %q does not name the key and the table", err)
			}
			if !strings.HasPrefix(err.Error(), "cachedsql: ") {
				t.Fatalf("error %q", err)
			}
			limit := 600 * time.Millisecond // FlushTimeout is 500ms
			if mode == "breaker" {
				limit = 20 * time.Millisecond
			}
			if elapsed > limit {
				t.Fatalf("protect took %v, want under %v", elapsed, limit)
			}
			if f.stats.flushFailures.Load() == 0 {
				t.Fatal("FlushFailures not counted")
			}
		})
	}
}

// A partial protect failure releases what was protected.
func TestFlushPartialProtect(t *testing.T) {
	c := NewMemoryCache(0)
	// A key holding a tombstone of maxTombstoneTokens writers cannot be
	// protected: the other keys must be released again.
	full := make([]token, maxTombstoneTokens)
	for i := range full {
		full[i] = newToken()
	}
	c.Set(context.Background(), &Item{Key: "full", Value: tombstoneSetValue(full), TTL: time.Minute})
	f, _ := newTestFlusher(t, c)
	s := keySet("a", "b", "full")
	err := f.protect(context.Background(), newToken(), s)
	if !errors.Is(err, ErrFlushUnavailable) {
		t.Fatalf("protect: %v", err)
	}
	f.bg.Wait() // the undo runs in the background
	for _, k := range []string{"a", "b"} {
		if st, _ := stateOf(getItem(t, c, k)); st == stateTombstone {
			t.Fatalf("%s: tombstone left behind", k)
		}
	}
	if ts, _ := tombstoneTokens(getItem(t, c, "full")); len(ts) != maxTombstoneTokens {
		t.Fatalf("full: %d writers, want the %d untouched", len(ts), maxTombstoneTokens)
	}
}

func TestFlushNowAndBypass(t *testing.T) {
	c := NewMemoryCache(0)
	f, stats := newTestFlusher(t, c)
	_, gens := flushTable("", "t")
	l := testLookup("", "1", gens)
	fl, _ := newTestFiller(c, nil)
	d := &db{}
	d.v.Store(1)
	readVia(t, fl, l, d, 1, true)
	d.v.Store(2) // written outside cachedsql
	if err := f.flushNow(context.Background(), keySet(l.entryKey)); err != nil {
		t.Fatal(err)
	}
	readVia(t, fl, l, d, 2, true)
	if stats.flushes.Load() != 1 {
		t.Fatalf("Flushes %d", stats.flushes.Load())
	}

	if f.bypassed("public.t") {
		t.Fatal("bypassed before bypassLocally")
	}
	f.bypassLocally([]string{"public.t"})
	if !f.bypassed("public.t") || f.bypassed("public.u") {
		t.Fatal("bypassLocally")
	}
	f.bypass.Store("public.t", time.Now().Add(-time.Second).UnixNano())
	if f.bypassed("public.t") {
		t.Fatal("bypass did not end")
	}
}

func TestFlushConfig(t *testing.T) {
	for _, c := range []Config{{MarkerTTL: time.Second}, {MarkerTTL: -time.Second}, {FlushTimeout: -1}, {MarkerTTL: MaxTTL + time.Second}} {
		if _, err := c.validated(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
	var c Config
	if c.flushTimeout() != DefaultFlushTimeout || c.markerTTL() != DefaultMarkerTTL {
		t.Fatal("defaults")
	}
}

func TestMarkerEncodings(t *testing.T) {
	a, b := newToken(), newToken()
	it := &Item{Value: tombstoneSetValue([]token{a, b})}
	if st, first := stateOf(it); st != stateTombstone || first != a {
		t.Fatal("tombstone set")
	}
	if ts, ok := tombstoneTokens(it); !ok || len(ts) != 2 || ts[1] != b {
		t.Fatal("tombstone tokens")
	}
	if st, _ := stateOf(&Item{Value: clearedValue()}); st != stateCleared {
		t.Fatal("cleared")
	}
	if st, _ := stateOf(&Item{Value: []byte("\x00T123")}); st != stateValue {
		t.Fatal("short tombstone is garbage")
	}
	m := genMark{dirty: true, gen: "abc", writers: []token{a, b}}
	got, ok := parseGenMark(&Item{Value: m.value()})
	if !ok || !reflect.DeepEqual(got, m) {
		t.Fatalf("gen mark %+v", got)
	}
	if _, ok := parseGen(&Item{Value: m.value()}); ok {
		t.Fatal("an in-flight mark reads as a generation")
	}
	for _, bad := range []string{"F", "Fx", "Fcabc", "Fcabc\x00", "Fc\x00" + string(a[:]), "Fcabc\x00123"} {
		if _, ok := parseGenMark(&Item{Value: []byte(bad)}); ok {
			t.Errorf("%q parsed as a mark", bad)
		}
	}
}

// TestFlushHistory is a small history checker for G4: writers and readers
// race on a few keys through the real protocol against one memory cache;
// no read may return a version older than the last write acknowledged
// before it started. Some writers' releases never reach the cache (the
// markers must then expire), and the cache's clock jumps ahead all the
// time, so markers, leases and entries expire mid-protocol; but never
// between a writer's protect and its commit (the one window MarkerTTL must
// cover, documented).
func TestFlushHistory(t *testing.T) {
	const (
		writers, readers    = 20, 20
		keys                = 5
		writesPer, readsPer = 15, 60
	)
	c, clk := clockedMemory()
	table, gens := flushTable("", "t")
	lookups := make([]*lookup, keys)
	for i := range lookups {
		lookups[i] = testLookup("", fmt.Sprint(i), gens)
	}
	var (
		mu    sync.Mutex // protects ver and acked: the "database"
		ver   [keys]int64
		acked [keys]int64
		// inFlight is held (read side) by each writer from its protect to
		// its commit; the clock only jumps under the write side.
		inFlight sync.RWMutex
	)
	jitter := func() {
		if mrand.IntN(3) == 0 {
			time.Sleep(time.Duration(mrand.IntN(300)) * time.Microsecond)
		}
	}
	stop := make(chan struct{})
	var clockDone sync.WaitGroup
	clockDone.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			inFlight.Lock()
			advance(clk, time.Second)
			inFlight.Unlock()
		}
	})
	// Generous budgets: this checks correctness, not latency, on a loaded
	// machine under -race.
	f, stats := newTestFlusherTimeouts(t, c, 5*time.Second, 10*time.Second)
	var failures, skipped atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range writesPer {
				time.Sleep(time.Duration(mrand.IntN(3000)) * time.Microsecond)
				k := mrand.IntN(keys)
				s := newFlushSet()
				if mrand.IntN(10) == 0 {
					s.addTable(table, gens) // a write whose keys are unknown
				} else {
					s.addKey(lookups[k].entryKey)
				}
				tok := newToken()
				inFlight.RLock()
				if err := f.protect(context.Background(), tok, s); err != nil {
					inFlight.RUnlock()
					failures.Add(1) // rolled back: the database is unchanged
					continue
				}
				jitter()
				mu.Lock()
				ver[k]++
				v := ver[k]
				mu.Unlock()
				inFlight.RUnlock()
				jitter()
				if mrand.IntN(10) == 0 {
					skipped.Add(1) // the release never reaches the cache
				} else {
					f.release(context.Background(), tok, s, true)
				}
				mu.Lock()
				acked[k] = max(acked[k], v)
				mu.Unlock()
			}
		})
	}
	var hits, fills atomic.Uint64
	for range readers {
		fl, st := newTestFiller(c, nil)
		wg.Go(func() {
			for range readsPer {
				time.Sleep(time.Duration(mrand.IntN(1000)) * time.Microsecond)
				k := mrand.IntN(keys)
				mu.Lock()
				floor := acked[k]
				mu.Unlock()
				r, err := fl.read(context.Background(), lookups[k], func(context.Context) (*result, error) {
					jitter()
					mu.Lock()
					v := ver[k]
					mu.Unlock()
					jitter()
					return intResult(v), nil
				})
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				if got := r.values[0][0].(int64); got < floor {
					t.Errorf("key %d: read version %d after version %d was acknowledged", k, got, floor)
				}
			}
			hits.Add(st.hits.Load())
			fills.Add(st.fills.Load())
		})
	}
	wg.Wait()
	close(stop)
	clockDone.Wait()
	f.close()
	if n := failures.Load(); n > writers*writesPer/10 {
		t.Errorf("%d of %d protects failed", n, writers*writesPer)
	}
	t.Logf("protect failures %d, releases skipped %d, flushes %d, bumps %d, fills %d, hits %d",
		failures.Load(), skipped.Load(), stats.flushes.Load(), stats.tableBumps.Load(), fills.Load(), hits.Load())
}
