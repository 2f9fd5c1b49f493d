package bench

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachedsql/cachedsql"
)

func sqlOpenDB(c driver.Connector) *sql.DB { return sql.OpenDB(c) }

// Memory is the in-process cache's footprint.
type Memory struct {
	Rows             int     `json:"rows"`
	RawRowBytes      float64 `json:"raw_row_bytes"`
	EntryValueBytes  float64 `json:"entry_value_bytes"`
	EntryKeyBytes    float64 `json:"entry_key_bytes"`
	HeapBytesPerRow  float64 `json:"heap_bytes_per_cached_row"`
	Bound            int64   `json:"bound_bytes"`
	KeysRead         int     `json:"keys_read"`
	FitAtBound       int     `json:"rows_that_fit"`
	EntriesHeld      int     `json:"entries_held"`
	AccountedHeld    int64   `json:"accounted_bytes_held"`
	HeapUnderBound   int64   `json:"heap_growth_under_pressure"`
	WithinByteBound  bool    `json:"within_bound"`
	HeapOverBoundPct float64 `json:"heap_over_bound_pct"`
}

func (m *Memory) String() string {
	return fmt.Sprintf("%d rows of %.0f raw bytes: entry value %.0f B + key %.0f B; %.0f heap bytes per cached row (%.2fx raw). "+
		"Bound %d B (%d rows fit), %d distinct keys read twice: %d entries held, %d B accounted (within bound: %v), heap growth %d B (%+.0f%% vs bound)",
		m.Rows, m.RawRowBytes, m.EntryValueBytes, m.EntryKeyBytes, m.HeapBytesPerRow, m.HeapBytesPerRow/m.RawRowBytes,
		m.Bound, m.FitAtBound, m.KeysRead, m.EntriesHeld, m.AccountedHeld, m.WithinByteBound, m.HeapUnderBound, m.HeapOverBoundPct)
}

func heap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// readAll looks ids 1..n up once each through db, 8 at a time.
func (e *Env) readAll(ctx context.Context, db *sql.DB, n int) error {
	var idx atomic.Int64
	c := &Contender{Name: "read all", maxOps: n, newWorker: func() opFunc {
		var u User
		return func(ctx context.Context, id int) error { return scanUser(db.QueryRowContext(ctx, e.byID, id), &u, id) }
	}}
	_, err := runSlice(ctx, c, 8, time.Hour, func() keyGen {
		return func(*rand.Rand) int { return 1 + int(idx.Add(1)-1)%n }
	}, 1)
	return err
}

// shardingMaxRows is the largest table the sharding section runs on: it
// opens a second environment, which warms every row again.
const shardingMaxRows = 100_000

// memoryRows caps the rows the memory section reads: it reads them three
// times, the last two as misses, and what it measures does not depend on
// the table's size.
const memoryRows = 100_000

func (e *Env) memory(ctx context.Context) (*Memory, error) {
	e.size(nil, 8)
	rows := min(e.Cfg.Rows, memoryRows)
	m := &Memory{Rows: rows}
	for id := 1; id <= rows; id++ {
		m.RawRowBytes += float64(rawRowSize(id))
	}
	m.RawRowBytes /= float64(rows)
	ns := fmt.Sprintf("mem-%d", time.Now().UnixNano())
	open := func(c cachedsql.Cache) (*sql.DB, error) {
		cn, err := cachedsql.NewConnector(e.cachedConnBase, cachedsql.Config{Rules: e.rules, Cache: c, Namespace: ns,
			CacheTimeout: e.cacheTimeout, LeaseWait: e.leaseWait})
		if err != nil {
			return nil, err
		}
		db := e.track(sql.OpenDB(cn))
		db.SetMaxOpenConns(8)
		db.SetMaxIdleConns(8)
		// Open the pool's connections before measuring the heap.
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				var u User
				errs <- scanUser(db.QueryRowContext(cachedsql.NoCache(ctx), e.byID, 1), &u, 1)
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				return nil, err
			}
		}
		return db, nil
	}

	// Everything fits: what one cached row costs.
	big := cachedsql.NewMemoryCache(1 << 30)
	rec := newRecorder(big)
	rec.on.Store(false)
	db, err := open(rec)
	if err != nil {
		return nil, err
	}
	h0 := heap()
	if err := e.readAll(ctx, db, rows); err != nil {
		return nil, err
	}
	m.HeapBytesPerRow = float64(heap()-h0) / float64(rows)
	rec.on.Store(true)
	if err := e.readAll(ctx, db, rows); err != nil {
		return nil, err
	}
	rec.on.Store(false)
	var keys []string
	for k := range rec.pairs {
		keys = append(keys, k)
	}
	items, err := big.GetMulti(ctx, keys)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		m.EntryValueBytes += float64(len(it.Value))
		m.EntryKeyBytes += float64(len(it.Key))
	}
	m.EntryValueBytes /= float64(max(len(items), 1))
	m.EntryKeyBytes /= float64(max(len(items), 1))
	db.Close()

	// Ten times more keys than fit.
	const overhead = 64 // the cache's accounted per-item overhead
	cost := m.EntryValueBytes + m.EntryKeyBytes + overhead
	m.FitAtBound = rows / 10
	m.Bound = int64(cost * float64(m.FitAtBound))
	small := cachedsql.NewMemoryCache(m.Bound)
	db, err = open(small)
	if err != nil {
		return nil, err
	}
	h0 = heap()
	for range 2 {
		if err := e.readAll(ctx, db, rows); err != nil {
			return nil, err
		}
	}
	m.KeysRead = rows
	m.HeapUnderBound = heap() - h0
	m.HeapOverBoundPct = 100 * (float64(m.HeapUnderBound)/float64(m.Bound) - 1)
	held, err := small.GetMulti(ctx, keys)
	if err != nil {
		return nil, err
	}
	m.EntriesHeld = len(held)
	for _, it := range held {
		m.AccountedHeld += int64(len(it.Key) + len(it.Value) + overhead)
	}
	m.WithinByteBound = m.AccountedHeld <= m.Bound
	db.Close()
	return m, nil
}

