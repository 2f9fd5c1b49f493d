package bench

import (
	"bufio"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cachedsql/cachedsql"
)

// Machine describes where a report was measured.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPU       string `json:"cpu"`
	Go        string `json:"go"`
	Database  string `json:"database"`
	Memcached string `json:"memcached,omitempty"`
}

// Run measures everything cfg asks for. progress, if not nil, is told what
// runs.
func Run(ctx context.Context, cfg Config, progress func(string)) (*Report, error) {
	cfg = cfg.withDefaults()
	start := time.Now()
	e, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	rep := &Report{Machine: e.machine(ctx), Config: fmt.Sprintf("%s, %s, %d rows, conc %v, %v per slice, %d rounds",
		e.dbName, e.cacheTag, cfg.Rows, cfg.Conc, cfg.Duration, cfg.Rounds)}

	main := []string{"a", "b", "c", "c2", "c3", "d", "e", "f-a", "f-b", "g"}
	for _, conc := range cfg.Conc {
		which := main
		if conc == 8 && e.pg {
			which = append(which, "b-def")
		}
		rows, err := measure(ctx, cfg, "pk uniform", e.contenders(false, which...), conc, uniform(cfg.Rows), progress)
		if err != nil {
			return rep.partial(e.pg, start, err)
		}
		rep.Rows = append(rep.Rows, rows...)
		rep.Ratios = append(rep.Ratios, mainRatios(rows)...)
	}
	if !cfg.Quick {
		for _, w := range []struct {
			name    string
			byEmail bool
			gen     func() keyGen
		}{
			{"pk zipf", false, zipfian(cfg.Rows)},
			{"email uniform", true, uniform(cfg.Rows)},
			{"email zipf", true, zipfian(cfg.Rows)},
		} {
			rows, err := measure(ctx, cfg, w.name, e.contenders(w.byEmail, "a", "b", "c", "d"), 8, w.gen, progress)
			if err != nil {
				return rep.partial(e.pg, start, err)
			}
			rep.Rows = append(rep.Rows, rows...)
			rep.Ratios = append(rep.Ratios, workloadRatios(w.name, rows)...)
		}
		if progress != nil {
			progress("95/5 read/write mix")
		}
		if rep.Offload, err = e.offload(ctx); err != nil {
			return rep.partial(e.pg, start, err)
		}
		if progress != nil {
			progress("cold start")
		}
		if rep.Cold, err = e.coldStart(ctx); err != nil {
			return rep.partial(e.pg, start, err)
		}
		if progress != nil {
			progress("memory bound")
		}
		if rep.Memory, err = e.memory(ctx); err != nil {
			return rep.partial(e.pg, start, err)
		}
		if e.pg {
			if cfg.Rows > shardingMaxRows {
				rep.ShardingSkipped = fmt.Sprintf("not run above %d rows: it loads and warms a second environment; run it with -rows 10000", shardingMaxRows)
			} else {
				if progress != nil {
					progress("generation sharding")
				}
				e.size(nil, 8)
				sh, rows, ratios, err := e.sharding(ctx, cfg, progress)
				if err != nil {
					return rep.partial(e.pg, start, err)
				}
				rep.Sharding = sh
				rep.Rows = append(rep.Rows, rows...)
				rep.Ratios = append(rep.Ratios, ratios...)
			}
			if cfg.Rows > scaleSubset {
				if progress != nil {
					progress("scale")
				}
				sc, rows, ratios, err := e.scale(ctx, cfg, progress)
				if err != nil {
					return rep.partial(e.pg, start, err)
				}
				rep.Scale = sc
				rep.Rows = append(rep.Rows, rows...)
				rep.Ratios = append(rep.Ratios, ratios...)
			}
			// Its writes flush rows 1..100, which prepared, next, refills.
			if progress != nil {
				progress("flush cost")
			}
			fc, rows, err := e.flushCost(ctx, cfg, progress)
			if err != nil {
				return rep.partial(e.pg, start, err)
			}
			rep.FlushCost = fc
			rep.Rows = append(rep.Rows, rows...)
		}
	}
	if rep.Prepared, err = e.prepared(ctx); err != nil {
		return rep.partial(e.pg, start, err)
	}
	if rep.DriverOps, err = e.driverLevel(ctx); err != nil {
		return rep.partial(e.pg, start, err)
	}
	rep.Targets = targets(rep, e.pg)
	rep.Elapsed = time.Since(start).Round(time.Second).String()
	return rep, nil
}

