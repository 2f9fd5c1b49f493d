package cachedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cachedsql/cachedsql"
)

// Issue 4, items 1 and 3: lookups that the rules make cacheable reach
// PostgreSQL once, everything else reaches it every time, and a "key" that
// is not unique gives the caller every row and caches nothing. Every test
// body runs on both cache backends, in a schema of its own, and counts
// database statements with a pgx tracer (rpTracer), not with Stats alone.

// rpDDL is the fixture. users is ruled by its bare name (resolved through
// the DSN's search_path); members and accounts by schema-qualified names.
var rpDDL = []string{
	`CREATE TABLE @.users (
		id bigint PRIMARY KEY,
		email text NOT NULL UNIQUE,
		name text NOT NULL,
		status text NOT NULL DEFAULT 'active',
		deleted_at timestamptz)`,
	`INSERT INTO @.users (id, email, name, status, deleted_at) VALUES
		(1, 'ann@x', 'Ann', 'active', NULL),
		(2, 'bob@x', 'Bob', 'banned', NULL),
		(3, 'cy@x', 'Cy', 'active', now())`,
	`CREATE TABLE @.members (org_id bigint, slug text, name text NOT NULL, PRIMARY KEY (org_id, slug))`,
	`INSERT INTO @.members VALUES (7, 'ops', 'Operations'), (7, 'dev', 'Development'), (8, 'ops', 'Other ops')`,
	`CREATE TABLE @.accounts (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL)`,
	`CREATE UNIQUE INDEX ON @.accounts (lower(email))`,
	`INSERT INTO @.accounts VALUES (1, 'a@x', 'Lower A')`,
	`CREATE TABLE @.nomiss (id bigint PRIMARY KEY, name text NOT NULL)`,
	`CREATE TABLE @.norule (id bigint PRIMARY KEY, name text NOT NULL)`,
	`INSERT INTO @.norule VALUES (1, 'n')`,
	`CREATE TABLE @.secret (id bigint PRIMARY KEY, name text NOT NULL)`,
	`ALTER TABLE @.secret ENABLE ROW LEVEL SECURITY`,
	`INSERT INTO @.secret VALUES (1, 's')`,
	`CREATE TABLE @.flushonly (id bigint PRIMARY KEY, name text NOT NULL)`,
	`INSERT INTO @.flushonly VALUES (1, 'f')`,
	`CREATE TABLE @.tags (id bigint PRIMARY KEY, label text NOT NULL)`,
	`INSERT INTO @.tags VALUES (1, 'red'), (2, 'red'), (3, 'blue')`,
}

const rpRules = `
tables:
  users:
    keys: [[id], [email]]
  "@.members":
    keys: [[org_id, slug]]
  "@.accounts":
    keys: [[id], [email]]
    normalize: {email: lower}
  nomiss:
    keys: [[id]]
    cache_misses: false
  secret:
    keys: [[id]]
  flushonly:
    keys: [[id]]
    mode: flush_only
  tags:
    keys: [[id], [label]]
`

// rpSetup gives a test body its own schema and a cachedsql pool on b.
func rpSetup(t *testing.T, b rpBackend) (*rpEnv, *rpDB) {
	t.Helper()
	e := newRPEnv(t, rpDDL...)
	return e, e.open(t, b, rpRules)
}

// TestReadPathConfiguredLookup: a lookup by primary key, as sqlc writes it
// (leading "-- name:" comment) and as plain text: the second call of each is
// served from the cache with the same values.
func TestReadPathConfiguredLookup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		_, d := rpSetup(t, b)
		for _, q := range []string{
			"-- name: GetUser :one\nSELECT id, email, name FROM users WHERE id = $1",
			"SELECT id, email, name FROM users WHERE id = $1",
		} {
			before := d.cn.Stats()
			first := mustUser(t, d, q, 1)
			second := mustUser(t, d, q, 1)
			want := rpUser{1, "ann@x", "Ann"}
			if first != want || second != want {
				t.Errorf("%q: got %+v then %+v; want %+v both times", q, first, second, want)
			}
			d.wantDB(t, "two calls", q, 1)
			d.wantStats(t, q, before, rpDelta{Hits: 1, Misses: 1, Fills: 1})
		}
	})
}

