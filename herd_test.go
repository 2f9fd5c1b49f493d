package cachedsql_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// Helpers shared by herd_test.go, fault_test.go and interleave_test.go.
//
// What reaches PostgreSQL is counted at a layer cachedsql does not control:
// a pgx.QueryTracer on the wrapped connector's ConnConfig, which sees every
// statement pgx sends. The catalog read at connect issues queries of its
// own; only the lookup's SQL text is counted.

// hfCounter counts the statements pgx starts, by SQL text.
type hfCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func newHFCounter() *hfCounter { return &hfCounter{n: map[string]int{}} }

func (c *hfCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.mu.Lock()
	c.n[data.SQL]++
	c.mu.Unlock()
	return ctx
}

func (c *hfCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// count is how many times query reached PostgreSQL.
func (c *hfCounter) count(query string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[query]
}

// hfOpen opens a cachedsql pool on dsn (pgx stdlib's connector with a
// counting tracer, wrapped by NewConnector) and opens its first connection,
// so that the catalog has been read when it returns.
func hfOpen(t testing.TB, dsn string, cfg cachedsql.Config) (*sql.DB, *cachedsql.Connector, *hfCounter) {
	t.Helper()
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgx.ParseConfig: %v", err)
	}
	qc := newHFCounter()
	pcfg.Tracer = qc
	cn, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cfg)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(cn)
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	return db, cn, qc
}

// hfPlain opens a plain pgx stdlib pool: the reference reads and the writes
// that bypass cachedsql.
func hfPlain(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// hfSchema creates a unique schema holding
//
//	items (id bigint PRIMARY KEY, name text NOT NULL, version int NOT NULL)
//
// with rows id 1..rows, name "item-<id>-v1", version 1, and drops it when
// the test ends. It returns the schema name.
func hfSchema(t testing.TB, plain *sql.DB, rows int) string {
	t.Helper()
	s := "hf_" + hfRandom()
	for _, q := range []string{
		"CREATE SCHEMA " + s,
		"CREATE TABLE " + s + ".items (id bigint PRIMARY KEY, name text NOT NULL, version int NOT NULL)",
		fmt.Sprintf("INSERT INTO %s.items SELECT g, 'item-' || g || '-v1', 1 FROM generate_series(1, %d) g", s, rows),
	} {
		if _, err := plain.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		if _, err := plain.Exec("DROP SCHEMA " + s + " CASCADE"); err != nil {
			t.Errorf("DROP SCHEMA %s: %v", s, err)
		}
	})
	return s
}

// hfRules caches schema.items by id.
func hfRules(schema string) cachedsql.Rules {
	return cachedsql.Rules{Tables: map[string]cachedsql.TableRule{
		schema + ".items": {Keys: [][]string{{"id"}}},
	}}
}

// hfItem is a row of items.
type hfItem struct {
	ID      int64
	Name    string
	Version int
}

// hfLookup is the lookup every test counts, on schema.items.
func hfLookup(schema string) string {
	return "SELECT id, name, version FROM " + schema + ".items WHERE id = $1"
}

func hfGet(ctx context.Context, db *sql.DB, query string, id int64) (hfItem, error) {
	var it hfItem
	err := db.QueryRowContext(ctx, query, id).Scan(&it.ID, &it.Name, &it.Version)
	return it, err
}

func hfRandom() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// The herd test: G7 across real processes. The test binary runs itself
// hfHerdChildren times as TestHerdChild; each child opens its own pool on
// real PostgreSQL and real memcached, under one namespace, and at one
// wall-clock instant starts hfHerdReaders goroutines that each look up the
// same cold key. Each child reports what reached PostgreSQL (its tracer's
// count of the lookup) and its Stats; the parent sums them.
const (
	hfHerdChildren = 4
	hfHerdReaders  = 100
	hfHerdConns    = 8 // per child: database/sql needs a connection per reader
	hfHerdEnv      = "CACHEDSQL_HERD_CHILD"
)

// hfHerdReport is what one child prints on stdout, on a line of its own.
type hfHerdReport struct {
	db, fills, hits, misses, waits, errs int
	// late is when the child's readers started, after the common instant;
	// ready is how long before it the child's pool was ready (negative:
	// after).
	late, ready time.Duration
}

