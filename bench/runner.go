package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Config says what to measure. The zero value measures the embedded
// default: SQLite and the in-process cache.
type Config struct {
	DSN       string        // PostgreSQL; "" for the embedded SQLite database
	Memcache  string        // memcached servers, host:port[,host:port]; PostgreSQL mode only
	Memcache2 string        // a second server list (two instances) for the sharding section; optional
	Rows      int           // rows in the table (default 10,000)
	Conc      []int         // concurrency levels (default 1, 8, 64)
	Duration  time.Duration // one contender's slice of one round (default 1s)
	Rounds    int           // rounds; contenders interleave within each (default 5)
	Quick     bool          // main table only: no workloads, offload, cold start or memory sections
	// MaxDBConns caps each database/sql pool (default 16): PostgreSQL's
	// max_connections is shared, and a pool at conc 64 per contender would
	// exceed it. Only the running contender's pool keeps idle connections.
	MaxDBConns int
	// Table is the benchmark table's name (default Table). A run reuses
	// a table that holds Rows rows and recreates it otherwise, so runs
	// side by side on one database need a table each.
	Table string
}

func (c Config) withDefaults() Config {
	if c.Rows <= 0 {
		c.Rows = 10_000
	}
	if len(c.Conc) == 0 {
		c.Conc = []int{1, 8, 64}
	}
	if c.Duration <= 0 {
		c.Duration = time.Second
	}
	if c.Table == "" {
		c.Table = Table
	}
	if c.MaxDBConns <= 0 {
		c.MaxDBConns = 16
	}
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if c.DSN != "" && c.Memcache == "" {
		c.Memcache = "127.0.0.1:11211"
	}
	return c
}

// opFunc is one operation of one worker: look up id.
type opFunc func(ctx context.Context, id int) error

// Contender is one way of getting a row.
type Contender struct {
	Name string
	Desc string
	// newWorker returns one worker's operation; each worker runs in its own
	// goroutine.
	newWorker func() opFunc
	// maxOps caps the operations of one slice (contenders that would
	// otherwise dial thousands of connections a second).
	maxOps int
	// setup sizes pools for a concurrency level.
	setup func(conc int)
	// keys, if not nil, draws this contender's ids instead of the
	// workload's generator: contenders measured together on different key
	// ranges (the scale section).
	keys func() keyGen
}

// Row is one contender at one concurrency level: medians over rounds.
type Row struct {
	Workload  string  `json:"workload"`
	Contender string  `json:"contender"`
	Conc      int     `json:"conc"`
	NsPerOp   float64 `json:"ns_per_op"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_ns"`
	P99       float64 `json:"p99_ns"`
	AllocsOp  float64 `json:"allocs_per_op"`
	BytesOp   float64 `json:"bytes_per_op"`
	Ops       int64   `json:"ops"`

	rounds []sliceResult
}