// TestReadPathNaturalAndCompositeKeys: lookups by a natural key, and by a
// composite key in either column order, which share one entry.
func TestReadPathNaturalAndCompositeKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		e, d := rpSetup(t, b)
		ctx := rpCtx(t)

		q := "SELECT id, email, name FROM users WHERE email = $1"
		for range 2 {
			if got, want := mustUser(t, d, q, "bob@x"), (rpUser{2, "bob@x", "Bob"}); got != want {
				t.Errorf("by email: got %+v; want %+v", got, want)
			}
		}
		d.wantDB(t, "by email twice", q, 1)

		// The qualified table name, with the key columns in either order.
		q1 := e.q("SELECT name FROM @.members WHERE org_id = $1 AND slug = $2")
		q2 := e.q("SELECT name FROM @.members WHERE slug = $1 AND org_id = $2")
		var n1, n2 string
		if err := d.QueryRowContext(ctx, q1, 7, "dev").Scan(&n1); err != nil {
			t.Fatalf("%s: %v", q1, err)
		}
		before := d.cn.Stats()
		if err := d.QueryRowContext(ctx, q2, "dev", 7).Scan(&n2); err != nil {
			t.Fatalf("%s: %v", q2, err)
		}
		if n1 != "Development" || n2 != "Development" {
			t.Errorf("composite key: got %q and %q; want %q both", n1, n2, "Development")
		}
		d.wantDB(t, "org_id, slug order", q1, 1)
		// One entry holds every shape read through one key, so the second
		// order is a miss of its own shape (one query), not of the key: its
		// own second call is a hit, and a flush of the key would drop both.
		if err := d.QueryRowContext(ctx, q2, "dev", 7).Scan(&n2); err != nil {
			t.Fatalf("%s: %v", q2, err)
		}
		d.wantDB(t, "slug, org_id order", q2, 1)
		d.wantStats(t, "second column order", before, rpDelta{Hits: 1, Misses: 1, Fills: 1})

		// Both orders use one item: dropping it drops both shapes.
		k1, k2 := d.entryKey(t, q1, 7, "dev"), d.entryKey(t, q2, "dev", 7)
		if k1 != k2 {
			t.Fatalf("column orders use entries %q and %q; want one", k1, k2)
		}
		if err := d.cache.Delete(ctx, k1); err != nil {
			t.Fatalf("Delete %s: %v", k1, err)
		}
		d.QueryRowContext(ctx, q1, 7, "dev").Scan(&n1)
		d.QueryRowContext(ctx, q2, "dev", 7).Scan(&n2)
		d.wantDB(t, "org_id, slug order after the entry was dropped", q1, 2)
		d.wantDB(t, "slug, org_id order after the entry was dropped", q2, 2)

		// Another org with the same slug is another key.
		if err := d.QueryRowContext(ctx, q2, "ops", 8).Scan(&n2); err != nil || n2 != "Other ops" {
			t.Errorf("(8, ops): got %q, %v; want %q", n2, err, "Other ops")
		}
		d.wantDB(t, "slug, org_id order, other key", q2, 3)
	})
}

