// Package bench measures cachedsql against the alternatives a user has:
// plain database/sql on pgx, a raw memcached Get of the same bytes (the
// floor), a hand-written cache-aside function, the in-process cache, a
// pass-through of a statement cachedsql does not cache, and a prepared
// statement. Contenders are interleaved round by round and every figure
// reported is a median over rounds, so that a noisy machine moves all of
// them alike. Run it with `go test -bench . ./bench` or `cachedsql bench`.
package bench

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // the embedded default

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/countdriver"
)

// entryTTL is how long the benchmark's cached rows live: longer than a run.
const entryTTL = 6 * time.Hour

// Table is the benchmark table's default name (Config.Table): ~250-byte
// rows, a primary key and a natural key.
const Table = "bench_users"

// rulesYAML is the key rules of the benchmark table named %s.
const rulesYAML = `
tables:
  %s:
    keys: [[id], [email]]
`

// tableName matches the table names Config.Table accepts: they go into
// SQL unquoted.
var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// User is one row of the benchmark table.
type User struct {
	ID      int64     `json:"id"`
	Email   string    `json:"email"`
	Name    string    `json:"name"`
	Bio     string    `json:"bio"`
	Created time.Time `json:"created_at"`
}

var bio = strings.Repeat("cachedsql keeps hot rows in memcached; ", 5)[:190]

// rawRowSize is the row's raw size: the bytes of its column values.
func rawRowSize(id int) int {
	return 8 + len(email(id)) + len(name(id)) + len(bio) + 8
}

func email(id int) string { return "user" + strconv.Itoa(id) + "@example.com" }
func name(id int) string  { return "User " + strconv.Itoa(id) }

// Env is a loaded database and the connections every contender uses.
type Env struct {
	Cfg      Config
	pg       bool
	dbName   string
	cacheTag string

	byID, byEmail, passQ, update string
	updateNameFirst              bool

	plain      *sql.DB // a: database/sql on the plain driver
	cached     *sql.DB // b: cachedsql on memcached (or the in-process cache on SQLite)
	cachedMem  *sql.DB // e: cachedsql on the in-process cache (PostgreSQL mode)
	prepByID   *sql.Stmt
	floorDB    *sql.DB          // c3: one memcached Get behind database/sql
	mc         *memcache.Client // shared by b, c and d; nil in embedded mode
	memCache   cachedsql.Cache  // the in-process cache of e (of b in embedded mode)
	cachedConn *cachedsql.Connector
	memConn    *cachedsql.Connector
	namespace  string

	// Statements that reached the database below cachedsql (pgx tracer on
	// PostgreSQL, countdriver on SQLite), and below plain.
	cachedReads, cachedWrites, cachedPrepares *atomic.Int64
	plainReads                                *atomic.Int64

	// Keys cachedsql stored, learnt by watching its cache calls while warming.
	entryByID, entryByEmail []string // index id
	genByID                 []string
	emails, floorKeys       []string // index id
	floorEmailKeys          []string

	servers        []string
	rules          cachedsql.Rules
	cachedConnBase driver.Connector
	cacheTimeout   time.Duration
	leaseWait      time.Duration
	defaultsDB     *sql.DB
	mcDefaults     *memcache.Client
	pgcfg          *pgx.ConnConfig
	rec            *recorder
	warmDB         *sql.DB

	closers []func()
}

// countTracer counts what pgx sends to PostgreSQL, by kind of statement.
type countTracer struct {
	reads, writes, prepares atomic.Int64
}

func (t *countTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s := strings.TrimSpace(d.SQL)
	if len(s) >= 6 && strings.EqualFold(s[:6], "select") {
		t.reads.Add(1)
	} else {
		t.writes.Add(1)
	}
	return ctx
}

