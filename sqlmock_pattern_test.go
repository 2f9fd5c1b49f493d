package cachedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
)

// The go-sqlmock pattern for users' own tests (ExampleNewConnector_sqlmock
// shows it): cachedsql over sqlmock through NewConnector and the in-process
// cache. sqlmock fails on any statement it does not expect and reports
// expectations not met, so ExpectationsWereMet proves how often a
// statement reached the "database".
//
// With a generic driver such as sqlmock, cachedsql does not read the
// catalog (it is not known to be PostgreSQL): key lookups are cached as
// usual, but a write cannot flush single keys. It bumps the tables it
// writes (every cached row of them is flushed), and runs exactly as the
// caller sent it, so the mock's expectations for writes are the same with
// and without cachedsql.

const smRules = `
tables:
  users:
    keys: [[id], [email]]
`

// openSqlmockCached returns a cachedsql DB over a fresh sqlmock, caching
// users (smRules) in an in-process cache.
func openSqlmockCached(t *testing.T) (*sql.DB, sqlmock.Sqlmock, *cachedsql.Connector) {
	t.Helper()
	dsn := "cachedsql_pattern_" + t.Name()
	mockDB, mock, err := sqlmock.NewWithDSN(dsn, sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mockDB.Close() })
	rules, err := cachedsql.ParseRules([]byte(smRules))
	if err != nil {
		t.Fatal(err)
	}
	cn, err := cachedsql.NewConnector(sqlmockConnector{dsn: dsn, drv: mockDB.Driver()}, cachedsql.Config{
		Rules: rules,
		Cache: cachedsql.NewMemoryCache(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(cn)
	t.Cleanup(func() { db.Close() })
	return db, mock, cn
}

const (
	smByID    = "SELECT name FROM users WHERE id = $1"
	smByEmail = "SELECT name FROM users WHERE email = $1"
)

// smName runs a lookup and returns the name, or "<none>" for no row.
func smName(t *testing.T, db *sql.DB, query string, arg any) string {
	t.Helper()
	var name string
	err := db.QueryRowContext(context.Background(), query, arg).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "<none>"
	}
	if err != nil {
		t.Fatalf("%s %v: %v", query, arg, err)
	}
	return name
}

// smExpectName expects one lookup returning name ("" for no row).
func smExpectName(mock sqlmock.Sqlmock, query string, arg any, name string) {
	rows := sqlmock.NewRows([]string{"name"})
	if name != "" {
		rows.AddRow(name)
	}
	mock.ExpectQuery(query).WithArgs(arg).WillReturnRows(rows)
}

// met fails unless every expectation so far was met: each expected
// statement reached the mock exactly as often as expected (an extra one
// would have failed the call that sent it).
func met(t *testing.T, mock sqlmock.Sqlmock, what string) {
	t.Helper()
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestSqlmockPatternLookups: a repeated key lookup reaches the mock once,
// by each key, and so does a lookup that finds no row.
func TestSqlmockPatternLookups(t *testing.T) {
	db, mock, cn := openSqlmockCached(t)
	smExpectName(mock, smByID, 1, "ann")
	smExpectName(mock, smByEmail, "ann@example.com", "ann")
	smExpectName(mock, smByID, 2, "")
	for range 3 {
		if got := smName(t, db, smByID, 1); got != "ann" {
			t.Errorf("by id 1: %q; want ann", got)
		}
		if got := smName(t, db, smByEmail, "ann@example.com"); got != "ann" {
			t.Errorf("by email: %q; want ann", got)
		}
		if got := smName(t, db, smByID, 2); got != "<none>" {
			t.Errorf("by id 2: %q; want <none>", got)
		}
	}
	met(t, mock, "three rounds of three lookups")
	if st := cn.Stats(); st.Hits != 4 || st.NegativeHits != 2 || st.Misses != 3 {
		t.Errorf("stats: %d hits, %d negative hits, %d misses; want 4, 2, 3", st.Hits, st.NegativeHits, st.Misses)
	}

	// A query that is not a key lookup always reaches the mock.
	for range 2 {
		mock.ExpectQuery("SELECT name FROM users WHERE name LIKE $1").WithArgs("a%").
			WillReturnRows(sqlmock.NewRows([]string{"name"}).AddRow("ann"))
		if got := smName(t, db, "SELECT name FROM users WHERE name LIKE $1", "a%"); got != "ann" {
			t.Errorf("LIKE: %q; want ann", got)
		}
	}
	met(t, mock, "two LIKE queries")
}

// TestSqlmockPatternWrites: writes reach the mock exactly as sent, and
// flush: the cached table is bumped, so after an autocommit Exec or a
// committed transaction every lookup of users reaches the mock again; a
// rolled-back transaction flushes nothing.
func TestSqlmockPatternWrites(t *testing.T) {
	ctx := context.Background()
	db, mock, cn := openSqlmockCached(t)
	warm := func(what, name1 string) {
		t.Helper()
		smExpectName(mock, smByID, 1, name1)
		smExpectName(mock, smByID, 2, "")
		for range 2 {
			if got := smName(t, db, smByID, 1); got != name1 {
				t.Errorf("%s: by id 1: %q; want %q", what, got, name1)
			}
			if got := smName(t, db, smByID, 2); got != "<none>" {
				t.Errorf("%s: by id 2: %q; want <none>", what, got)
			}
		}
		met(t, mock, what)
	}
	warm("before the writes", "ann")

	// An autocommit Exec: the statement as written, then both lookups
	// (the row's and the cached miss) are flushed.
	mock.ExpectExec("UPDATE users SET name = $1 WHERE id = $2").WithArgs("bob", 1).
		WillReturnResult(sqlmock.NewResult(0, 1))
	res, err := db.ExecContext(ctx, "UPDATE users SET name = $1 WHERE id = $2", "bob", 1)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Errorf("RowsAffected: %d; want 1", n)
	}
	warm("after an autocommit UPDATE", "bob")

	// A committed transaction.
	mock.ExpectBegin()
	mock.ExpectExec("INSERT INTO users (id, name, email) VALUES ($1, $2, $3)").WithArgs(3, "cy", "cy@example.com").
		WillReturnResult(sqlmock.NewResult(3, 1))
	mock.ExpectCommit()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO users (id, name, email) VALUES ($1, $2, $3)", 3, "cy", "cy@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	warm("after a committed INSERT", "bob")

	// A rolled-back transaction flushes nothing: the lookups stay hits.
	mock.ExpectBegin()
	mock.ExpectExec("DELETE FROM users WHERE id = $1").WithArgs(1).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectRollback()
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM users WHERE id = $1", 1); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := smName(t, db, smByID, 1); got != "bob" {
		t.Errorf("after rollback: by id 1: %q; want bob", got)
	}
	met(t, mock, "after a rolled-back DELETE")

	// A write through Query (RETURNING of the caller's own) flushes too.
	mock.ExpectQuery("DELETE FROM users WHERE id = $1 RETURNING name").WithArgs(1).
		WillReturnRows(sqlmock.NewRows([]string{"name"}).AddRow("bob"))
	if got := smName(t, db, "DELETE FROM users WHERE id = $1 RETURNING name", 1); got != "bob" {
		t.Errorf("DELETE RETURNING: %q; want bob", got)
	}
	smExpectName(mock, smByID, 1, "")
	if got := smName(t, db, smByID, 1); got != "<none>" {
		t.Errorf("after DELETE RETURNING: by id 1: %q; want <none>", got)
	}
	met(t, mock, "after DELETE ... RETURNING")

	if st := cn.Stats(); st.TableBumps != 3 {
		t.Errorf("stats: %d table bumps; want 3 (UPDATE, committed INSERT, DELETE)", st.TableBumps)
	}
}