// TestReadPathNormalizedKey: with normalize {email: lower}, lower(email) =
// lower($1) shares one entry for every spelling; plain email = $1 finds the
// row for its own spelling only, and must never serve another's result.
func TestReadPathNormalizedKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		e, d := rpSetup(t, b)
		ctx := rpCtx(t)

		ql := e.q("SELECT id, email, name FROM @.accounts WHERE lower(email) = lower($1)")
		before := d.cn.Stats()
		for _, spelling := range []string{"A@X", "a@x", "A@x"} {
			if got, want := mustUser(t, d, ql, spelling), (rpUser{1, "a@x", "Lower A"}); got != want {
				t.Errorf("lower(email) = lower(%q): got %+v; want %+v", spelling, got, want)
			}
		}
		d.wantDB(t, "three spellings", ql, 1)
		d.wantStats(t, "three spellings", before, rpDelta{Hits: 2, Misses: 1, Fills: 1})

		qp := e.q("SELECT id, email, name FROM @.accounts WHERE email = $1")
		// Fill the exact spelling first, so a wrong key would serve it.
		if got, want := mustUser(t, d, qp, "a@x"), (rpUser{1, "a@x", "Lower A"}); got != want {
			t.Errorf("email = 'a@x': got %+v; want %+v", got, want)
		}
		for i := range 2 {
			u, err := queryUser(ctx, d, qp, "A@X")
			if !errors.Is(err, sql.ErrNoRows) {
				t.Errorf("email = 'A@X' (call %d): got %+v, %v; want sql.ErrNoRows (the row stores 'a@x')", i+1, u, err)
			}
		}
		// 'a@x' once, 'A@X' once (then its cached miss).
		d.wantDB(t, "plain email, two spellings", qp, 2)
		if got, want := mustUser(t, d, qp, "a@x"), (rpUser{1, "a@x", "Lower A"}); got != want {
			t.Errorf("email = 'a@x' again: got %+v; want %+v", got, want)
		}
		d.wantDB(t, "plain email, 'a@x' again", qp, 2)
		// Every spelling, with either comparison, is one key: one flush of
		// the normalised value drops them all.
		k := d.entryKey(t, ql, "a@x")
		for _, c := range []struct {
			q, v string
		}{{ql, "A@X"}, {qp, "a@x"}, {qp, "A@X"}} {
			if got := d.entryKey(t, c.q, c.v); got != k {
				t.Errorf("%s with %q: entry %q; want %q (lower(email) = lower('a@x'))", c.q, c.v, got, k)
			}
		}
	})
}

// TestReadPathCachedMisses: a lookup that finds nothing is cached and
// served as sql.ErrNoRows; cache_misses: false turns that off.
func TestReadPathCachedMisses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		_, d := rpSetup(t, b)
		ctx := rpCtx(t)

		q := "SELECT id, email, name FROM users WHERE id = $1"
		before := d.cn.Stats()
		for i := range 2 {
			if u, err := queryUser(ctx, d, q, 404); !errors.Is(err, sql.ErrNoRows) {
				t.Errorf("id 404 (call %d): got %+v, %v; want sql.ErrNoRows", i+1, u, err)
			}
		}
		d.wantDB(t, "absent row twice", q, 1)
		d.wantStats(t, "absent row twice", before, rpDelta{NegativeHits: 1, Misses: 1, Fills: 1})

		qn := "SELECT name FROM nomiss WHERE id = $1"
		before = d.cn.Stats()
		for i := range 3 {
			var name string
			if err := d.QueryRowContext(ctx, qn, 404).Scan(&name); !errors.Is(err, sql.ErrNoRows) {
				t.Errorf("nomiss 404 (call %d): got %q, %v; want sql.ErrNoRows", i+1, name, err)
			}
		}
		d.wantDB(t, "cache_misses: false, absent row three times", qn, 3)
		// LeaseWaits 0: the first lookup's lease must not make the
		// following ones wait for a fill that will never come.
		d.wantStats(t, "cache_misses: false", before, rpDelta{Misses: 3})
	})
}

// TestReadPathExtraPredicates: row-local predicates besides the key are
// cached, keyed by their parameter values.
func TestReadPathExtraPredicates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		_, d := rpSetup(t, b)
		ctx := rpCtx(t)

		qd := "SELECT id, email, name FROM users WHERE id = $1 AND deleted_at IS NULL"
		for range 2 {
			if got, want := mustUser(t, d, qd, 1), (rpUser{1, "ann@x", "Ann"}); got != want {
				t.Errorf("live user 1: got %+v; want %+v", got, want)
			}
			if u, err := queryUser(ctx, d, qd, 3); !errors.Is(err, sql.ErrNoRows) {
				t.Errorf("deleted user 3: got %+v, %v; want sql.ErrNoRows", u, err)
			}
		}
		d.wantDB(t, "deleted_at IS NULL, two keys twice", qd, 2)

		qs := "SELECT id, email, name FROM users WHERE id = $1 AND status = $2"
		for range 2 {
			if got, want := mustUser(t, d, qs, 2, "banned"), (rpUser{2, "bob@x", "Bob"}); got != want {
				t.Errorf("user 2 banned: got %+v; want %+v", got, want)
			}
			if u, err := queryUser(ctx, d, qs, 2, "active"); !errors.Is(err, sql.ErrNoRows) {
				t.Errorf("user 2 active: got %+v, %v; want sql.ErrNoRows", u, err)
			}
		}
		d.wantDB(t, "status = $2, two values twice", qs, 2)
	})
}