// Sharding is how lookups spread over cache items and servers.
type Sharding struct {
	Servers         []string         `json:"servers"`
	Lookups         int              `json:"lookups"`
	GenKeys         int              `json:"generation_items"`
	MaxGenShare     float64          `json:"max_generation_item_share"`
	MaxItemShare    float64          `json:"max_item_share"`
	ReadsPerServer  map[string]int64 `json:"reads_per_server"`
	DistinctEntries int              `json:"entry_items"`
}

func (s *Sharding) String() string {
	return fmt.Sprintf("%d lookups over %v: %d generation items, the most read one read by %.1f%% of lookups; the most read item of all by %.1f%%; item reads per server %v",
		s.Lookups, s.Servers, s.GenKeys, 100*s.MaxGenShare, 100*s.MaxItemShare, s.ReadsPerServer)
}

// sharding opens a second environment on the two-instance server list (or
// the same one), reads how the warm-up's lookups spread over items and
// servers, and, with two instances, measures the hit path there.
func (e *Env) sharding(ctx context.Context, cfg Config, progress func(string)) (*Sharding, []*Row, []Ratio, error) {
	c2 := cfg
	if cfg.Memcache2 != "" {
		c2.Memcache = cfg.Memcache2
	}
	e2, err := Open(ctx, c2)
	if err != nil {
		return nil, nil, nil, err
	}
	defer e2.Close()
	sh := &Sharding{Servers: e2.servers, Lookups: 2 * cfg.Rows, ReadsPerServer: map[string]int64{}}
	var ss memcache.ServerList
	if err := ss.SetServers(e2.servers...); err != nil {
		return nil, nil, nil, err
	}
	rec := e2.rec
	rec.mu.Lock()
	gens := map[string]bool{}
	for _, g := range rec.pairs {
		gens[g] = true
	}
	for k, n := range rec.reads {
		share := float64(n) / float64(sh.Lookups)
		if gens[k] {
			sh.GenKeys++
			sh.MaxGenShare = max(sh.MaxGenShare, share)
		} else {
			sh.DistinctEntries++
		}
		sh.MaxItemShare = max(sh.MaxItemShare, share)
		if a, err := ss.PickServer(k); err == nil {
			sh.ReadsPerServer[a.String()] += int64(n)
		}
	}
	rec.mu.Unlock()
	if cfg.Memcache2 == "" {
		return sh, nil, nil, nil
	}
	rows, err := measure(ctx, cfg, "pk uniform, "+fmt.Sprint(len(e2.servers))+" memcached", e2.contenders(false, "a", "b", "c", "c2", "d"), 8, uniform(cfg.Rows), progress)
	if err != nil {
		return nil, nil, nil, err
	}
	var ratios []Ratio
	for _, x := range mainRatios(rows) {
		x.Name = strings.Replace(x.Name, " ", " (2 memcached) ", 1)
		ratios = append(ratios, x)
	}
	return sh, rows, ratios, nil
}

func pct(x float64) string { return fmt.Sprintf("%.3f", x) }

