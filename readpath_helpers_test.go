package cachedsql_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// The read-path tests count what reaches PostgreSQL at a layer cachedsql
// does not control: a pgx tracer on the wrapped connections, which sees
// every statement pgx sends, whoever asked for it. cachedsql's Stats are
// checked too, but only in addition to the tracer's counts.

// rpTracer counts statements by SQL text (pgx.QueryTracer) and explicit
// prepares (pgx.PrepareTracer). A query naming a prepared statement counts
// under the statement's SQL.
type rpTracer struct {
	mu       sync.Mutex
	queries  map[string]int
	prepares map[string]int
	names    map[string]string // prepared statement name -> SQL
}

func newRPTracer() *rpTracer {
	return &rpTracer{queries: map[string]int{}, prepares: map[string]int{}, names: map[string]string{}}
}

func (tr *rpTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	q := data.SQL
	if s, ok := tr.names[q]; ok {
		q = s
	}
	tr.queries[q]++
	return ctx
}

func (tr *rpTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (tr *rpTracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if data.Name != "" {
		tr.names[data.Name] = data.SQL
	}
	tr.prepares[data.SQL]++
	return ctx
}

func (tr *rpTracer) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// count is how many times query reached PostgreSQL.
func (tr *rpTracer) count(query string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.queries[query]
}

// prepared is how many times query was prepared explicitly.
func (tr *rpTracer) prepared(query string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.prepares[query]
}

// rpEnv is one test's schema on the test database, with a plain pgx pool
// (no cachedsql) for setup and direct writes.
type rpEnv struct {
	schema string
	dsn    string // the test DSN with search_path set to schema
	admin  *pgxpool.Pool
}

// newRPEnv creates a unique schema and runs ddl in it; "@." in ddl names
// the schema. The schema is dropped when the test ends.
func newRPEnv(t *testing.T, ddl ...string) *rpEnv {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	var b [6]byte
	rand.Read(b[:])
	schema := "rp_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(admin.Close)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("CREATE SCHEMA: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("DROP SCHEMA %s: %v", schema, err)
		}
	})
	e := &rpEnv{schema: schema, admin: admin}
	for _, s := range ddl {
		e.exec(t, s)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse DSN %q: %v", dsn, err)
	}
	qv := u.Query()
	qv.Set("search_path", schema)
	u.RawQuery = qv.Encode()
	e.dsn = u.String()
	return e
}

// q replaces every "@." with the schema.
func (e *rpEnv) q(s string) string { return strings.ReplaceAll(s, "@.", e.schema+".") }

// exec runs a statement through the plain pgx pool, bypassing cachedsql.
func (e *rpEnv) exec(t *testing.T, s string, args ...any) {
	t.Helper()
	if _, err := e.admin.Exec(context.Background(), e.q(s), args...); err != nil {
		t.Fatalf("%s: %v", e.q(s), err)
	}
}

// rpBackend is a cache backend the test bodies run against.
type rpBackend struct {
	name  string
	cache func(t *testing.T) cachedsql.Cache
}

var rpBackends = []rpBackend{
	{"memory", func(*testing.T) cachedsql.Cache { return cachedsql.NewMemoryCache(0) }},
	{"memcached", func(t *testing.T) cachedsql.Cache {
		return cachedsql.Memcache(memcache.New(testenv.MemcacheAddr(t)))
	}},
}

// forEachBackend runs body once per backend, as subtests.
func forEachBackend(t *testing.T, body func(t *testing.T, b rpBackend)) {
	for _, b := range rpBackends {
		t.Run(b.name, func(t *testing.T) { body(t, b) })
	}
}

// rpDB is a cachedsql pool over pgx with a tracer and a capturing logger.
type rpDB struct {
	*sql.DB
	tr    *rpTracer
	cn    *cachedsql.Connector
	logs  *rpLogs
	env   *rpEnv
	cache cachedsql.Cache
}