// Ratio is a ratio of two contenders' ns/op, computed round by round.
type Ratio struct {
	Name    string  `json:"name"`
	Conc    int     `json:"conc"`
	Median  float64 `json:"median"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	Target  string  `json:"target,omitempty"`
	Met     *bool   `json:"met,omitempty"`
	Comment string  `json:"comment,omitempty"`
}

type sliceResult struct {
	ops     int64
	elapsed time.Duration
	mallocs uint64
	bytes   uint64
	hist    *histogram
}

func (s sliceResult) nsPerOp() float64 {
	return float64(s.elapsed.Nanoseconds()) / float64(max(s.ops, 1))
}

// histogram is a log-linear latency histogram (16 sub-buckets per power of
// two, about 6% resolution) that records without allocating.
type histogram struct{ n [1024]uint64 }

func (h *histogram) record(d time.Duration) {
	ns := uint64(max(d, 0))
	if ns < 16 {
		h.n[ns]++
		return
	}
	l := bits.Len64(ns)
	h.n[(l-4)*16+int(ns>>(l-5)&15)]++
}

func bucketValue(i int) float64 {
	if i < 16 {
		return float64(i)
	}
	l, m := i/16+4, i%16
	return float64(uint64(16+m)<<(l-5)) * (1 + 1.0/32) // the bucket's middle
}

func (h *histogram) add(o *histogram) {
	for i := range h.n {
		h.n[i] += o.n[i]
	}
}

func (h *histogram) quantile(q float64) float64 {
	var total uint64
	for _, c := range h.n {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var seen uint64
	for i, c := range h.n {
		seen += c
		if seen > want {
			return bucketValue(i)
		}
	}
	return bucketValue(len(h.n) - 1)
}

// keyGen draws ids in [1, n].
type keyGen func(r *rand.Rand) int

func uniform(n int) func() keyGen {
	return func() keyGen { return func(r *rand.Rand) int { return 1 + r.IntN(n) } }
}

// zipfian draws ids with Zipf's law, s=1.1; hot ids are spread over the
// key space by a fixed permutation so they do not share a page.
func zipfian(n int) func() keyGen {
	perm := rand.New(rand.NewPCG(7, 7)).Perm(n)
	return func() keyGen {
		var z *rand.Zipf
		return func(r *rand.Rand) int {
			if z == nil {
				z = rand.NewZipf(r, 1.1, 1, uint64(n-1))
			}
			return 1 + perm[z.Uint64()]
		}
	}
}

// runSlice runs c with conc workers for d (or c.maxOps operations).
func runSlice(ctx context.Context, c *Contender, conc int, d time.Duration, gen func() keyGen, seed uint64) (sliceResult, error) {
	if c.keys != nil {
		gen = c.keys
	}
	var stop atomic.Bool
	var opsLeft, errCount, totalOps atomic.Int64
	opsLeft.Store(int64(c.maxOps))
	hists := make([]*histogram, conc)
	counts := make([]int64, conc)
	errs := make([]error, conc)
	ops := make([]opFunc, conc)
	gens := make([]keyGen, conc)
	rngs := make([]*rand.Rand, conc)
	for w := range conc {
		hists[w] = new(histogram)
		ops[w] = c.newWorker()
		gens[w] = gen()
		rngs[w] = rand.New(rand.NewPCG(seed, uint64(w)))
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op, g, r, h := ops[w], gens[w], rngs[w], hists[w]
			<-start
			n := int64(0)
			for !stop.Load() {
				if c.maxOps > 0 && opsLeft.Add(-1) < 0 {
					break
				}
				id := g(r)
				t0 := time.Now()
				if err := op(ctx, id); err != nil {
					// A shared, loaded machine times out now and then: count
					// it; stop only when errors are no longer rare.
					if errCount.Add(1) > 10+totalOps.Load()/100 {
						errs[w] = err
						stop.Store(true)
						break
					}
					continue
				}
				totalOps.Add(1)
				h.record(time.Since(t0))
				n++
			}
			counts[w] = n
		}()
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	close(start)
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	wg.Wait()
	elapsed := time.Since(t0)
	timer.Stop()
	runtime.ReadMemStats(&after)
	if err := errors.Join(errs...); err != nil {
		return sliceResult{}, fmt.Errorf("%s: %w", c.Name, err)
	}
	res := sliceResult{elapsed: elapsed, mallocs: after.Mallocs - before.Mallocs, bytes: after.TotalAlloc - before.TotalAlloc, hist: new(histogram)}
	for w := range conc {
		res.ops += counts[w]
		res.hist.add(hists[w])
	}
	return res, nil
}

// measure interleaves contenders round by round (rotating the order each
// round, so none always runs first) and returns one row per contender.
func measure(ctx context.Context, cfg Config, workload string, cs []*Contender, conc int, gen func() keyGen, progress func(string)) ([]*Row, error) {
	rows := make([]*Row, len(cs))
	for i, c := range cs {
		rows[i] = &Row{Workload: workload, Contender: c.Name, Conc: conc}
		if c.setup != nil {
			c.setup(conc)
		}
		// A short warm-up per contender: pools fill, code paths are hot.
		if _, err := runSlice(ctx, c, conc, cfg.Duration/5, gen, 99); err != nil {
			return nil, err
		}
	}
	for round := range cfg.Rounds {
		for k := range cs {
			i := (k + round) % len(cs)
			if progress != nil {
				progress(fmt.Sprintf("%s conc=%d round %d/%d: %s", workload, conc, round+1, cfg.Rounds, cs[i].Name))
			}
			if cs[i].setup != nil {
				cs[i].setup(conc)
			}
			// Reopen what sizing the previous contender closed, unmeasured.
			if _, err := runSlice(ctx, cs[i], conc, max(cfg.Duration/10, 30*time.Millisecond), gen, 98); err != nil {
				return nil, err
			}
			s, err := runSlice(ctx, cs[i], conc, cfg.Duration, gen, uint64(round))
			if err != nil {
				return nil, err
			}
			rows[i].rounds = append(rows[i].rounds, s)
		}
	}
	for _, r := range rows {
		r.summarize()
	}
	return rows, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *Row) summarize() {
	var ns, allocs, bytes []float64
	h := new(histogram)
	for _, s := range r.rounds {
		ns = append(ns, s.nsPerOp())
		allocs = append(allocs, float64(s.mallocs)/float64(max(s.ops, 1)))
		bytes = append(bytes, float64(s.bytes)/float64(max(s.ops, 1)))
		h.add(s.hist)
		r.Ops += s.ops
	}
	r.NsPerOp = median(ns)
	r.OpsPerSec = 1e9 / r.NsPerOp
	r.AllocsOp = median(allocs)
	r.BytesOp = median(bytes)
	r.P50 = h.quantile(0.50)
	r.P99 = h.quantile(0.99)
}

// ratio of x's ns/op to y's, round by round.
func ratio(name string, x, y *Row) Ratio {
	var rs []float64
	for i := range min(len(x.rounds), len(y.rounds)) {
		rs = append(rs, x.rounds[i].nsPerOp()/y.rounds[i].nsPerOp())
	}
	return Ratio{Name: name, Conc: x.Conc, Median: median(rs), Min: slices.Min(rs), Max: slices.Max(rs)}
}

// contenders builds every contender on e for one workload (by primary key,
// or by email).
func (e *Env) contenders(byEmail bool, which ...string) []*Contender {
	sizeDB := func(db *sql.DB) func(int) {
		return func(conc int) { e.size(db, conc) }
	}
	q := e.byID
	arg := func(id int) any { return id }
	entries := e.entryByID
	if byEmail {
		q = e.byEmail
		arg = func(id int) any { return e.emails[id] }
		entries = e.entryByEmail
	}
	lookup := func(db queryRower, query string) func() opFunc {
		return func() opFunc {
			var u User
			return func(ctx context.Context, id int) error {
				return scanUser(db.QueryRowContext(ctx, query, arg(id)), &u, id)
			}
		}
	}
	all := map[string]*Contender{
		"a": {Name: "a plain pgx", Desc: "database/sql + pgx stdlib", newWorker: lookup(e.plain, q), setup: sizeDB(e.plain)},
		"b": {Name: "b cachedsql hit", Desc: "cachedsql on memcached, every lookup a hit", newWorker: lookup(e.cached, q), setup: sizeDB(e.cached)},
		"f-a": {Name: "f plain pass", Desc: "a non-cacheable query (LIMIT 2) on database/sql + pgx", newWorker: func() opFunc {
			var u User
			return func(ctx context.Context, id int) error {
				return scanUser(e.plain.QueryRowContext(ctx, e.passQ, id), &u, id)
			}
		}, setup: sizeDB(e.plain)},
		"f-b": {Name: "f cachedsql pass", Desc: "the same through cachedsql (passes through)", newWorker: func() opFunc {
			var u User
			return func(ctx context.Context, id int) error {
				return scanUser(e.cached.QueryRowContext(ctx, e.passQ, id), &u, id)
			}
		}, setup: sizeDB(e.cached)},
		"g": {Name: "g cachedsql prepared", Desc: "cachedsql hit through a prepared *sql.Stmt", newWorker: func() opFunc {
			var u User
			return func(ctx context.Context, id int) error {
				return scanUser(e.prepByID.QueryRowContext(ctx, id), &u, id)
			}
		}, setup: sizeDB(e.cached)},
	}
	if !e.pg {
		all["a"].Name, all["a"].Desc = "a plain sqlite", "database/sql + modernc sqlite"
		all["f-a"].Name = "f plain pass"
		all["b"].Name, all["b"].Desc = "e cachedsql in-process hit", "cachedsql on the in-process cache, every lookup a hit"
		all["c"] = &Contender{Name: "c floor (in-process get)", Desc: "Cache.GetMulti of the entry key on the in-process cache", setup: sizeDB(e.plain),
			newWorker: func() opFunc {
				keys := make([]string, 1)
				return func(ctx context.Context, id int) error {
					keys[0] = entries[id]
					items, err := e.memCache.GetMulti(ctx, keys)
					if err == nil && len(items) != 1 {
						err = fmt.Errorf("floor: entry %d missing", id)
					}
					return err
				}
			}}
	} else {
		all["c"] = &Contender{Name: "c floor gomemcache Get", Desc: "gomemcache Get of the entry cachedsql stored (same bytes)", setup: sizeDB(e.plain),
			newWorker: func() opFunc {
				return func(ctx context.Context, id int) error {
					it, err := e.mc.Get(entries[id])
					if err == nil && len(it.Value) == 0 {
						err = errors.New("floor: empty")
					}
					return err
				}
			}}
		all["c2"] = &Contender{Name: "c2 floor GetMulti(entry,gen)", Desc: "gomemcache GetMulti of the entry and its generation shard: the protocol's one read", setup: sizeDB(e.plain),
			newWorker: func() opFunc {
				keys := make([]string, 2)
				return func(ctx context.Context, id int) error {
					keys[0], keys[1] = entries[id], e.genByID[id]
					if byEmail {
						keys = keys[:1]
					}
					its, err := e.mc.GetMulti(keys)
					if err == nil && len(its) != len(keys) {
						err = fmt.Errorf("floor: %d of %d items", len(its), len(keys))
					}
					return err
				}
			}}
		if !byEmail {
			all["c3"] = &Contender{Name: "c3 floor through database/sql", Desc: "database/sql over a driver answering with one gomemcache Get of the entry and a ready-made row",
				newWorker: lookup(e.floorDB, q), setup: sizeDB(e.floorDB)}
		}
		all["d"] = &Contender{Name: "d hand-written aside", Desc: "hand-written cache-aside get(id): gomemcache Get + encoding/json, DB and Set on a miss", setup: sizeDB(e.plain),
			newWorker: func() opFunc {
				a := e.aside()
				var u User
				return func(ctx context.Context, id int) error {
					if byEmail {
						return a.getByEmail(ctx, id, &u)
					}
					return a.getByID(ctx, id, &u)
				}
			}}
		all["e"] = &Contender{Name: "e cachedsql in-process hit", Desc: "cachedsql on the in-process cache", newWorker: lookup(e.cachedMem, q), setup: sizeDB(e.cachedMem)}
		// What the defaults cost: gomemcache keeps 2 idle connections, and
		// so does database/sql; above that every operation dials.
		all["b-def"] = &Contender{Name: "b with default pools", Desc: "cachedsql hit, gomemcache MaxIdleConns and database/sql MaxIdleConns left at 2",
			maxOps: 3000, newWorker: lookup(e.cachedDefaults(), q), setup: func(conc int) {
				e.size(e.defaultsDB, conc)
				e.defaultsDB.SetMaxOpenConns(0) // database/sql's defaults: unlimited open,
				e.defaultsDB.SetMaxIdleConns(2) // 2 idle
				e.mcDefaults.MaxIdleConns = 0   // gomemcache's default: 2 idle
			}}
	}
	var out []*Contender
	for _, w := range which {
		if c, ok := all[w]; ok {
			out = append(out, c)
		}
	}
	return out
}

// Report is the outcome of one run.
type Report struct {
	Machine  Machine   `json:"machine"`
	Config   string    `json:"config"`
	Rows     []*Row    `json:"rows"`
	Ratios   []Ratio   `json:"ratios"`
	Targets  []Target  `json:"targets"`
	Offload  []Offload `json:"offload,omitempty"`
	Cold     []Cold    `json:"cold_start,omitempty"`
	Sharding *Sharding `json:"sharding,omitempty"`
	// ShardingSkipped says why the sharding section did not run.
	ShardingSkipped string     `json:"sharding_skipped,omitempty"`
	Scale           *Scale     `json:"scale,omitempty"`
	FlushCost       *FlushCost `json:"flush_cost,omitempty"`
	Memory          *Memory    `json:"memory,omitempty"`
	Prepared        *Prepared  `json:"prepared,omitempty"`
	DriverOps       []DriverOp `json:"driver_level,omitempty"`
	Elapsed         string     `json:"elapsed"`
	// Failed is the error that stopped the run early, if one did.
	Failed string `json:"failed,omitempty"`
}

// Target is one of issue 8's targets, measured.
type Target struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	Note     string `json:"note,omitempty"`
}

// JSON encodes r.
func (r *Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// memcacheClient builds a client sized for conc.
func memcacheClient(servers []string, conc int) *memcache.Client {
	c := memcache.New(servers...)
	c.MaxIdleConns = conc
	c.Timeout = time.Second
	return c
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 1)) }

// size gives db a pool for conc workers (capped by MaxDBConns) and closes
// the idle connections of every other pool; memcached clients keep conc idle
// connections.
func (e *Env) size(db *sql.DB, conc int) {
	for _, o := range []*sql.DB{e.plain, e.cached, e.cachedMem, e.defaultsDB, e.warmDB} {
		if o != nil && o != db {
			o.SetMaxIdleConns(0)
		}
	}
	if db != nil {
		n := min(conc, e.Cfg.MaxDBConns)
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
	}
	if e.mc != nil {
		e.mc.MaxIdleConns = conc
	}
}
