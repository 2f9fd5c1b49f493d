package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // the embedded default

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/countdriver"
)

type demoConfig struct {
	dsn      string
	memcache string
	rows     int
	lookups  int
	conc     int
	quiet    bool
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg demoConfig
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.dsn, "dsn", "", "PostgreSQL DSN (default: an embedded SQLite database in a temporary directory)")
	fs.StringVar(&cfg.memcache, "memcache", "", "memcached servers, host:port[,host:port...] (default: the in-process cache)")
	fs.IntVar(&cfg.rows, "rows", 10_000, "rows in the demo table")
	fs.IntVar(&cfg.lookups, "lookups", 40_000, "lookups per run")
	fs.IntVar(&cfg.conc, "conc", 8, "concurrent readers")
	fs.BoolVar(&cfg.quiet, "quiet", false, "no progress bar")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.rows < 1 || cfg.lookups < 1 || cfg.conc < 1 {
		return errors.New("demo: -rows, -lookups and -conc must be positive")
	}

	db, err := openDemoDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.close()
	fmt.Fprintf(stdout, "cachedsql demo: %d users in %s, %s; %d lookups (zipf s=1.1: 80%% by id, 20%% by email), %d goroutines\n\n",
		cfg.rows, db.name, db.cacheName, cfg.lookups, cfg.conc)

	plain := sql.OpenDB(db.counted)
	defer plain.Close()
	before, err := workload(ctx, plain, db, cfg, "plain "+db.driverName, stderr)
	if err != nil {
		return err
	}
	cached := sql.OpenDB(db.cached)
	defer cached.Close()
	after, err := workload(ctx, cached, db, cfg, "cachedsql", stderr)
	if err != nil {
		return err
	}

	tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tlookups\tdatabase queries\tserved without the database\tmedian\tp99\t")
	for _, r := range []runResult{before, after} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f%%\t%v\t%v\t\n", r.name, r.lookups, r.dbQueries,
			100*(1-float64(r.dbQueries)/float64(r.lookups)), r.median.Round(time.Microsecond), r.p99.Round(time.Microsecond))
	}
	tw.Flush()
	s := db.cached.Stats()
	fmt.Fprintf(stdout, "\ncachedsql Stats: %d hits, %d cached misses, %d fills, %d database reads; database queries are counted below cachedsql.\n",
		s.Hits, s.NegativeHits, s.Fills, s.Misses)
	return nil
}

// demoDatabase is the database under test, reachable plain and through
// cachedsql, both counted below cachedsql.
type demoDatabase struct {
	name, driverName, cacheName string
	counted                     driver.Connector // the plain driver, counted
	cached                      *cachedsql.Connector
	queries                     func() int64 // statements the database received
	close                       func()
}

const demoRules = `
tables:
  demo_users:
    keys: [[id], [email]]
`

func openDemoDatabase(ctx context.Context, cfg demoConfig) (*demoDatabase, error) {
	rules, err := cachedsql.ParseRules([]byte(demoRules))
	if err != nil {
		return nil, err
	}
	d := &demoDatabase{}
	var cache cachedsql.Cache
	if cfg.memcache != "" {
		mc := memcache.New(strings.Split(cfg.memcache, ",")...)
		mc.MaxIdleConns = cfg.conc * 2
		if err := mc.Ping(); err != nil {
			return nil, fmt.Errorf("demo: memcached at %s: %w", cfg.memcache, err)
		}
		cache = cachedsql.Memcache(mc)
		d.cacheName = "memcached at " + cfg.memcache
	} else {
		cache = cachedsql.NewMemoryCache(64 << 20)
		d.cacheName = "in-process cache"
	}
	namespace := fmt.Sprintf("demo-%d", time.Now().UnixNano()) // a fresh, cold cache

	if cfg.dsn == "" {
		dir, err := os.MkdirTemp("", "cachedsql-demo")
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "demo.db")
		d.name, d.driverName = "embedded SQLite", "sqlite"
		if err := loadDemoRows(ctx, "sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)", cfg.rows, "?"); err != nil {
			return nil, err
		}
		probe, err := sql.Open("sqlite", path)
		if err != nil {
			return nil, err
		}
		base := dsnConnector{dsn: path + "?_pragma=busy_timeout(5000)", driver: probe.Driver()}
		probe.Close()
		counter := countdriver.New(base)
		d.counted = counter
		d.queries = counter.Statements.Load
		d.close = func() { os.RemoveAll(dir) }
		d.cached, err = cachedsql.NewConnector(counter, cachedsql.Config{Rules: rules, Cache: cache, Namespace: namespace})
		if err != nil {
			return nil, err
		}
		return d, nil
	}

	pgcfg, err := pgx.ParseConfig(cfg.dsn)
	if err != nil {
		return nil, fmt.Errorf("demo: -dsn: %w", err)
	}
	tracer := &countingTracer{}
	pgcfg.Tracer = tracer
	d.name, d.driverName = "PostgreSQL at "+pgcfg.Host, "pgx"
	if err := loadDemoRows(ctx, "pgx", cfg.dsn, cfg.rows, "$"); err != nil {
		return nil, err
	}
	d.counted = stdlib.GetConnector(*pgcfg)
	d.queries = tracer.n.Load
	d.close = func() {}
	d.cached, err = cachedsql.NewConnector(stdlib.GetConnector(*pgcfg), cachedsql.Config{Rules: rules, Cache: cache, Namespace: namespace})
	return d, err
}