// open opens cachedsql on the env's database with rules (YAML, "@." is
// the schema) and b's cache, under a namespace no other run shares.
func (e *rpEnv) open(t *testing.T, b rpBackend, rulesYAML string) *rpDB {
	t.Helper()
	rules, err := cachedsql.ParseRules([]byte(e.q(rulesYAML)))
	if err != nil {
		t.Fatalf("ParseRules: %v", err)
	}
	pcfg, err := pgx.ParseConfig(e.dsn)
	if err != nil {
		t.Fatalf("pgx.ParseConfig: %v", err)
	}
	tr := newRPTracer()
	pcfg.Tracer = tr
	logs := &rpLogs{}
	var nb [8]byte
	rand.Read(nb[:])
	cache := b.cache(t)
	cn, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cachedsql.Config{
		Rules:     rules,
		Cache:     cache,
		Namespace: t.Name() + "-" + hex.EncodeToString(nb[:]),
		Logger:    slog.New(logs),
		// Generous: these tests are about what reaches the database, not
		// about failing open when a loaded machine makes the cache slow.
		CacheTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(cn)
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	return &rpDB{DB: db, tr: tr, cn: cn, logs: logs, env: e, cache: cache}
}

// wantDB fails unless query reached PostgreSQL exactly want times so far.
func (d *rpDB) wantDB(t *testing.T, what, query string, want int) {
	t.Helper()
	if got := d.tr.count(query); got != want {
		st := d.cn.Stats()
		t.Errorf("%s: database saw %q %d times; want %d (cache errors %d, breaker trips %d, lease waits %d, races lost %d)",
			what, query, got, want, st.CacheErrors, st.BreakerTrips, st.LeaseWaits, st.FillRacesLost)
	}
}

// entryKey is the cache item a lookup of query with args uses.
func (d *rpDB) entryKey(t *testing.T, query string, args ...any) string {
	t.Helper()
	k, _, ok := cachedsql.LookupKeys(d.cn, query, args...)
	if !ok {
		t.Fatalf("%s %v: not a cacheable lookup", query, args)
	}
	return k
}

// rpDelta is the change of the counters the read path moves.
type rpDelta struct {
	Hits, NegativeHits, Misses, Fills, RuleViolations, LeaseWaits uint64
}

func deltaOf(before, after cachedsql.Stats) rpDelta {
	return rpDelta{
		Hits:           after.Hits - before.Hits,
		NegativeHits:   after.NegativeHits - before.NegativeHits,
		Misses:         after.Misses - before.Misses,
		Fills:          after.Fills - before.Fills,
		RuleViolations: after.RuleViolations - before.RuleViolations,
		LeaseWaits:     after.LeaseWaits - before.LeaseWaits,
	}
}

// wantStats fails unless the counters moved by want since before.
func (d *rpDB) wantStats(t *testing.T, what string, before cachedsql.Stats, want rpDelta) {
	t.Helper()
	if got := deltaOf(before, d.cn.Stats()); got != want {
		t.Errorf("%s: stats moved by %+v; want %+v", what, got, want)
	}
}

// rpUser is a row of the users fixture.
type rpUser struct {
	ID    int64
	Email string
	Name  string
}

// user runs query (id, email, name) with args and scans one row; err is
// QueryRow's, sql.ErrNoRows included.
func queryUser(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, query string, args ...any) (rpUser, error) {
	var u rpUser
	err := q.QueryRowContext(ctx, query, args...).Scan(&u.ID, &u.Email, &u.Name)
	return u, err
}

// mustUser is queryUser that fails the test on error.
func mustUser(t *testing.T, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, query string, args ...any) rpUser {
	t.Helper()
	u, err := queryUser(context.Background(), q, query, args...)
	if err != nil {
		t.Fatalf("%s %v: %v", query, args, err)
	}
	return u
}

// rpLogs is a slog.Handler that keeps every record.
type rpLogs struct {
	mu      sync.Mutex
	records []rpRecord
}

type rpRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (h *rpLogs) Enabled(context.Context, slog.Level) bool { return true }

func (h *rpLogs) Handle(_ context.Context, r slog.Record) error {
	rec := rpRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	return nil
}

func (h *rpLogs) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *rpLogs) WithGroup(string) slog.Handler      { return h }

// matching returns the records at level whose message contains msg.
func (h *rpLogs) matching(level slog.Level, msg string) []rpRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []rpRecord
	for _, r := range h.records {
		if r.level == level && strings.Contains(r.msg, msg) {
			out = append(out, r)
		}
	}
	return out
}

// rpCtx is a context with a deadline for one test step.
func rpCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