// partial finishes a report whose run stopped at a failed section, so that
// the sections measured before it are not lost, and returns it with err.
func (r *Report) partial(pg bool, start time.Time, err error) (*Report, error) {
	r.Targets = targets(r, pg)
	r.Elapsed = time.Since(start).Round(time.Second).String()
	r.Failed = err.Error()
	return r, err
}

func find(rows []*Row, prefix string) *Row {
	for _, r := range rows {
		if strings.HasPrefix(r.Contender, prefix+" ") {
			return r
		}
	}
	return nil
}

func mainRatios(rows []*Row) []Ratio {
	var out []Ratio
	pair := func(name, x, y string) {
		if rx, ry := find(rows, x), find(rows, y); rx != nil && ry != nil {
			out = append(out, ratio(name, rx, ry))
		}
	}
	pair("b/c hit vs floor (Get)", "b", "c")
	pair("b/c2 hit vs floor (GetMulti entry+gen)", "b", "c2")
	pair("b/c3 hit vs floor through database/sql", "b", "c3")
	pair("c3/c database/sql's own cost over the floor", "c3", "c")
	pair("a/b plain pgx vs hit (speed-up)", "a", "b")
	pair("a/c plain pgx vs floor (the floor's own speed-up)", "a", "c")
	pair("b/d hit vs hand-written aside", "b", "d")
	pair("e/c in-process hit vs floor", "e", "c")
	pair("a/e plain vs in-process hit", "a", "e")
	pair("f pass-through overhead (cachedsql/plain)", "f cachedsql", "f plain")
	pair("g/b prepared vs direct hit", "g", "b")
	pair("b-def/b default pools vs sized", "b with", "b")
	return out
}

func workloadRatios(w string, rows []*Row) []Ratio {
	var out []Ratio
	for _, p := range [][3]string{{"b/c", "b", "c"}, {"a/b", "a", "b"}, {"b/d", "b", "d"}} {
		if rx, ry := find(rows, p[1]), find(rows, p[2]); rx != nil && ry != nil {
			out = append(out, ratio(w+": "+p[0], rx, ry))
		}
	}
	return out
}

// machine describes the host and the servers.
func (e *Env) machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPU = strings.TrimSpace(l[strings.Index(l, ":")+1:])
				break
			}
		}
	}
	if e.pg {
		c, err := pgx.ConnectConfig(ctx, e.pgcfg)
		if err == nil {
			c.QueryRow(ctx, "SHOW server_version").Scan(&m.Database)
			m.Database = "PostgreSQL " + m.Database
			c.Close(ctx)
		}
		var vs []string
		for _, s := range e.servers {
			vs = append(vs, s+" "+memcachedVersion(s))
		}
		m.Memcached = strings.Join(vs, ", ")
	} else {
		m.Database = "SQLite (modernc.org/sqlite)"
	}
	return m
}

func memcachedVersion(addr string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "?"
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprint(c, "version\r\n")
	l, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(l)
}

// Prepared is what a prepared statement's hits cost the database.
type Prepared struct {
	Lookups        int   `json:"lookups"`
	DatabaseTrips  int64 `json:"database_round_trips"`
	DatabaseReads  int64 `json:"database_reads"`
	DatabasePrepar int64 `json:"database_prepares"`
}

func (e *Env) prepared(ctx context.Context) (*Prepared, error) {
	// Keep the connection between lookups: without an idle pool each one
	// would dial (and handshake TLS with) PostgreSQL.
	e.size(e.cached, 1)
	const n = 5000
	var u User
	for id := 1; id <= min(n, e.Cfg.Rows); id++ { // refill what the 95/5 mix flushed
		if err := scanUser(e.prepByID.QueryRowContext(ctx, id), &u, id); err != nil {
			return nil, err
		}
	}
	r0, p0 := e.cachedReads.Load(), e.cachedPrepares.Load()
	for i := range n {
		id := 1 + i%e.Cfg.Rows
		if err := scanUser(e.prepByID.QueryRowContext(ctx, id), &u, id); err != nil {
			return nil, err
		}
	}
	r, p := e.cachedReads.Load()-r0, e.cachedPrepares.Load()-p0
	return &Prepared{Lookups: n, DatabaseTrips: r + p, DatabaseReads: r, DatabasePrepar: p}, nil
}

// DriverOp is an allocation count measured serially, below or through
// database/sql.
type DriverOp struct {
	Name     string  `json:"name"`
	AllocsOp float64 `json:"allocs_per_op"`
	NsOp     float64 `json:"ns_per_op"`
}