// loadDemoRows (re)creates demo_users with n rows of about 250 bytes.
func loadDemoRows(ctx context.Context, driverName, dsn string, n int, placeholder string) error {
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	stmts := []string{
		`DROP TABLE IF EXISTS demo_users`,
		`CREATE TABLE demo_users (id BIGINT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, bio TEXT NOT NULL, created_at TIMESTAMP NOT NULL)`,
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("demo: setting up the schema: %w", err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	q := "INSERT INTO demo_users (id, email, name, bio, created_at) VALUES (?, ?, ?, ?, ?)"
	if placeholder == "$" {
		q = "INSERT INTO demo_users (id, email, name, bio, created_at) VALUES ($1, $2, $3, $4, $5)"
	}
	ins, err := tx.PrepareContext(ctx, q)
	if err != nil {
		return err
	}
	bio := strings.Repeat("cachedsql keeps hot rows in memcached. ", 5)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for id := 1; id <= n; id++ {
		if _, err := ins.ExecContext(ctx, id, demoEmail(id), fmt.Sprintf("User %d", id), bio, created.Add(time.Duration(id)*time.Minute)); err != nil {
			return fmt.Errorf("demo: loading rows: %w", err)
		}
	}
	return tx.Commit()
}

func demoEmail(id int) string { return fmt.Sprintf("user%d@example.com", id) }

type runResult struct {
	name        string
	lookups     int
	dbQueries   int64
	median, p99 time.Duration
}

// workload runs cfg.lookups zipf-distributed lookups over cfg.conc
// goroutines and reports the latency and the statements the database saw.
func workload(ctx context.Context, db *sql.DB, d *demoDatabase, cfg demoConfig, name string, stderr io.Writer) (runResult, error) {
	db.SetMaxOpenConns(cfg.conc)
	db.SetMaxIdleConns(cfg.conc)
	byID, byEmail := "SELECT id, email, name, bio, created_at FROM demo_users WHERE id = $1",
		"SELECT id, email, name, bio, created_at FROM demo_users WHERE email = $1"
	if d.driverName == "sqlite" {
		byID, byEmail = strings.Replace(byID, "$1", "?", 1), strings.Replace(byEmail, "$1", "?", 1)
	}
	if err := db.PingContext(ctx); err != nil { // open a connection: the catalog read is not a lookup
		return runResult{}, err
	}
	start := d.queries()
	var next atomic.Int64
	latencies := make([][]time.Duration, cfg.conc)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	progress := newProgress(stderr, name, cfg.lookups, cfg.quiet)
	for w := range cfg.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			zipf := rand.NewZipf(rng, 1.1, 1, uint64(cfg.rows-1))
			var row struct {
				id               int64
				email, name, bio string
				created          time.Time
			}
			for next.Add(1) <= int64(cfg.lookups) {
				id := int(zipf.Uint64()) + 1
				t0 := time.Now()
				var err error
				if rng.IntN(5) == 0 {
					err = db.QueryRowContext(ctx, byEmail, demoEmail(id)).Scan(&row.id, &row.email, &row.name, &row.bio, &row.created)
				} else {
					err = db.QueryRowContext(ctx, byID, id).Scan(&row.id, &row.email, &row.name, &row.bio, &row.created)
				}
				latencies[w] = append(latencies[w], time.Since(t0))
				if err == nil && row.id != int64(id) {
					err = fmt.Errorf("lookup of user %d returned user %d", id, row.id)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				progress.step()
			}
		}()
	}
	wg.Wait()
	progress.done()
	if firstErr != nil {
		return runResult{}, fmt.Errorf("demo: %s: %w", name, firstErr)
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	return runResult{
		name: name, lookups: len(all), dbQueries: d.queries() - start,
		median: all[len(all)/2], p99: all[len(all)*99/100],
	}, nil
}

// progress draws a bar on stderr, at most every 100ms.
type progress struct {
	w     io.Writer
	name  string
	total int64
	quiet bool
	n     atomic.Int64
	last  atomic.Int64 // UnixNano of the last draw
}

func newProgress(w io.Writer, name string, total int, quiet bool) *progress {
	return &progress{w: w, name: name, total: int64(total), quiet: quiet}
}

func (p *progress) step() {
	n := p.n.Add(1)
	now := time.Now().UnixNano()
	if p.quiet || now-p.last.Load() < int64(100*time.Millisecond) {
		return
	}
	p.last.Store(now)
	p.draw(n)
}

func (p *progress) draw(n int64) {
	const width = 30
	filled := int(n * width / p.total)
	fmt.Fprintf(p.w, "\r%-12s [%s%s] %3d%%", p.name, strings.Repeat("#", filled), strings.Repeat(" ", width-filled), n*100/p.total)
}

func (p *progress) done() {
	if !p.quiet {
		p.draw(p.total)
		fmt.Fprintln(p.w)
	}
}

// countingTracer counts the queries pgx sends to PostgreSQL.
type countingTracer struct{ n atomic.Int64 }

func (t *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	t.n.Add(1)
	return ctx
}

func (t *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// dsnConnector opens every connection with the same DSN, as database/sql
// does for drivers without a connector of their own.
type dsnConnector struct {
	dsn    string
	driver driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.driver }