// TestReadPathNeverCached: statements that are not single-row key lookups
// of a cached table reach the database every time.
func TestReadPathNeverCached(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		e, d := rpSetup(t, b)
		ctx := rpCtx(t)
		cases := []struct {
			name  string
			query string
			args  []any
		}{
			{"IN list", "SELECT id FROM users WHERE id IN (1, 2)", nil},
			{"= ANY", "SELECT id FROM users WHERE id = ANY($1)", []any{[]int64{1, 2}}},
			{"range", "SELECT id FROM users WHERE id > $1", []any{1}},
			{"OR", "SELECT id FROM users WHERE id = $1 OR email = $2", []any{1, "bob@x"}},
			{"join", "SELECT u.id FROM users u LEFT JOIN members m ON m.org_id = u.id WHERE u.id = $1", []any{1}},
			{"ORDER BY without LIMIT 1", "SELECT id FROM users WHERE email = $1 ORDER BY id", []any{"ann@x"}},
			{"FOR UPDATE", "SELECT id FROM users WHERE id = $1 FOR UPDATE", []any{1}},
			{"now()", "SELECT id, now() FROM users WHERE id = $1", []any{1}},
			{"now() in WHERE", "SELECT id FROM users WHERE id = $1 AND deleted_at < now()", []any{3}},
			{"no rule", "SELECT id FROM norule WHERE id = $1", []any{1}},
			{"RLS table", "SELECT id FROM secret WHERE id = $1", []any{1}},
			{"RLS table, qualified", e.q("SELECT id FROM @.secret WHERE id = $1"), []any{1}},
			{"flush_only", "SELECT id FROM flushonly WHERE id = $1", []any{1}},
			{"no key pinned", "SELECT id FROM users WHERE name = $1", []any{"Ann"}},
		}
		for _, c := range cases {
			before := d.cn.Stats()
			for i := range 3 {
				rows, err := d.QueryContext(ctx, c.query, c.args...)
				if err != nil {
					t.Fatalf("%s: %s (call %d): %v", c.name, c.query, i+1, err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				if err := rows.Close(); err != nil {
					t.Errorf("%s: rows: %v", c.name, err)
				}
				if n == 0 && c.name != "now() in WHERE" {
					t.Errorf("%s: got no rows; want at least one", c.name)
				}
			}
			d.wantDB(t, c.name, c.query, 3)
			d.wantStats(t, c.name, before, rpDelta{})
		}
	})
}

