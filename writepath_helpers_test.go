package cachedsql_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
)

// Helpers of the write-path tests (issue 5). They reuse the read-path
// fixtures' machinery (rpEnv: a unique schema and a plain pgx pool;
// rpTracer: statements counted at pgx; rpBackends), with a fixture of
// their own: users with three keys, a parent table whose deletes cascade
// into it, a table with no rule, a writing function and a procedure.

var wpDDL = []string{
	`CREATE TABLE @.orgs (id int PRIMARY KEY, name text NOT NULL)`,
	`CREATE TABLE @.users (
		id bigserial PRIMARY KEY,
		email text NOT NULL UNIQUE,
		org_id int NOT NULL REFERENCES @.orgs (id) ON DELETE CASCADE,
		slug text NOT NULL,
		name text NOT NULL,
		version int NOT NULL DEFAULT 0,
		UNIQUE (org_id, slug))`,
	`CREATE UNIQUE INDEX ON @.users (lower(email))`,
	`CREATE TABLE @.notes (id int PRIMARY KEY, body text NOT NULL)`,
	// touch_user writes users from a SELECT; declared in the rules.
	`CREATE FUNCTION @.touch_user(uid bigint, newname text) RETURNS bigint LANGUAGE sql AS
		$$ UPDATE @.users SET name = newname, version = version + 1 WHERE id = uid RETURNING id $$`,
	`CREATE PROCEDURE @.set_email(uid bigint, newemail text) LANGUAGE sql AS
		$$ UPDATE @.users SET email = newemail WHERE id = uid $$`,
}

const wpRules = `
tables:
  users:
    keys: [[id], [email], [org_id, slug]]
    normalize: {email: lower}
    flush_with: [orgs]
functions:
  touch_user: [users]
`

// wpReset puts the fixture's rows back, through the plain pool (no
// cachedsql: every test opens a pool under a fresh namespace afterwards).
func wpReset(t *testing.T, e *rpEnv) {
	t.Helper()
	e.exec(t, `ALTER TABLE @.users DROP COLUMN IF EXISTS extra`)
	e.exec(t, `TRUNCATE @.users, @.orgs, @.notes RESTART IDENTITY`)
	e.exec(t, `INSERT INTO @.orgs VALUES (1, 'acme'), (2, 'globex'), (3, 'initech')`)
	e.exec(t, `INSERT INTO @.users (id, email, org_id, slug, name, version) VALUES
		(1, 'ann@x', 1, 'ann', 'Ann', 1),
		(2, 'bob@x', 1, 'bob', 'Bob', 1),
		(3, 'cy@x', 2, 'cy', 'Cy', 1),
		(4, 'dee@x', 2, 'dee', 'Dee', 1),
		(5, 'eve@x', 3, 'eve', 'Eve', 1)`)
	e.exec(t, `SELECT setval(pg_get_serial_sequence('@.users', 'id'), 5)`)
	e.exec(t, `INSERT INTO @.notes VALUES (1, 'n')`)
}

// The three lookups, one per key, as an application writes them.
const (
	wpByID    = "SELECT id, email, org_id, slug, name, version FROM users WHERE id = $1"
	wpByEmail = "SELECT id, email, org_id, slug, name, version FROM users WHERE lower(email) = lower($1)"
	wpBySlug  = "SELECT id, email, org_id, slug, name, version FROM users WHERE org_id = $1 AND slug = $2"
)

// wpLookup is one lookup: a query and its arguments.
type wpLookup struct {
	query string
	args  []any
}

func (l wpLookup) String() string { return fmt.Sprintf("%s %v", l.query, l.args) }

func byID(id int64) wpLookup               { return wpLookup{wpByID, []any{id}} }
func byEmail(email string) wpLookup        { return wpLookup{wpByEmail, []any{email}} }
func bySlug(org int, slug string) wpLookup { return wpLookup{wpBySlug, []any{org, slug}} }