func (t *countTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (t *countTracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	t.prepares.Add(1)
	return ctx
}

func (t *countTracer) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// newMemcache builds the Cache cachedsql's contenders use: NewMemcache,
// what CACHEDSQL_CACHE=memcache://... configures, with a pool for the
// highest concurrency measured and the same timeout as the other clients.
func newMemcache(servers []string) (cachedsql.Cache, error) {
	return cachedsql.NewMemcache(cachedsql.MemcacheConfig{Servers: servers, Timeout: time.Second, MaxIdleConns: 64})
}

// recorder watches cachedsql's cache calls while warming, to learn the keys
// it reads (the floor reads the very same items).
type recorder struct {
	cachedsql.Cache
	mu    sync.Mutex
	reads map[string]int // key -> GetMulti calls naming it
	pairs map[string]string
	on    atomic.Bool
}

func newRecorder(c cachedsql.Cache) *recorder {
	r := &recorder{Cache: c, reads: map[string]int{}, pairs: map[string]string{}}
	r.on.Store(true)
	return r
}

func (r *recorder) GetMulti(ctx context.Context, keys []string) (map[string]*cachedsql.Item, error) {
	if r.on.Load() {
		r.mu.Lock()
		for _, k := range keys {
			r.reads[k]++
		}
		if len(keys) == 2 {
			r.pairs[keys[0]] = keys[1]
		}
		r.mu.Unlock()
	}
	return r.Cache.GetMulti(ctx, keys)
}

// keyValue is the last field of a readable entry key of table
// ("cs1:<ns>:<n>:public.bench_users:<n>:id:<n>:<value>:") and its rule.
func keyValue(k, table string) (rule, value string, ok bool) {
	f := strings.Split(strings.TrimSuffix(k, ":"), ":")
	if len(f) < 8 || !strings.HasSuffix(f[3], "."+table) {
		return "", "", false
	}
	return f[5], f[7], true
}

// Open loads the table (reusing one of the right size) and opens every
// contender's connections.
func Open(ctx context.Context, cfg Config) (*Env, error) {
	cfg = cfg.withDefaults()
	e := &Env{Cfg: cfg, pg: cfg.DSN != ""}
	e.namespace = fmt.Sprintf("bench-%d", time.Now().UnixNano())
	table := cfg.Table
	if !tableName.MatchString(table) {
		return nil, fmt.Errorf("bench: table name %q: want lower-case letters, digits and underscores", table)
	}
	rules, err := cachedsql.ParseRules(fmt.Appendf(nil, rulesYAML, table))
	if err != nil {
		return nil, err
	}
	n := cfg.Rows
	e.emails = make([]string, n+1)
	e.floorKeys = make([]string, n+1)
	e.floorEmailKeys = make([]string, n+1)
	for id := 1; id <= n; id++ {
		e.emails[id] = email(id)
		e.floorKeys[id] = "benchaside:" + e.namespace + ":user:" + strconv.Itoa(id)
		e.floorEmailKeys[id] = "benchaside:" + e.namespace + ":email:" + strconv.Itoa(id)
	}
	cols := "id, email, name, bio, created_at"
	if e.pg {
		e.byID = "SELECT " + cols + " FROM " + table + " WHERE id = $1"
		e.byEmail = "SELECT " + cols + " FROM " + table + " WHERE email = $1"
		e.passQ = "SELECT " + cols + " FROM " + table + " WHERE id = $1 LIMIT 2" // LIMIT 2: never cacheable
		e.update = "UPDATE " + table + " SET name = $2 WHERE id = $1"
	} else {
		e.byID = "SELECT " + cols + " FROM " + table + " WHERE id = ?"
		e.byEmail = "SELECT " + cols + " FROM " + table + " WHERE email = ?"
		e.passQ = "SELECT " + cols + " FROM " + table + " WHERE id = ? LIMIT 2"
		e.update = "UPDATE " + table + " SET name = ? WHERE id = ?"
		e.updateNameFirst = true
	}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	// Room for every row by both keys (~0.5 KB accounted each), so that
	// contender e's lookups are all hits at a million rows too.
	e.memCache = cachedsql.NewMemoryCache(max(1<<30, int64(n)*2*1024))
	var cache cachedsql.Cache
	if e.pg {
		e.servers = strings.Split(cfg.Memcache, ",")
		e.mc = memcacheClient(e.servers, 8)
		if err := e.mc.Ping(); err != nil {
			return nil, fmt.Errorf("bench: memcached at %s: %w", cfg.Memcache, err)
		}
		if cache, err = newMemcache(e.servers); err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { cache.(io.Closer).Close() })
		e.cacheTag = "memcached " + cfg.Memcache
	} else {
		cache = e.memCache
		e.cacheTag = "in-process cache"
	}
	rec := newRecorder(cache)
	e.rec = rec
	e.rules, e.cacheTimeout, e.leaseWait = rules, time.Second, 200*time.Millisecond
	// entryTTL outlives the warm-up of a million rows (~20 minutes), so
	// that the contenders measured after it find every row still cached.
	ccfg := cachedsql.Config{Rules: rules, Namespace: e.namespace, CacheTimeout: e.cacheTimeout, LeaseWait: e.leaseWait, TTL: entryTTL}

	var plainConn, cachedBase, warmBase, memBase driver.Connector
	if e.pg {
		pgcfg, err := pgx.ParseConfig(cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("bench: -dsn: %w", err)
		}
		e.dbName = fmt.Sprintf("PostgreSQL %s/%s", pgcfg.Host, pgcfg.Database)
		e.pgcfg = pgcfg
		if err := loadPostgres(ctx, pgcfg, table, n); err != nil {
			return nil, err
		}
		pt, ct, mt := &countTracer{}, &countTracer{}, &countTracer{}
		plainConn = connectorWith(pgcfg, pt)
		cachedBase = connectorWith(pgcfg, ct)
		warmBase = connectorWith(pgcfg, &countTracer{})
		memBase = connectorWith(pgcfg, mt)
		e.plainReads = &pt.reads
		e.cachedReads, e.cachedWrites, e.cachedPrepares = &ct.reads, &ct.writes, &ct.prepares
	} else {
		dir, err := os.MkdirTemp("", "cachedsql-bench")
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { os.RemoveAll(dir) })
		path := filepath.Join(dir, "bench.db")
		e.dbName = "embedded SQLite"
		if err := loadSQLite(ctx, path, table, n); err != nil {
			return nil, err
		}
		probe, err := sql.Open("sqlite", path)
		if err != nil {
			return nil, err
		}
		drv := probe.Driver()
		probe.Close()
		base := dsnConnector{dsn: path + "?_pragma=busy_timeout(5000)", driver: drv}
		pc, cc := countdriver.New(base), countdriver.New(base)
		plainConn, cachedBase, warmBase, memBase = pc, cc, base, base
		e.plainReads = &pc.Statements
		e.cachedReads, e.cachedWrites, e.cachedPrepares = &cc.Statements, new(atomic.Int64), new(atomic.Int64)
	}
	e.cachedConnBase = cachedBase
	e.plain = e.track(sql.OpenDB(plainConn))
	ccfg.Cache = cache
	if e.cachedConn, err = cachedsql.NewConnector(cachedBase, ccfg); err != nil {
		return nil, err
	}
	e.cached = e.track(sql.OpenDB(e.cachedConn))
	ccfg.Cache = rec
	warmConn, err := cachedsql.NewConnector(warmBase, ccfg)
	if err != nil {
		return nil, err
	}
	warm := e.track(sql.OpenDB(warmConn))
	e.warmDB = warm
	if e.pg {
		ccfg.Cache = e.memCache
		if e.memConn, err = cachedsql.NewConnector(memBase, ccfg); err != nil {
			return nil, err
		}
		e.cachedMem = e.track(sql.OpenDB(e.memConn))
	}
	if e.prepByID, err = e.cached.PrepareContext(ctx, e.byID); err != nil {
		return nil, err
	}
	// Warm every key, watching cachedsql's cache reads to learn its keys.
	if err := e.warm(ctx, warm, rec); err != nil {
		return nil, err
	}
	if e.cachedMem != nil {
		if err := e.warmPool(ctx, e.cachedMem, false); err != nil { // e reads by id only
			return nil, err
		}
	}
	if e.mc != nil {
		if err := e.warmAside(ctx); err != nil {
			return nil, err
		}
		e.floorDB = newFloorDB(e)
	}
	ok = true
	return e, nil
}