func (r hfHerdReport) String() string {
	return fmt.Sprintf("db=%d fills=%d hits=%d misses=%d waits=%d errs=%d late=%d ready=%d",
		r.db, r.fills, r.hits, r.misses, r.waits, r.errs, r.late, r.ready)
}

func TestHerd(t *testing.T) {
	if os.Getenv(hfHerdEnv) != "" {
		t.Skip("parent only")
	}
	dsn := testenv.PostgresDSN(t)
	mcAddr := testenv.MemcacheAddr(t)
	plain := hfPlain(t, dsn)
	schema := hfSchema(t, plain, 10)

	// fast: the fill finishes well within the bounded wait (LeaseWait 2s,
	// generous for a loaded machine): exactly one query in all.
	t.Run("fast", func(t *testing.T) {
		ns, _, _, reps := hfRunHerd(t, dsn, mcAddr, schema, 1, 2*time.Second, 0)
		sum := hfSum(reps)
		if sum.db != 1 {
			t.Errorf("%d readers in %d processes: the database saw the lookup %d times; want 1",
				hfHerdChildren*hfHerdReaders, hfHerdChildren, sum.db)
		}
		if sum.fills != 1 {
			t.Errorf("fills = %d; want 1", sum.fills)
		}
		hfCheckCached(t, dsn, mcAddr, ns, schema, 1, plain)
	})

	// slow: the database answers the lookup only after hold, far longer
	// than LeaseWait (50ms). Readers in the processes that did not win the
	// lease give up after LeaseWait and read the database, without
	// filling; the leader's fill is the only one, and it holds what the
	// database holds.
	//
	// How the database is made slow: the parent takes ACCESS EXCLUSIVE on
	// the table just before the common instant, in a transaction of its
	// own, and commits hold after it, so every SELECT of the table (the
	// leader's and the waiters') blocks until then. A slow query (pg_sleep,
	// any volatile function) would make the lookup uncacheable, a fill hook
	// cannot cross processes, and a tiny LeaseWait would race with a fast
	// database; the lock slows exactly the database, in every process,
	// without changing the SQL.
	t.Run("slow", func(t *testing.T) {
		const hold = 700 * time.Millisecond
		ns, start, lock, reps := hfRunHerd(t, dsn, mcAddr, schema, 2, 50*time.Millisecond, hold)
		sum := hfSum(reps)
		if sum.db < 1 || sum.db > hfHerdChildren*hfHerdReaders {
			t.Errorf("the database saw the lookup %d times; want 1..%d", sum.db, hfHerdChildren*hfHerdReaders)
		}
		// Waiters that give up go to the database: certain when the table
		// was locked before any reader started and two processes started
		// well before it was released (the one that did not lead waits
		// LeaseWait, then queries). On a machine too loaded for that, the
		// count is only bounded.
		lockedFirst := true
		inWindow := 0
		for _, r := range reps {
			began := start.Add(r.late)
			lockedFirst = lockedFirst && lock.acquired.Before(began)
			if began.Before(lock.released.Add(-300 * time.Millisecond)) {
				inWindow++
			}
		}
		exercised := lockedFirst && inWindow >= 2
		switch {
		case exercised && sum.db < 2:
			t.Errorf("%d processes started while the database was held (LeaseWait 50ms), yet it saw %d lookups: nobody gave up waiting",
				inWindow, sum.db)
		case !exercised:
			t.Logf("the give-up path was not exercised: locked before the readers %v, %d processes started within the window", lockedFirst, inWindow)
		}
		if sum.waits == 0 && exercised {
			t.Errorf("no lookup waited on the lease")
		}
		if sum.fills != 1 {
			t.Errorf("fills = %d; want 1 (waiters that gave up must not fill)", sum.fills)
		}
		hfCheckCached(t, dsn, mcAddr, ns, schema, 2, plain)
	})
}