// wpFixtureKeys are every key of the fixture's rows, by row id.
var wpFixtureKeys = map[int64][]wpLookup{
	1: {byID(1), byEmail("ann@x"), byEmail("ANN@X"), bySlug(1, "ann")},
	2: {byID(2), byEmail("bob@x"), bySlug(1, "bob")},
	3: {byID(3), byEmail("cy@x"), bySlug(2, "cy")},
	4: {byID(4), byEmail("dee@x"), bySlug(2, "dee")},
	5: {byID(5), byEmail("eve@x"), bySlug(3, "eve")},
}

// wpMissKeys are keys no fixture row has, that the cases' writes create:
// warmed as cached misses before each write.
var wpMissKeys = []wpLookup{
	byID(6), byID(7), byID(8), byID(103), byID(104),
	byEmail("new@x"), byEmail("new2@x"), byEmail("renamed@x"), byEmail("ccy@x"), byEmail("cdee@x"), byEmail("zed@x"), byEmail("copied@x"),
	bySlug(1, "new"), bySlug(1, "new2"), bySlug(1, "renamed"), bySlug(3, "zed"), bySlug(2, "cy2"), bySlug(2, "dee2"),
	bySlug(1, "annz"), bySlug(1, "ann-x"), bySlug(1, "bob-x"), bySlug(3, "copied"),
}

// wpAllKeys lists every lookup a case warms and checks.
func wpAllKeys() []wpLookup {
	var out []wpLookup
	for id := int64(1); id <= 5; id++ {
		out = append(out, wpFixtureKeys[id]...)
	}
	return append(out, wpMissKeys...)
}

// wpRow is a users row, or its absence.
type wpRow struct {
	Found      bool
	ID         int64
	Email      string
	OrgID      int64
	Slug, Name string
	Version    int64
	ErrText    string
}

func (r wpRow) String() string {
	if r.ErrText != "" {
		return "error " + r.ErrText
	}
	if !r.Found {
		return "absent"
	}
	return fmt.Sprintf("{%d %s %d/%s %s v%d}", r.ID, r.Email, r.OrgID, r.Slug, r.Name, r.Version)
}

type rowQueryer interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// lookupVia runs l through database/sql (cachedsql, or any *sql.DB, Tx or
// Conn).
func lookupVia(ctx context.Context, q rowQueryer, l wpLookup) wpRow {
	var r wpRow
	err := q.QueryRowContext(ctx, l.query, l.args...).Scan(&r.ID, &r.Email, &r.OrgID, &r.Slug, &r.Name, &r.Version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return wpRow{}
	case err != nil:
		return wpRow{ErrText: err.Error()}
	}
	r.Found = true
	return r
}

// lookupPlain runs l on a plain pgx pool: what the database says.
func lookupPlain(ctx context.Context, p *pgxpool.Pool, l wpLookup) wpRow {
	var r wpRow
	err := p.QueryRow(ctx, l.query, l.args...).Scan(&r.ID, &r.Email, &r.OrgID, &r.Slug, &r.Name, &r.Version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return wpRow{}
	case err != nil:
		return wpRow{ErrText: err.Error()}
	}
	r.Found = true
	return r
}

// wpDB is a cachedsql pool on the write-path fixture, with the plain pool
// that says what the database holds.
type wpDB struct {
	*rpDB
	plain *pgxpool.Pool
	ns    string
}

// wpOpts are the knobs the write-path tests turn on a pool.
type wpOpts struct {
	cache     cachedsql.Cache // nil: the backend's
	namespace string          // "": a fresh one
	dsn       string          // "": the env's
	mutate    func(*cachedsql.Config)
}