// TestReadPathPreparedStatement: a lookup prepared with db.Prepare is
// served from the cache; its inner statement is never prepared on pgx,
// since a hit needs no round trip.
func TestReadPathPreparedStatement(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		_, d := rpSetup(t, b)
		ctx := rpCtx(t)
		q := "SELECT id, email, name FROM users WHERE id = $1"
		st, err := d.PrepareContext(ctx, q)
		if err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		defer st.Close()
		if n := d.tr.prepared(q); n != 0 {
			t.Errorf("after db.Prepare: PostgreSQL prepared it %d times; want 0 (prepared lazily)", n)
		}
		before := d.cn.Stats()
		for i := range 4 {
			var u rpUser
			if err := st.QueryRowContext(ctx, 1).Scan(&u.ID, &u.Email, &u.Name); err != nil {
				t.Fatalf("stmt call %d: %v", i+1, err)
			}
			if want := (rpUser{1, "ann@x", "Ann"}); u != want {
				t.Errorf("stmt call %d: got %+v; want %+v", i+1, u, want)
			}
		}
		d.wantDB(t, "prepared lookup four times", q, 1)
		d.wantStats(t, "prepared lookup", before, rpDelta{Hits: 3, Misses: 1, Fills: 1})
		// The direct query of the same text shares the entry.
		mustUser(t, d, q, 1)
		d.wantDB(t, "direct query after the statement", q, 1)
		if n := d.tr.prepared(q); n > 1 {
			t.Errorf("PostgreSQL prepared it %d times; want at most once", n)
		}
		// A statement that is not a lookup still works, prepared.
		qn := "SELECT id FROM users WHERE id > $1"
		sn, err := d.PrepareContext(ctx, qn)
		if err != nil {
			t.Fatalf("Prepare %s: %v", qn, err)
		}
		defer sn.Close()
		for range 2 {
			var id int64
			if err := sn.QueryRowContext(ctx, 2).Scan(&id); err != nil || id != 3 {
				t.Errorf("%s: got %d, %v; want 3", qn, id, err)
			}
		}
		d.wantDB(t, "prepared range twice", qn, 2)
	})
}

// TestReadPathNoCacheAndFresh: NoCache reads the database and stores
// nothing; Fresh reads the database and stores what it read.
func TestReadPathNoCacheAndFresh(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		e, d := rpSetup(t, b)
		ctx := rpCtx(t)
		q := "SELECT id, email, name FROM users WHERE id = $1"

		// NoCache on a cold key: database, no fill.
		before := d.cn.Stats()
		for range 2 {
			mustUser(t, &ctxQuerier{d, cachedsql.NoCache(ctx)}, q, 1)
		}
		d.wantDB(t, "NoCache twice", q, 2)
		d.wantStats(t, "NoCache twice", before, rpDelta{})
		mustUser(t, d, q, 1)
		d.wantDB(t, "first normal lookup after NoCache", q, 3)
		mustUser(t, d, q, 1)
		d.wantDB(t, "second normal lookup", q, 3)

		// A write that bypasses cachedsql: the cache still holds Ann.
		e.exec(t, "UPDATE @.users SET name = 'Annie' WHERE id = 1")
		if got := mustUser(t, d, q, 1); got.Name != "Ann" {
			t.Fatalf("before Fresh: got %+v; want the cached name Ann (the update bypassed cachedsql)", got)
		}
		d.wantDB(t, "cached after a direct update", q, 3)
		if got := mustUser(t, &ctxQuerier{d, cachedsql.NoCache(ctx)}, q, 1); got.Name != "Annie" {
			t.Errorf("NoCache after the update: got %+v; want name Annie", got)
		}
		if got := mustUser(t, d, q, 1); got.Name != "Ann" {
			t.Errorf("after NoCache: got %+v; want the cached name Ann (NoCache must not fill)", got)
		}
		d.wantDB(t, "NoCache then normal", q, 4)

		before = d.cn.Stats()
		if got := mustUser(t, &ctxQuerier{d, cachedsql.Fresh(ctx)}, q, 1); got.Name != "Annie" {
			t.Errorf("Fresh: got %+v; want name Annie", got)
		}
		d.wantDB(t, "Fresh", q, 5)
		for range 2 {
			if got := mustUser(t, d, q, 1); got.Name != "Annie" {
				t.Errorf("after Fresh: got %+v; want name Annie (Fresh refills)", got)
			}
		}
		d.wantDB(t, "normal lookups after Fresh", q, 5)
		d.wantStats(t, "Fresh then two lookups", before, rpDelta{Hits: 2, Misses: 1, Fills: 1})

		// Fresh on a cold key fills too.
		if got := mustUser(t, &ctxQuerier{d, cachedsql.Fresh(ctx)}, q, 2); got.Name != "Bob" {
			t.Errorf("Fresh, cold key: got %+v; want Bob", got)
		}
		mustUser(t, d, q, 2)
		d.wantDB(t, "Fresh cold key, then normal", q, 6)
	})
}