// hfRunHerd runs the children on key id under a fresh namespace, and
// returns it with the common instant and their reports. If hold is not
// zero, the table is locked from just before the common instant until hold
// after it, and lock says when it really was.
func hfRunHerd(t *testing.T, dsn, mcAddr, schema string, id int64, leaseWait, hold time.Duration) (ns string, start time.Time, lock hfLock, reps []hfHerdReport) {
	t.Helper()
	want, err := hfGet(context.Background(), hfPlain(t, dsn), hfLookup(schema), id)
	if err != nil {
		t.Fatal(err)
	}
	ns = "herd-" + hfRandom()
	// Time for the children to start and open their pools, race detector
	// and a loaded 2-core machine included; each reports its margin.
	start = time.Now().Add(2 * time.Second)
	env := append(os.Environ(),
		hfHerdEnv+"=1",
		"HERD_DSN="+dsn,
		"HERD_MEMCACHE="+mcAddr,
		"HERD_NAMESPACE="+ns,
		"HERD_SCHEMA="+schema,
		"HERD_KEY="+strconv.FormatInt(id, 10),
		"HERD_WANT="+fmt.Sprintf("%d|%s|%d", want.ID, want.Name, want.Version),
		"HERD_START="+strconv.FormatInt(start.UnixNano(), 10),
		"HERD_LEASE_WAIT="+leaseWait.String(),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmds := make([]*exec.Cmd, hfHerdChildren)
	outs := make([]*bytes.Buffer, hfHerdChildren)
	for i := range cmds {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHerdChild$", "-test.count=1", "-test.v", "-test.timeout=60s")
		cmd.Env = env
		outs[i] = new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatalf("start child %d: %v", i, err)
		}
		cmds[i] = cmd
	}
	var lockDone chan hfLock
	if hold > 0 {
		lockDone = hfLockTable(hfPlain(t, dsn), schema, start.Add(-100*time.Millisecond), start.Add(hold))
	}
	reps = make([]hfHerdReport, hfHerdChildren)
	failed := false
	for i, cmd := range cmds {
		err := cmd.Wait()
		out := outs[i].String()
		r, ok := hfParseHerd(out)
		switch {
		case err != nil:
			t.Errorf("child %d: %v\n%s", i, err, out)
			failed = true
			continue
		case !ok:
			t.Errorf("child %d printed no report:\n%s", i, out)
			failed = true
			continue
		case r.errs > 0:
			t.Errorf("child %d: %d readers failed or read wrong data:\n%s", i, r.errs, out)
		}
		reps[i] = r
		t.Logf("child %d: %v", i, r)
	}
	if lockDone != nil {
		if lock = <-lockDone; lock.err != nil {
			t.Fatalf("lock holder: %v", lock.err)
		}
		t.Logf("table locked from %v to %v after the start",
			lock.acquired.Sub(start).Round(time.Millisecond), lock.released.Sub(start).Round(time.Millisecond))
	}
	if failed {
		t.FailNow()
	}
	return ns, start, lock, reps
}

// hfLock is what the lock holder did: when it held the table.
type hfLock struct {
	acquired, released time.Time
	err                error
}

// hfLockTable locks schema.items in ACCESS EXCLUSIVE mode at from and
// commits at until, in the background; the channel reports when it really
// held the lock.
func hfLockTable(db *sql.DB, schema string, from, until time.Time) chan hfLock {
	done := make(chan hfLock, 1)
	go func() {
		time.Sleep(time.Until(from))
		ctx := context.Background()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			done <- hfLock{err: err}
			return
		}
		if _, err := tx.ExecContext(ctx, "LOCK TABLE "+schema+".items IN ACCESS EXCLUSIVE MODE"); err != nil {
			tx.Rollback()
			done <- hfLock{err: err}
			return
		}
		acquired := time.Now()
		time.Sleep(time.Until(until))
		err = tx.Commit()
		done <- hfLock{acquired: acquired, released: time.Now(), err: err}
	}()
	return done
}

func hfParseHerd(out string) (hfHerdReport, bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "HERD ")
		if !ok {
			continue
		}
		var r hfHerdReport
		var late, ready int64
		_, err := fmt.Sscanf(rest, "db=%d fills=%d hits=%d misses=%d waits=%d errs=%d late=%d ready=%d",
			&r.db, &r.fills, &r.hits, &r.misses, &r.waits, &r.errs, &late, &ready)
		if err != nil {
			return r, false
		}
		r.late, r.ready = time.Duration(late), time.Duration(ready)
		return r, true
	}
	return hfHerdReport{}, false
}