// wpOpen opens a cachedsql pool on e with the write-path rules.
func wpOpen(t testing.TB, e *rpEnv, b rpBackend, o wpOpts) *wpDB {
	t.Helper()
	rules, err := cachedsql.ParseRules([]byte(e.q(wpRules)))
	if err != nil {
		t.Fatalf("ParseRules: %v", err)
	}
	dsn := o.dsn
	if dsn == "" {
		dsn = e.dsn
	}
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgx.ParseConfig: %v", err)
	}
	tr := newRPTracer()
	pcfg.Tracer = tr
	ns := o.namespace
	if ns == "" {
		var nb [8]byte
		rand.Read(nb[:])
		ns = "wp-" + hex.EncodeToString(nb[:])
	}
	cache := o.cache
	if cache == nil {
		cache = b.cache(t.(*testing.T))
	}
	logs := &rpLogs{}
	cfg := cachedsql.Config{
		Rules:        rules,
		Cache:        cache,
		Namespace:    ns,
		Logger:       slog.New(logs),
		CacheTimeout: 2 * time.Second,
		FlushTimeout: 2 * time.Second,
		LeaseWait:    200 * time.Millisecond,
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	cn, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cfg)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(cn)
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	plain, err := pgxpool.New(context.Background(), e.dsn)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(plain.Close)
	return &wpDB{rpDB: &rpDB{DB: db, tr: tr, cn: cn, logs: logs, env: e, cache: cache}, plain: plain, ns: ns}
}

// warm looks every key up once through cachedsql, filling the cache
// (values and misses), and checks each is then a hit.
func (d *wpDB) warm(t *testing.T, ctx context.Context, keys []wpLookup) {
	t.Helper()
	for _, l := range keys {
		lookupVia(ctx, d, l)
	}
	for _, l := range keys {
		// A fill may lose a race with the pool's own background work
		// (a release retry, a lease); a second fill must stick.
		if !d.isHit(ctx, l) && !d.isHit(ctx, l) {
			t.Fatalf("warming: %v is not served from the cache after a fill", l)
		}
	}
}

// isHit runs l through cachedsql and reports whether it did not reach
// PostgreSQL (counted at the pgx tracer).
func (d *wpDB) isHit(ctx context.Context, l wpLookup) bool {
	before := d.tr.count(l.query)
	lookupVia(ctx, d, l)
	return d.tr.count(l.query) == before
}

// consistent fails the test for every lookup of keys whose cachedsql
// answer differs from the database's.
func (d *wpDB) consistent(t *testing.T, ctx context.Context, what string, keys []wpLookup) {
	t.Helper()
	for _, m := range d.mismatches(ctx, d, keys) {
		t.Errorf("%s: %s", what, m)
	}
}

// mismatches lists the lookups of keys that q (cachedsql) answers
// differently from the plain pool.
func (d *wpDB) mismatches(ctx context.Context, q rowQueryer, keys []wpLookup) []string {
	var out []string
	for _, l := range keys {
		got, want := lookupVia(ctx, q, l), lookupPlain(ctx, d.plain, l)
		if got != want {
			out = append(out, fmt.Sprintf("%v: cachedsql %v; database %v", l, got, want))
		}
	}
	return out
}

// stillHits fails the test unless every key of the given fixture rows is
// still served from the cache.
func (d *wpDB) stillHits(t *testing.T, ctx context.Context, what string, ids []int64) {
	t.Helper()
	for _, id := range ids {
		for _, l := range wpFixtureKeys[id] {
			if !d.isHit(ctx, l) {
				t.Errorf("%s: %v (a row the write did not touch) reached the database; want a cache hit", what, l)
			}
		}
	}
}

// otherIDs are the fixture ids not in ids.
func otherIDs(ids ...int64) []int64 {
	var out []int64
	for id := int64(1); id <= 5; id++ {
		if !slices.Contains(ids, id) {
			out = append(out, id)
		}
	}
	return out
}

// drain reads every row of rows and closes them, returning the first
// error (of Next's rows, Err or Close).
func drain(rows *sql.Rows) (int, error) {
	n := 0
	cols, _ := rows.Columns()
	dest := make([]any, len(cols))
	for i := range dest {
		dest[i] = new(any)
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return n, err
	}
	return n, rows.Close()
}

// sqlState is the SQLSTATE of a PostgreSQL error in err's chain, or "".
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// wpName makes a unique identifier with prefix.
func wpName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

var _ = strings.Contains