// ctxQuerier runs QueryRowContext in a fixed context.
type ctxQuerier struct {
	d   *rpDB
	ctx context.Context
}

func (c *ctxQuerier) QueryRowContext(_ context.Context, q string, args ...any) *sql.Row {
	return c.d.QueryRowContext(c.ctx, q, args...)
}

// TestReadPathTransactions: inside a transaction, begun with BeginTx or
// with BEGIN as SQL text, lookups reach the database every time; after
// COMMIT (or ROLLBACK) they use the cache again.
func TestReadPathTransactions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		_, d := rpSetup(t, b)
		ctx := rpCtx(t)
		q := "SELECT id, email, name FROM users WHERE id = $1"
		mustUser(t, d, q, 1) // warm
		d.wantDB(t, "warm", q, 1)

		tx, err := d.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if got := mustUser(t, tx, q, 1); got.Name != "Ann" {
				t.Errorf("in BeginTx: got %+v; want Ann", got)
			}
		}
		d.wantDB(t, "two lookups in BeginTx", q, 3)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		mustUser(t, d, q, 1)
		d.wantDB(t, "after Commit", q, 3)

		c, err := d.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, end := range []string{"COMMIT", "ROLLBACK", "END"} {
			n := d.tr.count(q)
			if _, err := c.ExecContext(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				mustUser(t, c, q, 1)
			}
			d.wantDB(t, "two lookups after BEGIN", q, n+2)
			if _, err := c.ExecContext(ctx, end); err != nil {
				t.Fatal(err)
			}
			mustUser(t, c, q, 1)
			d.wantDB(t, "after "+end, q, n+2)
		}
		// BEGIN sent through Query, and a lookup inside it.
		n := d.tr.count(q)
		if rows, err := c.QueryContext(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ"); err != nil {
			t.Fatal(err)
		} else {
			rows.Close()
		}
		mustUser(t, c, q, 1)
		d.wantDB(t, "lookup after BEGIN via Query", q, n+1)
		if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestReadPathSearchPath: a connection that runs SET search_path bypasses
// the cache from then on; other connections still use it.
func TestReadPathSearchPath(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		e, d := rpSetup(t, b)
		ctx := rpCtx(t)
		q := "SELECT id, email, name FROM users WHERE id = $1"
		mustUser(t, d, q, 1)
		d.wantDB(t, "warm", q, 1)

		c, err := d.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		mustUser(t, c, q, 1)
		d.wantDB(t, "sql.Conn before SET", q, 1)
		if _, err := c.ExecContext(ctx, "SET search_path = "+e.schema+", public"); err != nil {
			t.Fatal(err)
		}
		before := d.cn.Stats()
		for range 2 {
			mustUser(t, c, q, 1)
		}
		d.wantDB(t, "sql.Conn after SET search_path", q, 3)
		if got := d.cn.Stats().Bypasses[cachedsql.BypassSession] - before.Bypasses[cachedsql.BypassSession]; got != 2 {
			t.Errorf("session bypasses: got %d; want 2", got)
		}
		// Other connections of the pool still use the cache.
		c2, err := d.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mustUser(t, c2, q, 1)
		c2.Close()
		d.wantDB(t, "another connection", q, 3)
	})
}

