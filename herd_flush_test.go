package cachedsql_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// The herd after a flush: G7 and G4 across real processes when a hot key,
// warm and served from the cache under continuous load, is flushed by a
// write.
//
// The test binary runs itself hfHerdChildren times as TestHerdFlushChild
// (the re-exec mechanism of TestHerd). Each child opens its own pool on
// real PostgreSQL and real memcached under one namespace, and runs
// hfHerdReaders goroutines that look the key up back to back until the
// parent closes the child's stdin. The parent warms the key first, waits
// until every child reports its readers running, lets the load run, then
// UPDATEs the row through a cachedsql pool of its own (same namespace, so
// the write flushes the key) and records:
//
//   - committed: when COMMIT was done on the server (the flusher's
//     beforeRelease hook: after COMMIT, before the write's tombstone is
//     cleared);
//   - acked: when Exec returned.
//
// Children timestamp, at their pgx tracer, every lookup of the key that
// reached PostgreSQL, and report the start of the latest read that
// returned the old row; the parent compares them with its instants, on the
// wall clock all processes share.
//
// What must hold:
//
//   - exactly one lookup of the key reaches PostgreSQL from committed on,
//     across all processes (G7 after a flush). This is stricter than
//     counting from acked: the key is cleared (cold) a moment before Exec
//     returns, and the one filler's query may start in that moment. Readers
//     that saw the writer's tombstone wait for it (LeaseWait is 2s, far
//     longer than the clear takes even on a loaded machine: G7's proviso
//     "the fill finishes within the bounded wait"), then join the one fill.
//     In fact nothing else reaches the database during the whole load
//     phase either: before the tombstone every read is a hit.
//   - no read that started at or after acked returned the old row (G4).
//   - afterwards the cache serves the new row as a hit (nothing stale was
//     stored).
const hfFlushEnv = "CACHEDSQL_HERD_FLUSH_CHILD"

// hfFlushReport is what one child prints on stdout, on a line of its own.
type hfFlushReport struct {
	reads, oldReads, newReads, errs int
	fills, hits, misses, waits      int
	// cacheErrs and trips are the child's failed cache operations and
	// breaker trips: reads that fail open reach the database by design
	// (G8), which tells a stall of the machine from a G7 defect.
	cacheErrs, trips int
	// maxOld and maxNew are the starts (Unix ns) of the latest reads that
	// returned the old and the new row (0: none).
	maxOld, maxNew int64
	// db holds the starts (Unix ns) of the lookups of the key that reached
	// PostgreSQL while the readers ran.
	db []int64
}

func (r hfFlushReport) String() string {
	db := make([]string, len(r.db))
	for i, ts := range r.db {
		db[i] = strconv.FormatInt(ts, 10)
	}
	return fmt.Sprintf("reads=%d old=%d new=%d errs=%d fills=%d hits=%d misses=%d waits=%d cacheerrs=%d trips=%d maxold=%d maxnew=%d db=[%s]",
		r.reads, r.oldReads, r.newReads, r.errs, r.fills, r.hits, r.misses, r.waits, r.cacheErrs, r.trips, r.maxOld, r.maxNew, strings.Join(db, ","))
}

func hfParseFlush(line string) (hfFlushReport, bool) {
	rest, ok := strings.CutPrefix(line, "HERDFLUSH ")
	if !ok {
		return hfFlushReport{}, false
	}
	var r hfFlushReport
	var db string
	_, err := fmt.Sscanf(rest, "reads=%d old=%d new=%d errs=%d fills=%d hits=%d misses=%d waits=%d cacheerrs=%d trips=%d maxold=%d maxnew=%d db=%s",
		&r.reads, &r.oldReads, &r.newReads, &r.errs, &r.fills, &r.hits, &r.misses, &r.waits, &r.cacheErrs, &r.trips, &r.maxOld, &r.maxNew, &db)
	if err != nil {
		return r, false
	}
	db = strings.TrimSuffix(strings.TrimPrefix(db, "["), "]")
	if db != "" {
		for f := range strings.SplitSeq(db, ",") {
			ts, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return r, false
			}
			r.db = append(r.db, ts)
		}
	}
	return r, true
}

// hfStampTracer records when each statement with SQL text query starts.
type hfStampTracer struct {
	query string
	on    atomic.Bool // record only while set
	mu    sync.Mutex
	ts    []int64
}