func allocsPerRun(n int, f func() error) (allocs, ns float64, err error) {
	for range 100 {
		if err := f(); err != nil {
			return 0, 0, err
		}
	}
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	t0 := time.Now()
	for range n {
		if err := f(); err != nil {
			return 0, 0, err
		}
	}
	el := time.Since(t0)
	runtime.ReadMemStats(&b)
	return float64(b.Mallocs-a.Mallocs) / float64(n), float64(el.Nanoseconds()) / float64(n), nil
}

// driverLevel counts allocations serially: a hit through database/sql, and
// a pass-through at the driver level with and without cachedsql (the
// difference is the plan-cache lookup and routing).
func (e *Env) driverLevel(ctx context.Context) ([]DriverOp, error) {
	var out []DriverOp
	add := func(name string, n int, f func() error) error {
		a, ns, err := allocsPerRun(n, f)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, DriverOp{Name: name, AllocsOp: a, NsOp: ns})
		return nil
	}
	// One connection each, kept idle between operations: size(nil, ...)
	// leaves every pool without idle connections, which made each lookup
	// dial PostgreSQL anew (and count the dial's allocations).
	e.size(nil, 1)
	for _, db := range []*sql.DB{e.cached, e.plain} {
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
	}
	var u User
	id := 1
	if err := add("hit through database/sql (QueryRow+Scan, 5 columns)", 5000, func() error {
		id = id%e.Cfg.Rows + 1
		return scanUser(e.cached.QueryRowContext(ctx, e.byID, id), &u, id)
	}); err != nil {
		return nil, err
	}
	// database/sql watches a cancellable context with allocations of its
	// own (4 per query, plain pgx alike): the same hit without one.
	if err := add("hit through database/sql, context.Background()", 5000, func() error {
		id = id%e.Cfg.Rows + 1
		return scanUser(e.cached.QueryRowContext(context.Background(), e.byID, id), &u, id)
	}); err != nil {
		return nil, err
	}
	if err := add("plain lookup through database/sql", 2000, func() error {
		id = id%e.Cfg.Rows + 1
		return scanUser(e.plain.QueryRowContext(ctx, e.byID, id), &u, id)
	}); err != nil {
		return nil, err
	}
	cc, err := e.cachedConn.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	pc, err := e.cachedConnBase.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	args := []driver.NamedValue{{Ordinal: 1, Value: int64(1)}}
	dest := make([]driver.Value, 5)
	drive := func(c driver.Conn, q string) func() error {
		return func() error {
			rows, err := c.(driver.QueryerContext).QueryContext(ctx, q, args)
			if err != nil {
				return err
			}
			for rows.Next(dest) == nil {
			}
			return rows.Close()
		}
	}
	for _, d := range []struct {
		name string
		c    driver.Conn
		q    string
		n    int
	}{
		{"driver level: pass-through, wrapped driver alone", pc, e.passQ, 2000},
		{"driver level: pass-through through cachedsql", cc, e.passQ, 2000},
		{"driver level: cached hit through cachedsql", cc, e.byID, 5000},
	} {
		if err := add(d.name, d.n, drive(d.c, d.q)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Offload is the 95/5 read/write mix's load on the database.
type Offload struct {
	Name          string  `json:"name"`
	Reads         int64   `json:"reads"`
	Writes        int64   `json:"writes"`
	DBReads       int64   `json:"db_reads_below"` // SELECTs that reached the database (tracer)
	DBWrites      int64   `json:"db_writes_below"`
	ReadsOffload  float64 `json:"reads_never_reaching_db"`
	IdxScan       int64   `json:"pg_idx_scan"` // pg_stat_user_tables, the bench table
	IdxTupFetch   int64   `json:"pg_idx_tup_fetch"`
	XactCommit    int64   `json:"pg_xact_commit"` // pg_stat_database (shared with other users of the database)
	TupFetched    int64   `json:"pg_tup_fetched"`
	NsPerOp       float64 `json:"ns_per_op"`
	Hits, Misses  uint64
	FillsRaceLost uint64
}

type pgStats struct{ idxScan, idxTupFetch, xactCommit, tupFetched int64 }

func (e *Env) pgStats(ctx context.Context) (pgStats, error) {
	var s pgStats
	if !e.pg {
		return s, nil
	}
	time.Sleep(1500 * time.Millisecond) // backends flush their counters when idle, at most once a second
	c, err := pgx.ConnectConfig(ctx, e.pgcfg)
	if err != nil {
		return s, err
	}
	defer c.Close(ctx)
	c.Exec(ctx, "SELECT pg_stat_force_next_flush()")
	err = c.QueryRow(ctx, `SELECT coalesce(idx_scan,0), coalesce(idx_tup_fetch,0) FROM pg_stat_user_tables WHERE relname = $1`, e.Cfg.Table).Scan(&s.idxScan, &s.idxTupFetch)
	if err != nil {
		return s, err
	}
	err = c.QueryRow(ctx, `SELECT xact_commit, tup_fetched FROM pg_stat_database WHERE datname = current_database()`).Scan(&s.xactCommit, &s.tupFetched)
	return s, err
}

func (e *Env) offload(ctx context.Context) ([]Offload, error) {
	var out []Offload
	for _, side := range []struct {
		name          string
		cached        bool
		reads, writes *atomic.Int64
	}{
		{"cachedsql", true, e.cachedReads, e.cachedWrites},
		{"plain", false, e.plainReads, nil},
	} {
		db := e.plain
		if side.cached {
			db = e.cached
		}
		e.size(db, 8)
		var reads, writes atomic.Int64
		c := &Contender{Name: "mix " + side.name, newWorker: func() opFunc {
			var u User
			var r = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			return func(ctx context.Context, id int) error {
				if r.IntN(100) < 5 {
					writes.Add(1)
					nm := fmt.Sprintf("User %d v%d", id, r.IntN(1000))
					args := []any{id, nm}
					if e.updateNameFirst {
						args = []any{nm, id}
					}
					_, err := db.ExecContext(ctx, e.update, args...)
					return err
				}
				reads.Add(1)
				return scanUser(db.QueryRowContext(ctx, e.byID, id), &u, id)
			}
		}}
		before, err := e.pgStats(ctx)
		if err != nil {
			return nil, err
		}
		st0 := e.cachedConn.Stats()
		r0 := side.reads.Load()
		var w0 int64
		if side.writes != nil {
			w0 = side.writes.Load()
		}
		s, err := runSlice(ctx, c, 8, 3*e.Cfg.Duration, zipfian(e.Cfg.Rows), 5)
		if err != nil {
			return nil, err
		}
		after, err := e.pgStats(ctx)
		if err != nil {
			return nil, err
		}
		st1 := e.cachedConn.Stats()
		o := Offload{Name: side.name + " (zipf s=1.1, conc 8)", Reads: reads.Load(), Writes: writes.Load(), DBReads: side.reads.Load() - r0,
			IdxScan: after.idxScan - before.idxScan, IdxTupFetch: after.idxTupFetch - before.idxTupFetch,
			XactCommit: after.xactCommit - before.xactCommit, TupFetched: after.tupFetched - before.tupFetched,
			NsPerOp: s.nsPerOp()}
		if side.writes != nil {
			o.DBWrites = side.writes.Load() - w0
			o.Hits, o.Misses, o.FillsRaceLost = st1.Hits-st0.Hits, st1.Misses-st0.Misses, st1.FillRacesLost-st0.FillRacesLost
		} else if !e.pg {
			o.DBReads -= o.Writes // countdriver counts both
			o.DBWrites = o.Writes
		}
		o.ReadsOffload = 1 - float64(o.DBReads)/float64(max(o.Reads, 1))
		out = append(out, o)
	}
	return out, nil
}

// Cold is a cold start: every key read once on an empty cache, then again.
type Cold struct {
	Name     string  `json:"name"`
	Lookups  int     `json:"lookups"`
	NsPerOp  float64 `json:"ns_per_op"`
	P50, P99 float64
	DBReads  int64 `json:"db_reads"`
}

func (e *Env) coldStart(ctx context.Context) ([]Cold, error) {
	n := min(e.Cfg.Rows, 5000)
	perm := rand.New(rand.NewPCG(3, 3)).Perm(e.Cfg.Rows)[:n]
	var cache cachedsql.Cache
	if e.pg {
		var err error
		if cache, err = newMemcache(e.servers); err != nil {
			return nil, err
		}
		defer cache.(io.Closer).Close()
	} else {
		cache = cachedsql.NewMemoryCache(1 << 30)
	}
	cn, err := cachedsql.NewConnector(e.cachedConnBase, cachedsql.Config{Rules: e.rules, Cache: cache,
		Namespace: fmt.Sprintf("cold-%d", time.Now().UnixNano()), CacheTimeout: e.cacheTimeout, LeaseWait: e.leaseWait})
	if err != nil {
		return nil, err
	}
	db := e.track(sqlOpenDB(cn))
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	if err := db.PingContext(ctx); err != nil {
		return nil, err
	}
	var out []Cold
	for _, pass := range []struct {
		name string
		db   queryRower
		cnt  *atomic.Int64
	}{
		{"plain, same keys", e.plain, e.plainReads},
		{"cachedsql, cold (every lookup a miss and a fill)", db, e.cachedReads},
		{"cachedsql, second pass (hits)", db, e.cachedReads},
	} {
		var idx atomic.Int64
		gen := func() keyGen {
			return func(*rand.Rand) int { return 1 + perm[int(idx.Add(1)-1)%n] }
		}
		c := &Contender{Name: pass.name, maxOps: n, newWorker: func() opFunc {
			var u User
			return func(ctx context.Context, id int) error {
				return scanUser(pass.db.QueryRowContext(ctx, e.byID, id), &u, id)
			}
		}}
		r0 := pass.cnt.Load()
		s, err := runSlice(ctx, c, 8, time.Hour, gen, 1)
		if err != nil {
			return nil, err
		}
		out = append(out, Cold{Name: pass.name, Lookups: int(s.ops), NsPerOp: s.nsPerOp(), P50: s.hist.quantile(.5), P99: s.hist.quantile(.99), DBReads: pass.cnt.Load() - r0})
	}
	return out, nil
}

// Print writes r as tables.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "cachedsql bench: %s\n", r.Config)
	fmt.Fprintf(w, "machine: %d CPUs, %s; %s; %s; memcached %s\n\n", r.Machine.CPUs, r.Machine.CPU, r.Machine.Go, r.Machine.Database, r.Machine.Memcached)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tcontender\tconc\tns/op\tops/s\tp50\tp99\tallocs/op\tB/op\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%v\t%v\t%.1f\t%.0f\t\n", row.Workload, row.Contender, row.Conc, row.NsPerOp, row.OpsPerSec,
			time.Duration(row.P50).Round(time.Microsecond/10), time.Duration(row.P99).Round(time.Microsecond/10), row.AllocsOp, row.BytesOp)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nratios of ns/op, computed round by round (median [min, max]):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, x := range r.Ratios {
		fmt.Fprintf(tw, "  %s\tconc %d\t%.3f\t[%.3f, %.3f]\n", x.Name, x.Conc, x.Median, x.Min, x.Max)
	}
	tw.Flush()
	for _, o := range r.Offload {
		fmt.Fprintf(w, "\n95/5 mix, %s: %d reads, %d writes, %.0f ns/op; reads reaching the database: %d (%.1f%% never did); pg_stat_user_tables idx_scan %+d idx_tup_fetch %+d; pg_stat_database xact_commit %+d tup_fetched %+d; hits %d misses %d fill races lost %d",
			o.Name, o.Reads, o.Writes, o.NsPerOp, o.DBReads, 100*o.ReadsOffload, o.IdxScan, o.IdxTupFetch, o.XactCommit, o.TupFetched, o.Hits, o.Misses, o.FillsRaceLost)
	}
	if len(r.Offload) > 0 {
		fmt.Fprintln(w)
	}
	for _, c := range r.Cold {
		fmt.Fprintf(w, "\ncold start, %s: %d lookups, %.0f ns/op, p50 %v p99 %v, database reads %d", c.Name, c.Lookups, c.NsPerOp,
			time.Duration(c.P50).Round(time.Microsecond), time.Duration(c.P99).Round(time.Microsecond), c.DBReads)
	}
	if len(r.Cold) > 0 {
		fmt.Fprintln(w)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "\nmemory: %s\n", m)
	}
	if r.Failed != "" {
		fmt.Fprintf(w, "\nRUN STOPPED: %s\n(the sections above were measured; later ones were not)\n", r.Failed)
	}
	if r.ShardingSkipped != "" {
		fmt.Fprintf(w, "\nsharding: %s\n", r.ShardingSkipped)
	}
	if s := r.Sharding; s != nil {
		fmt.Fprintf(w, "\nsharding: %s\n", s)
	}
	if s := r.Scale; s != nil {
		fmt.Fprintf(w, "\nscale: %s\n", s)
	}
	if f := r.FlushCost; f != nil {
		f.print(w)
	}
	if p := r.Prepared; p != nil {
		fmt.Fprintf(w, "\nprepared statement: %d hits, %d database round trips (%d queries, %d prepares)\n", p.Lookups, p.DatabaseTrips, p.DatabaseReads, p.DatabasePrepar)
	}
	if len(r.DriverOps) > 0 {
		fmt.Fprintln(w, "\nserial allocation counts:")
		for _, d := range r.DriverOps {
			fmt.Fprintf(w, "  %-55s %6.1f allocs/op %8.0f ns/op\n", d.Name, d.AllocsOp, d.NsOp)
		}
	}
	fmt.Fprintln(w, "\ntargets:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range r.Targets {
		met := "MISSED"
		if t.Met {
			met = "met"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", t.Name, t.Target, t.Measured, met, t.Note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nelapsed %s\n", r.Elapsed)
}