func hfSum(reps []hfHerdReport) hfHerdReport {
	var s hfHerdReport
	for _, r := range reps {
		s.db += r.db
		s.fills += r.fills
		s.hits += r.hits
		s.misses += r.misses
		s.waits += r.waits
		s.errs += r.errs
	}
	return s
}

// hfCheckCached checks that nothing stale was stored: a pool of the
// parent's own, under the herd's namespace, serves key id as a hit (so the
// entry decodes and carries the current generation), and the value is what
// the database holds.
func hfCheckCached(t *testing.T, dsn, mcAddr, ns, schema string, id int64, plain *sql.DB) {
	t.Helper()
	mc := memcache.New(mcAddr)
	mc.Timeout = 2 * time.Second
	db, cn, qc := hfOpen(t, dsn, cachedsql.Config{
		Rules:        hfRules(schema),
		Cache:        cachedsql.Memcache(mc),
		Namespace:    ns,
		CacheTimeout: time.Second,
	})
	query := hfLookup(schema)
	want, err := hfGet(context.Background(), plain, query, id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := hfGet(context.Background(), db, query, id)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("after the herd, the cache serves %+v; the database holds %+v", got, want)
	}
	if st := cn.Stats(); st.Hits != 1 || st.Misses != 0 || qc.count(query) != 0 {
		t.Errorf("after the herd, the lookup was not a hit of the current generation: hits %d, misses %d, database %d",
			st.Hits, st.Misses, qc.count(query))
	}
}

// TestHerdChild is one process of TestHerd; it skips unless TestHerd ran
// it. It reports on stdout, in one "HERD ..." line.
func TestHerdChild(t *testing.T) {
	if os.Getenv(hfHerdEnv) == "" {
		t.Skip("run by TestHerd")
	}
	env := func(k string) string {
		v := os.Getenv(k)
		if v == "" {
			t.Fatalf("%s not set", k)
		}
		return v
	}
	startNanos, err := strconv.ParseInt(env("HERD_START"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(0, startNanos)
	id, err := strconv.ParseInt(env("HERD_KEY"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	leaseWait, err := time.ParseDuration(env("HERD_LEASE_WAIT"))
	if err != nil {
		t.Fatal(err)
	}
	var want hfItem
	parts := strings.Split(env("HERD_WANT"), "|")
	if len(parts) != 3 {
		t.Fatalf("HERD_WANT %q", env("HERD_WANT"))
	}
	want.ID, _ = strconv.ParseInt(parts[0], 10, 64)
	want.Name = parts[1]
	want.Version, _ = strconv.Atoi(parts[2])
	schema := env("HERD_SCHEMA")

	mc := memcache.New(env("HERD_MEMCACHE"))
	mc.MaxIdleConns = 2 * hfHerdConns
	mc.Timeout = 2 * time.Second
	db, cn, qc := hfOpen(t, env("HERD_DSN"), cachedsql.Config{
		Rules:     hfRules(schema),
		Cache:     cachedsql.Memcache(mc),
		Namespace: env("HERD_NAMESPACE"),
		LeaseWait: leaseWait,
		// Generous: this test is about the herd, not a slow cache; a cache
		// operation timing out on a loaded machine would send a reader to
		// the database and blur the count.
		CacheTimeout: time.Second,
	})
	db.SetMaxOpenConns(hfHerdConns)
	db.SetMaxIdleConns(hfHerdConns)
	// Open every connection before the start, so that the readers race
	// on the cache, not on connecting.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	query := hfLookup(schema)

	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := 0
	gate := make(chan struct{})
	for range hfHerdReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			got, err := hfGet(ctx, db, query, id)
			if err != nil || got != want {
				mu.Lock()
				errs++
				mu.Unlock()
				t.Errorf("lookup: %+v, %v; want %+v", got, err, want)
			}
		}()
	}
	ready := time.Until(start)
	time.Sleep(ready)
	late := time.Since(start)
	close(gate)
	wg.Wait()
	st := cn.Stats()
	r := hfHerdReport{db: qc.count(query), fills: int(st.Fills), hits: int(st.Hits), misses: int(st.Misses),
		waits: int(st.LeaseWaits), errs: errs, late: late, ready: ready}
	fmt.Printf("\nHERD %v\n", r)
}