// TestReadPathPgxOptions: pgx's leading option arguments are stripped: a
// lookup with QueryExecModeSimpleProtocol shares the entry of the one
// without; NamedArgs pass through to the database.
func TestReadPathPgxOptions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		_, d := rpSetup(t, b)
		ctx := rpCtx(t)
		q := "SELECT id, email, name FROM users WHERE id = $1"
		before := d.cn.Stats()
		if got, want := mustUser(t, d, q, pgx.QueryExecModeSimpleProtocol, 1), (rpUser{1, "ann@x", "Ann"}); got != want {
			t.Errorf("simple protocol: got %+v; want %+v", got, want)
		}
		for _, args := range [][]any{{1}, {pgx.QueryExecModeSimpleProtocol, 1}, {pgx.QueryExecModeExec, int32(1)}} {
			if got, want := mustUser(t, d, q, args...), (rpUser{1, "ann@x", "Ann"}); got != want {
				t.Errorf("args %v: got %+v; want %+v", args, got, want)
			}
		}
		d.wantDB(t, "with and without exec modes", q, 1)
		d.wantStats(t, "exec modes", before, rpDelta{Hits: 3, Misses: 1, Fills: 1})

		qn := "SELECT id, email, name FROM users WHERE id = @id"
		before = d.cn.Stats()
		for range 2 {
			if got, want := mustUser(t, d, qn, pgx.NamedArgs{"id": 2}), (rpUser{2, "bob@x", "Bob"}); got != want {
				t.Errorf("NamedArgs: got %+v; want %+v", got, want)
			}
		}
		d.wantDB(t, "NamedArgs twice", qn, 2)
		if got := d.cn.Stats().Bypasses[cachedsql.BypassArgs] - before.Bypasses[cachedsql.BypassArgs]; got != 0 && got != 2 {
			t.Errorf("NamedArgs bypasses: got %d; want 0 (not a lookup) or 2", got)
		}
		d.wantStats(t, "NamedArgs", before, rpDelta{})
		_ = ctx
	})
}

// TestReadPathMultiRowKey (item 3): a rule that declares a non-unique
// column a key. A lookup that returns two rows gives the caller both, both
// times, caches nothing, and is reported: counted, and warned once.
func TestReadPathMultiRowKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		_, d := rpSetup(t, b)
		ctx := rpCtx(t)
		if w := d.logs.matching(slog.LevelWarn, "not backed"); len(w) != 1 || w[0].attrs["key"] != "label" {
			t.Errorf("connect warnings about unbacked keys: got %+v; want one, for key label", w)
		}
		q := "SELECT id, label FROM tags WHERE label = $1"
		before := d.cn.Stats()
		for i := range 2 {
			rows, err := d.QueryContext(ctx, q, "red")
			if err != nil {
				t.Fatalf("call %d: %v", i+1, err)
			}
			var ids []int64
			for rows.Next() {
				var id int64
				var label string
				if err := rows.Scan(&id, &label); err != nil {
					t.Fatal(err)
				}
				if label != "red" {
					t.Errorf("call %d: label %q; want red", i+1, label)
				}
				ids = append(ids, id)
			}
			if err := rows.Close(); err != nil {
				t.Errorf("call %d: %v", i+1, err)
			}
			slices.Sort(ids)
			if !slices.Equal(ids, []int64{1, 2}) {
				t.Errorf("call %d: got ids %v; want [1 2]", i+1, ids)
			}
		}
		d.wantDB(t, "two-row lookup twice", q, 2)
		after := d.cn.Stats()
		if got := after.RuleViolations - before.RuleViolations; got != 2 {
			t.Errorf("RuleViolations: got %d; want 2 (both lookups returned two rows)", got)
		}
		if got := after.Fills - before.Fills; got != 0 {
			t.Errorf("Fills: got %d; want 0", got)
		}
		if got := after.Hits - before.Hits; got != 0 {
			t.Errorf("Hits: got %d; want 0", got)
		}
		if got := after.LeaseWaits - before.LeaseWaits; got != 0 {
			t.Errorf("LeaseWaits: got %d; want 0 (a fill that stores nothing must release its lease)", got)
		}
		warns := d.logs.matching(slog.LevelWarn, "more than one row")
		if len(warns) != 1 {
			t.Errorf("rule violation warnings: got %d; want 1", len(warns))
		} else if want := fmt.Sprintf("%s.tags(label)", d.env.schema); warns[0].attrs["rule"] != want {
			t.Errorf("rule violation warning names rule %q; want %q", warns[0].attrs["rule"], want)
		}
		// A unique label of the same key is cached as usual.
		var id int64
		var label string
		for range 2 {
			if err := d.QueryRowContext(ctx, q, "blue").Scan(&id, &label); err != nil || id != 3 {
				t.Errorf("blue: got %d, %v; want 3", id, err)
			}
		}
		d.wantDB(t, "one-row lookup of the same key", q, 3)
	})
}