func connectorWith(c *pgx.ConnConfig, t pgx.QueryTracer) driver.Connector {
	c = c.Copy()
	c.Tracer = t
	return stdlib.GetConnector(*c)
}

func (e *Env) track(db *sql.DB) *sql.DB {
	e.closers = append(e.closers, func() { db.Close() })
	return db
}

// Close releases everything Open opened.
func (e *Env) Close() {
	if e.prepByID != nil {
		e.prepByID.Close()
	}
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

// warm reads every row by both keys through db, in parallel.
func (e *Env) warmPool(ctx context.Context, db *sql.DB, emails bool) error {
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	var next atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			var u User
			for {
				id := int(next.Add(1))
				if id > e.Cfg.Rows {
					errs <- nil
					return
				}
				if err := scanUser(db.QueryRowContext(ctx, e.byID, id), &u, id); err != nil {
					errs <- err
					return
				}
				if emails {
					if err := scanUser(db.QueryRowContext(ctx, e.byEmail, e.emails[id]), &u, id); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	var first error
	for range 8 {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (e *Env) warm(ctx context.Context, db *sql.DB, rec *recorder) error {
	if err := e.warmPool(ctx, db, true); err != nil {
		return err
	}
	rec.on.Store(false)
	n := e.Cfg.Rows
	e.entryByID = make([]string, n+1)
	e.entryByEmail = make([]string, n+1)
	e.genByID = make([]string, n+1)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	found := 0
	for k, gen := range rec.pairs {
		rule, v, ok := keyValue(k, e.Cfg.Table)
		if !ok {
			continue
		}
		switch rule {
		case "id":
			if id, err := strconv.Atoi(v); err == nil && id >= 1 && id <= n {
				e.entryByID[id], e.genByID[id] = k, gen
				found++
			}
		case "email":
			var id int
			if _, err := fmt.Sscanf(v, "user%d@example.com", &id); err == nil && id >= 1 && id <= n {
				e.entryByEmail[id] = k
			}
		}
	}
	if found != n {
		return fmt.Errorf("bench: learnt %d of %d entry keys while warming", found, n)
	}
	return nil
}

// warmAside fills the hand-written cache-aside keys.
func (e *Env) warmAside(ctx context.Context) error {
	var next atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			a := e.aside()
			var u User
			for {
				id := int(next.Add(1))
				if id > e.Cfg.Rows {
					errs <- nil
					return
				}
				if err := a.getByID(ctx, id, &u); err != nil {
					errs <- err
					return
				}
				if err := a.getByEmail(ctx, id, &u); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var first error
	for range 8 {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func scanUser(r *sql.Row, u *User, want int) error {
	if err := r.Scan(&u.ID, &u.Email, &u.Name, &u.Bio, &u.Created); err != nil {
		return fmt.Errorf("bench: lookup of %d: %w", want, err)
	}
	if u.ID != int64(want) {
		return fmt.Errorf("bench: lookup of %d returned %d", want, u.ID)
	}
	return nil
}

// loadPostgres (re)creates table unless it already holds n rows.
func loadPostgres(ctx context.Context, cfg *pgx.ConnConfig, table string, n int) error {
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: PostgreSQL: %w", err)
	}
	defer c.Close(ctx)
	var have int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&have); err == nil && have == n {
		// Reset the names the 95/5 mix rewrites.
		_, err := c.Exec(ctx, "UPDATE "+table+" SET name = 'User ' || id WHERE name <> 'User ' || id")
		return err
	}
	for _, s := range []string{
		"DROP TABLE IF EXISTS " + table,
		"CREATE TABLE " + table + " (id BIGINT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, bio TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL)",
	} {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("bench: schema: %w", err)
		}
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = c.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "email", "name", "bio", "created_at"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			id := i + 1
			return []any{int64(id), email(id), name(id), bio, created.Add(time.Duration(id) * time.Second)}, nil
		}))
	if err != nil {
		return fmt.Errorf("bench: loading rows: %w", err)
	}
	_, err = c.Exec(ctx, "ANALYZE "+table)
	return err
}

func loadSQLite(ctx context.Context, path, table string, n int) error {
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, bio TEXT NOT NULL, created_at TIMESTAMP NOT NULL)"); err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, "INSERT INTO "+table+" VALUES (?, ?, ?, ?, ?)")
	if err != nil {
		return err
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for id := 1; id <= n; id++ {
		if _, err := ins.ExecContext(ctx, id, email(id), name(id), bio, created.Add(time.Duration(id)*time.Second)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

type dsnConnector struct {
	dsn    string
	driver driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.driver }