// targets checks issue 8's targets against the report.
func targets(r *Report, pg bool) []Target {
	var out []Target
	get := func(prefix string, conc int) (Ratio, bool) {
		for _, x := range r.Ratios {
			if strings.HasPrefix(x.Name, prefix) && x.Conc == conc {
				return x, true
			}
		}
		return Ratio{}, false
	}
	row := func(workload, prefix string, conc int) *Row {
		for _, x := range r.Rows {
			if x.Workload == workload && x.Conc == conc && strings.HasPrefix(x.Contender, prefix+" ") {
				return x
			}
		}
		return nil
	}
	for _, conc := range []int{8, 64} {
		if x, ok := get("b/c hit", conc); ok {
			note := ""
			if f, ok := get("b/c3", conc); ok {
				note = "vs the floor through database/sql b/c3 " + pct(f.Median)
			}
			out = append(out, Target{Name: fmt.Sprintf("hit vs floor b/c, conc %d", conc), Target: "<= 1.15", Measured: pct(x.Median), Met: x.Median <= 1.15, Note: note})
		}
	}
	if x, ok := get("a/b", 8); ok {
		note := ""
		if f, ok := get("a/c", 8); ok {
			note = "floor's own a/c " + pct(f.Median)
		}
		out = append(out, Target{Name: "hit vs plain pgx a/b, conc 8", Target: ">= 1.4", Measured: pct(x.Median), Met: x.Median >= 1.4, Note: note})
	}
	for _, conc := range []int{1, 8, 64} {
		if x, ok := get("b/d", conc); ok {
			out = append(out, Target{Name: fmt.Sprintf("hit vs hand-written b/d, conc %d", conc), Target: "<= 1.10", Measured: pct(x.Median), Met: x.Median <= 1.10})
		}
	}
	for _, conc := range []int{1, 8, 64} {
		if x, ok := get("f pass", conc); ok {
			out = append(out, Target{Name: fmt.Sprintf("pass-through ns/op, conc %d", conc), Target: "<= +3%", Measured: fmt.Sprintf("%+.1f%% [%+.1f%%, %+.1f%%]", 100*(x.Median-1), 100*(x.Min-1), 100*(x.Max-1)), Met: x.Median <= 1.03})
		}
	}
	var passPlain, passCached, hitSQL, hitBackground float64 = -1, -1, -1, -1
	for _, d := range r.DriverOps {
		switch {
		case strings.HasPrefix(d.Name, "driver level: pass-through, wrapped"):
			passPlain = d.AllocsOp
		case strings.HasPrefix(d.Name, "driver level: pass-through through"):
			passCached = d.AllocsOp
		case strings.HasPrefix(d.Name, "hit through database/sql, context.Background"):
			hitBackground = d.AllocsOp
		case strings.HasPrefix(d.Name, "hit through database/sql"):
			hitSQL = d.AllocsOp
		}
	}
	if passPlain >= 0 && passCached >= 0 {
		extra := passCached - passPlain
		out = append(out, Target{Name: "pass-through extra allocs (driver level, serial)", Target: "<= 2", Measured: fmt.Sprintf("%+.1f", extra), Met: extra <= 2.05})
		out = append(out, Target{Name: "plan-cache lookup allocs", Target: "0", Measured: fmt.Sprintf("<= %.1f", max(extra, 0)), Met: extra < 0.05,
			Note: "upper bound: the whole pass-through route (plan lookup, stats, dispatch) beyond the wrapped driver"})
	}
	if a, b := row("pk uniform", "f plain", 8), row("pk uniform", "f cachedsql", 8); a != nil && b != nil {
		out = append(out, Target{Name: "pass-through extra allocs (database/sql, conc 8)", Target: "<= 2", Measured: fmt.Sprintf("%+.1f", b.AllocsOp-a.AllocsOp), Met: b.AllocsOp-a.AllocsOp <= 2.05})
	}
	if hitBackground >= 0 {
		out = append(out, Target{Name: "allocs per cached hit through database/sql (serial)", Target: "<= 20", Measured: fmt.Sprintf("%.1f", hitBackground), Met: hitBackground <= 20,
			Note: "context.Background()"})
	}
	if hitSQL >= 0 {
		out = append(out, Target{Name: "the same under a cancellable context", Target: "<= 20", Measured: fmt.Sprintf("%.1f", hitSQL), Met: hitSQL <= 20,
			Note: "database/sql's context watch adds its own allocations"})
	}
	if p := r.Prepared; p != nil {
		out = append(out, Target{Name: "prepared-statement hit: database round trips", Target: "0", Measured: fmt.Sprintf("%d in %d hits", p.DatabaseTrips, p.Lookups), Met: p.DatabaseTrips == 0})
	}
	for _, o := range r.Offload {
		if strings.HasPrefix(o.Name, "cachedsql") {
			out = append(out, Target{Name: "95/5 mix: reads never reaching the database", Target: ">= 90%", Measured: fmt.Sprintf("%.1f%%", 100*o.ReadsOffload), Met: o.ReadsOffload >= 0.9})
		}
	}
	if m := r.Memory; m != nil {
		out = append(out, Target{Name: "in-process cache within its byte bound (10x keys)", Target: "accounted <= bound", Measured: fmt.Sprintf("%d / %d B accounted; heap %+.0f%% vs bound", m.AccountedHeld, m.Bound, m.HeapOverBoundPct), Met: m.WithinByteBound})
	}
	if s := r.Sharding; s != nil {
		out = append(out, Target{Name: "no item read by every lookup (generation sharding)", Target: "max share < 100%", Measured: fmt.Sprintf("gen %.1f%%, any item %.1f%%", 100*s.MaxGenShare, 100*s.MaxItemShare), Met: s.MaxItemShare < 0.5})
	}
	out = append(out, scaleTargets(r)...)
	return out
}