// seqTracer records, in order, every statement pgx sends; seqCache records
// every cache operation that writes, in the same sequence.
type seqLog struct {
	mu  sync.Mutex
	seq []string
}

func (l *seqLog) add(s string) {
	l.mu.Lock()
	l.seq = append(l.seq, s)
	l.mu.Unlock()
}

func (l *seqLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seq)
}

type seqTracer struct{ log *seqLog }

func (tr seqTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	tr.log.add("db: " + data.SQL)
	return ctx
}

func (seqTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

type seqCache struct {
	cachedsql.Cache
	log  *seqLog
	keys map[string]string // entry key -> a name for it
}

func (c seqCache) note(op, key string) {
	if name, ok := c.keys[key]; ok {
		c.log.add("cache: " + op + " " + name)
	}
}

func (c seqCache) Add(ctx context.Context, it *cachedsql.Item) error {
	c.note("add", it.Key)
	return c.Cache.Add(ctx, it)
}

func (c seqCache) Set(ctx context.Context, it *cachedsql.Item) error {
	c.note("set", it.Key)
	return c.Cache.Set(ctx, it)
}

func (c seqCache) CompareAndSwap(ctx context.Context, it *cachedsql.Item) error {
	c.note("cas", it.Key)
	return c.Cache.CompareAndSwap(ctx, it)
}

func (c seqCache) Delete(ctx context.Context, key string) error {
	c.note("delete", key)
	return c.Cache.Delete(ctx, key)
}

// TestWriteOrderPostgres shows what sqlmock cannot: on PostgreSQL (pgx), a
// key-changing UPDATE in autocommit runs in a transaction of cachedsql's
// own, in this order: BEGIN, the pre-read of the old keys (SELECT ... FOR
// UPDATE), the UPDATE with the key columns appended to RETURNING, the
// tombstones on the old and new keys' entries, COMMIT, then their release.
// The statements are seen at the pgx tracer and the cache operations by a
// wrapper around the cache.
func TestWriteOrderPostgres(t *testing.T) {
	e := newRPEnv(t,
		`CREATE TABLE @.users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL)`,
		`INSERT INTO @.users VALUES (1, 'ann@example.com', 'Ann')`)
	rules, err := cachedsql.ParseRules([]byte("tables:\n  users:\n    keys: [[id], [email]]\n"))
	if err != nil {
		t.Fatal(err)
	}
	log := &seqLog{}
	pcfg, err := pgx.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.Tracer = seqTracer{log}
	cache := seqCache{Cache: cachedsql.NewMemoryCache(0), log: log, keys: map[string]string{}}
	cn, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cachedsql.Config{Rules: rules, Cache: cache, Namespace: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(cn)
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]any{"old-email": {"ann@example.com"}, "new-email": {"ann@new.example"}} {
		k, _, ok := cachedsql.LookupKeys(cn, "SELECT name FROM users WHERE email = $1", args...)
		if !ok {
			t.Fatal("email lookup not cacheable")
		}
		cache.keys[k] = name
	}
	k, _, ok := cachedsql.LookupKeys(cn, "SELECT name FROM users WHERE id = $1", 1)
	if !ok {
		t.Fatal("id lookup not cacheable")
	}
	cache.keys[k] = "id"

	start := len(log.snapshot())
	if _, err := db.Exec("UPDATE users SET email = $1 WHERE id = $2", "ann@new.example", 1); err != nil {
		t.Fatal(err)
	}
	seq := log.snapshot()[start:]
	t.Logf("sequence:\n%s", strings.Join(seq, "\n"))

	// Where each step happened; -1 if it did not.
	find := func(pred func(string) bool) int { return slices.IndexFunc(seq, pred) }
	dbIs := func(prefix string) func(string) bool {
		return func(s string) bool { return strings.HasPrefix(strings.ToLower(s), "db: "+prefix) }
	}
	begin := find(dbIs("begin"))
	preRead := find(func(s string) bool {
		return dbIs("select")(s) && strings.Contains(s, "FOR UPDATE") || dbIs("select")(s) && strings.Contains(s, "FOR NO KEY UPDATE")
	})
	update := find(func(s string) bool { return dbIs("update users")(s) && strings.Contains(s, "RETURNING") })
	commit := find(dbIs("commit"))
	protectOf := func(name string) int {
		return find(func(s string) bool { return strings.HasPrefix(s, "cache: ") && strings.HasSuffix(s, " "+name) })
	}
	lastOf := func(name string) int {
		i := -1
		for j, s := range seq {
			if strings.HasPrefix(s, "cache: ") && strings.HasSuffix(s, " "+name) {
				i = j
			}
		}
		return i
	}
	if begin < 0 || preRead < 0 || update < 0 || commit < 0 {
		t.Fatalf("missing a step: begin %d, pre-read %d, update %d, commit %d", begin, preRead, update, commit)
	}
	if !(begin < preRead && preRead < update && update < commit) {
		t.Errorf("database order: begin %d, pre-read %d, update %d, commit %d; want increasing", begin, preRead, update, commit)
	}
	for _, name := range []string{"id", "old-email", "new-email"} {
		first, last := protectOf(name), lastOf(name)
		if !(update < first && first < commit) {
			t.Errorf("%s: first cache write at %d; want between the UPDATE (%d) and COMMIT (%d)", name, first, update, commit)
		}
		if last <= commit {
			t.Errorf("%s: no cache write after COMMIT (%d; last at %d): markers not released", name, commit, last)
		}
	}
}