func (c *hfStampTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if data.SQL == c.query && c.on.Load() {
		now := time.Now().UnixNano()
		c.mu.Lock()
		c.ts = append(c.ts, now)
		c.mu.Unlock()
	}
	return ctx
}

func (c *hfStampTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *hfStampTracer) stamps() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ts)
}

// hfFlushChild is one running child: its stdin (closing it stops the
// readers), its output, and a channel closed when it is ready.
type hfFlushChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{}
	done  chan struct{} // closed when its output is drained
	mu    sync.Mutex
	out   strings.Builder
	rep   *hfFlushReport
}

func (c *hfFlushChild) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func TestHerdAfterFlush(t *testing.T) {
	if os.Getenv(hfFlushEnv) != "" || os.Getenv(hfHerdEnv) != "" {
		t.Skip("parent only")
	}
	dsn := testenv.PostgresDSN(t)
	mcAddr := testenv.MemcacheAddr(t)
	plain := hfPlain(t, dsn)
	schema := hfSchema(t, plain, 10)
	const id = 3
	query := hfLookup(schema)
	oldRow, err := hfGet(context.Background(), plain, query, id)
	if err != nil {
		t.Fatal(err)
	}
	newRow := hfItem{ID: id, Name: fmt.Sprintf("item-%d-v2", id), Version: 2}
	ns := "herdflush-" + hfRandom()

	// The writer's pool, also used to warm the key. FlushTimeout and
	// CacheTimeout are generous: 400 readers keep this 2-core machine
	// busy, and a write that could not record its tombstone in time would
	// fail with ErrFlushUnavailable, which is not what this test is about.
	mc := memcache.New(mcAddr)
	mc.Timeout = 2 * time.Second
	wdb, wcn, _ := hfOpen(t, dsn, cachedsql.Config{
		Rules:        hfRules(schema),
		Cache:        cachedsql.Memcache(mc),
		Namespace:    ns,
		CacheTimeout: time.Second,
		FlushTimeout: 2 * time.Second,
	})
	var committed atomic.Int64
	cachedsql.SetFlushHooks(wcn, nil, func() { committed.Store(time.Now().UnixNano()) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range 2 {
		if got, err := hfGet(ctx, wdb, query, id); err != nil || got != oldRow {
			t.Fatalf("warming: %+v, %v; want %+v", got, err, oldRow)
		}
	}
	if st := wcn.Stats(); st.Fills != 1 || st.Hits != 1 {
		t.Fatalf("warming: fills %d, hits %d; want 1 and 1", st.Fills, st.Hits)
	}

	env := append(os.Environ(),
		hfFlushEnv+"=1",
		"HERD_DSN="+dsn,
		"HERD_MEMCACHE="+mcAddr,
		"HERD_NAMESPACE="+ns,
		"HERD_SCHEMA="+schema,
		"HERD_KEY="+strconv.FormatInt(id, 10),
		fmt.Sprintf("HERD_OLD=%d|%s|%d", oldRow.ID, oldRow.Name, oldRow.Version),
		fmt.Sprintf("HERD_NEW=%d|%s|%d", newRow.ID, newRow.Name, newRow.Version),
	)
	children := make([]*hfFlushChild, hfHerdChildren)
	for i := range children {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHerdFlushChild$", "-test.count=1", "-test.v", "-test.timeout=60s")
		cmd.Env = env
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		c := &hfFlushChild{cmd: cmd, stdin: stdin, ready: make(chan struct{}), done: make(chan struct{})}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start child %d: %v", i, err)
		}
		go func() {
			defer close(c.done)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			readySeen := false
			for sc.Scan() {
				line := sc.Text()
				c.mu.Lock()
				c.out.WriteString(line + "\n")
				if r, ok := hfParseFlush(line); ok {
					c.rep = &r
				}
				c.mu.Unlock()
				if line == "HERDFLUSH-READY" && !readySeen {
					readySeen = true
					close(c.ready)
				}
			}
			io.Copy(io.Discard, stdout)
		}()
		children[i] = c
	}
	stopAll := func() {
		for _, c := range children {
			c.stdin.Close()
		}
	}
	defer stopAll()

	// Every child's readers running, then some load before the write.
	for i, c := range children {
		select {
		case <-c.ready:
		case <-c.done:
			c.cmd.Wait()
			t.Fatalf("child %d exited before it was ready:\n%s", i, c.output())
		case <-time.After(45 * time.Second):
			t.Fatalf("child %d not ready after 45s:\n%s", i, c.output())
		}
	}
	time.Sleep(300 * time.Millisecond)

	upd := "UPDATE " + schema + ".items SET name = $1, version = $2 WHERE id = $3"
	sent := time.Now()
	if _, err := wdb.ExecContext(ctx, upd, newRow.Name, newRow.Version, id); err != nil {
		t.Fatalf("UPDATE through cachedsql: %v", err)
	}
	acked := time.Now()
	commit := time.Unix(0, committed.Load())
	if committed.Load() == 0 {
		t.Fatal("the write's beforeRelease hook never ran: the UPDATE flushed nothing")
	}
	// Reads after the write, then stop.
	time.Sleep(time.Second)
	stopAll()

	var all []int64
	var sum hfFlushReport
	failed := false
	for i, c := range children {
		<-c.done
		err := c.cmd.Wait()
		c.mu.Lock()
		rep := c.rep
		c.mu.Unlock()
		switch {
		case err != nil:
			t.Errorf("child %d: %v\n%s", i, err, c.output())
			failed = true
			continue
		case rep == nil:
			t.Errorf("child %d printed no report:\n%s", i, c.output())
			failed = true
			continue
		}
		r := *rep
		if r.errs > 0 {
			t.Errorf("child %d: %d reads failed or returned neither row:\n%s", i, r.errs, c.output())
		}
		if r.maxOld >= acked.UnixNano() {
			t.Errorf("child %d: a read that started %v after Exec returned saw the old row %+v (stale read)",
				i, time.Duration(r.maxOld-acked.UnixNano()), oldRow)
		}
		if r.maxNew < acked.UnixNano() {
			t.Errorf("child %d: no read started after the write was acknowledged (latest new-row read %v before): the reads after the flush were not exercised",
				i, time.Duration(acked.UnixNano()-r.maxNew))
		}
		if r.oldReads == 0 {
			t.Errorf("child %d: no read saw the old row: the load before the write was not exercised", i)
		}
		t.Logf("child %d: reads %d (old %d, new %d), fills %d, hits %d, misses %d, lease waits %d, cache errors %d, breaker trips %d, database lookups %d",
			i, r.reads, r.oldReads, r.newReads, r.fills, r.hits, r.misses, r.waits, r.cacheErrs, r.trips, len(r.db))
		all = append(all, r.db...)
		sum.fills += r.fills
		sum.reads += r.reads
		sum.cacheErrs += r.cacheErrs
	}
	if failed {
		t.FailNow()
	}
	slices.Sort(all)
	var fromCommit, fromAck, beforeSent int
	for _, ts := range all {
		switch {
		case ts >= acked.UnixNano():
			fromAck++
			fromCommit++
		case ts >= commit.UnixNano():
			fromCommit++
		case ts < sent.UnixNano():
			beforeSent++
		}
	}
	rel := make([]string, len(all))
	for i, ts := range all {
		rel[i] = time.Duration(ts - acked.UnixNano()).String()
	}
	t.Logf("%d reads in %d processes; write: COMMIT done %v after Exec was called, Exec returned %v after COMMIT; database lookups of the key relative to Exec's return: %v",
		sum.reads, hfHerdChildren, commit.Sub(sent).Round(time.Microsecond), acked.Sub(commit).Round(time.Microsecond), rel)
	if fromCommit != 1 {
		t.Errorf("the database saw the key's lookup %d times from COMMIT on (%d of them after Exec returned); want exactly 1 (G7 after a flush); the children's cache operations failed %d times (reads that fail open reach the database by design: nonzero means the machine stalled past CacheTimeout)",
			fromCommit, fromAck, sum.cacheErrs)
	}
	if beforeSent != 0 {
		t.Errorf("the database saw the warm key's lookup %d times before the write: reads of a warm key must be hits", beforeSent)
	}
	if sum.fills != 1 {
		t.Errorf("fills across the children = %d; want 1 (the refill after the flush)", sum.fills)
	}
	hfCheckCached(t, dsn, mcAddr, ns, schema, id, plain)
	if got, err := hfGet(ctx, plain, query, id); err != nil || got != newRow {
		t.Errorf("the database holds %+v, %v; want %+v", got, err, newRow)
	}
}

// TestHerdFlushChild is one process of TestHerdAfterFlush; it skips unless
// that test ran it. Its readers run from when it prints HERDFLUSH-READY
// until its stdin is closed; then it reports in one "HERDFLUSH ..." line.
func TestHerdFlushChild(t *testing.T) {
	if os.Getenv(hfFlushEnv) == "" {
		t.Skip("run by TestHerdAfterFlush")
	}
	env := func(k string) string {
		v := os.Getenv(k)
		if v == "" {
			t.Fatalf("%s not set", k)
		}
		return v
	}
	row := func(k string) hfItem {
		parts := strings.Split(env(k), "|")
		if len(parts) != 3 {
			t.Fatalf("%s %q", k, env(k))
		}
		var it hfItem
		it.ID, _ = strconv.ParseInt(parts[0], 10, 64)
		it.Name = parts[1]
		it.Version, _ = strconv.Atoi(parts[2])
		return it
	}
	oldRow, newRow := row("HERD_OLD"), row("HERD_NEW")
	id, err := strconv.ParseInt(env("HERD_KEY"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	schema := env("HERD_SCHEMA")
	query := hfLookup(schema)

	pcfg, err := pgx.ParseConfig(env("HERD_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &hfStampTracer{query: query}
	pcfg.Tracer = tr
	mc := memcache.New(env("HERD_MEMCACHE"))
	mc.MaxIdleConns = 2 * hfHerdConns
	mc.Timeout = 2 * time.Second
	cn, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cachedsql.Config{
		Rules:     hfRules(schema),
		Cache:     cachedsql.Memcache(mc),
		Namespace: env("HERD_NAMESPACE"),
		// Generous, as in TestHerd: the readers that meet the writer's
		// tombstone wait for its clear and then the one fill, rather than
		// give up on a loaded machine; a cache operation timing out would
		// send a reader to the database and blur the count.
		LeaseWait:    2 * time.Second,
		CacheTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(cn)
	defer db.Close()
	db.SetMaxOpenConns(hfHerdConns)
	db.SetMaxIdleConns(hfHerdConns)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	var conns []*sql.Conn
	for range hfHerdConns {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}

	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	tr.on.Store(true)
	var (
		reads, oldReads, newReads, errs atomic.Int64
		maxOld, maxNew                  atomic.Int64
		first                           sync.WaitGroup
		wg                              sync.WaitGroup
	)
	storeMax := func(a *atomic.Int64, v int64) {
		for {
			cur := a.Load()
			if v <= cur || a.CompareAndSwap(cur, v) {
				return
			}
		}
	}
	first.Add(hfHerdReaders)
	for range hfHerdReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			once := false
			for {
				select {
				case <-stop:
					if !once {
						first.Done()
					}
					return
				default:
				}
				begin := time.Now().UnixNano()
				got, err := hfGet(ctx, db, query, id)
				reads.Add(1)
				switch {
				case err != nil:
					if errs.Add(1) <= 5 {
						t.Errorf("lookup: %v", err)
					}
				case got == oldRow:
					oldReads.Add(1)
					storeMax(&maxOld, begin)
				case got == newRow:
					newReads.Add(1)
					storeMax(&maxNew, begin)
				default:
					if errs.Add(1) <= 5 {
						t.Errorf("lookup: %+v; want %+v or %+v", got, oldRow, newRow)
					}
				}
				if !once {
					once = true
					first.Done()
				}
			}
		}()
	}
	first.Wait()
	fmt.Printf("\nHERDFLUSH-READY\n")
	wg.Wait()
	tr.on.Store(false)
	st := cn.Stats()
	r := hfFlushReport{
		reads: int(reads.Load()), oldReads: int(oldReads.Load()), newReads: int(newReads.Load()), errs: int(errs.Load()),
		fills: int(st.Fills), hits: int(st.Hits), misses: int(st.Misses), waits: int(st.LeaseWaits),
		cacheErrs: int(st.CacheErrors), trips: int(st.BreakerTrips),
		maxOld: maxOld.Load(), maxNew: maxNew.Load(), db: tr.stamps(),
	}
	fmt.Printf("\nHERDFLUSH %v\n", r)
}
