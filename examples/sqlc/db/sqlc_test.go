package db

// sqlc's generated code, unchanged, through cachedsql (issue 7). One test
// body calls every generated method; it runs on plain pgx and on cachedsql
// (in-process cache and memcached), each run in a fresh schema made from
// ../schema.sql, with the rules of ../rules.yaml. The runs must record the
// same results; on cachedsql every :one key lookup repeated at once must not
// reach PostgreSQL (counted at a pgx tracer below cachedsql), and after each
// write the lookups, warmed before it, must show the new data (the pgx run
// is the reference, and the body checks the expected values too).

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
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

// tracer counts the statements pgx sends, by SQL text; a statement sent by
// the name pgx prepared it under counts under its SQL.
type tracer struct {
	mu    sync.Mutex
	n     map[string]int
	names map[string]string
}

func newTracer() *tracer { return &tracer{n: map[string]int{}, names: map[string]string{}} }

func (tr *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	q := d.SQL
	if s, ok := tr.names[q]; ok {
		q = s
	}
	tr.n[q]++
	return ctx
}

func (tr *tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (tr *tracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if d.Name != "" {
		tr.names[d.Name] = d.SQL
	}
	return ctx
}

func (tr *tracer) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

func (tr *tracer) count(query string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.n[query]
}

// freshSchema creates a schema holding ../schema.sql and returns a DSN
// whose search_path is that schema. The schema is dropped at the end.
func freshSchema(t *testing.T) string {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	ddl, err := os.ReadFile("../schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "sqlc_" + hex.EncodeToString(b[:])
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	qv := u.Query()
	qv.Set("search_path", schema)
	u.RawQuery = qv.Encode()

	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("DROP SCHEMA %s: %v", schema, err)
		}
		admin.Close(context.Background())
	})
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	// The file as it is, unqualified names resolving to the new schema.
	if _, err := admin.Exec(ctx, "SET search_path TO "+schema+";\n"+string(ddl)+"\nRESET search_path"); err != nil {
		t.Fatalf("schema.sql: %v", err)
	}
	return u.String()
}

// openDB opens the run's *sql.DB: plain pgx, or cachedsql over pgx's
// connector with the example's rules and cache.
func openDB(t *testing.T, dsn string, cache cachedsql.Cache) (*sql.DB, *tracer, *cachedsql.Connector) {
	t.Helper()
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTracer()
	pcfg.Tracer = tr
	if cache == nil {
		db := sql.OpenDB(stdlib.GetConnector(*pcfg))
		t.Cleanup(func() { db.Close() })
		return db, tr, nil
	}
	rules, err := cachedsql.LoadRules("../rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var nb [8]byte
	rand.Read(nb[:])
	cn, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cachedsql.Config{
		Rules:     rules,
		Cache:     cache,
		Namespace: t.Name() + "-" + hex.EncodeToString(nb[:]),
		// Generous: what is counted here is what reaches the database, not
		// how reads fail open when a loaded machine makes the cache slow.
		CacheTimeout: 2 * time.Second,
		FlushTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(cn)
	t.Cleanup(func() { db.Close() })
	return db, tr, cn
}

// run is one run of the body.
type run struct {
	t      *testing.T
	db     *sql.DB
	q      *Queries
	tr     *tracer
	cached bool
	rec    []string
}

// record notes a step's result as JSON (the models have JSON tags, so the
// jsonb column shows as JSON and the enum as its label).
func (r *run) record(step string, v any, err error) {
	r.t.Helper()
	if err != nil {
		r.rec = append(r.rec, step+": error "+err.Error())
		return
	}
	b, jerr := json.Marshal(v)
	if jerr != nil {
		r.t.Fatalf("%s: %v", step, jerr)
	}
	// JSON compacts the jsonb and drops the time's location: %v has both,
	// exactly.
	r.rec = append(r.rec, fmt.Sprintf("%s: %s | %v", step, b, v))
}

// lookup calls a :one key lookup twice and records its result once. Both
// calls must agree. On cachedsql the second must not reach PostgreSQL; on
// pgx each must (so the tracer does see query).
func lookup[T any](r *run, step, query string, f func() (T, error)) (T, error) {
	r.t.Helper()
	v1, err1 := f()
	before := r.tr.count(query)
	v2, err2 := f()
	after := r.tr.count(query)
	b1, _ := json.Marshal(v1)
	b2, _ := json.Marshal(v2)
	if string(b1) != string(b2) || fmt.Sprint(err1) != fmt.Sprint(err2) {
		r.t.Errorf("%s: repeat returned %s, %v; first %s, %v", step, b2, err2, b1, err1)
	}
	switch {
	case r.cached && after != before:
		r.t.Errorf("%s: the repeat reached PostgreSQL %d times; want 0 (served from the cache)", step, after-before)
	case !r.cached && after != before+1:
		r.t.Errorf("%s: the pgx tracer counted the repeat %d times; want 1", step, after-before)
	}
	r.record(step, v1, err1)
	return v1, err1
}

// users looks a user up by every key (the email in two spellings) and
// checks each finds want, or nothing when want is nil.
func (r *run) user(step string, want *User, id int64, email string, orgID int64, handle string) {
	r.t.Helper()
	ctx := context.Background()
	check := func(key string, u User, err error) {
		r.t.Helper()
		switch {
		case want == nil && !errors.Is(err, sql.ErrNoRows):
			r.t.Errorf("%s by %s: %+v, %v; want sql.ErrNoRows", step, key, u, err)
		case want != nil && err != nil:
			r.t.Errorf("%s by %s: %v", step, key, err)
		case want != nil && !sameUser(u, *want):
			r.t.Errorf("%s by %s: %+v; want %+v", step, key, u, *want)
		}
	}
	u, err := lookup(r, step+" GetUser", getUser, func() (User, error) { return r.q.GetUser(ctx, id) })
	check("id", u, err)
	u, err = lookup(r, step+" GetUserByEmail", getUserByEmail, func() (User, error) { return r.q.GetUserByEmail(ctx, email) })
	check("email", u, err)
	u, err = lookup(r, step+" GetUserByEmail upper", getUserByEmail, func() (User, error) {
		return r.q.GetUserByEmail(ctx, strings.ToUpper(email))
	})
	check("upper-case email", u, err)
	u, err = lookup(r, step+" GetUserByHandle", getUserByHandle, func() (User, error) {
		return r.q.GetUserByHandle(ctx, GetUserByHandleParams{OrgID: orgID, Handle: handle})
	})
	check("handle", u, err)
}

func sameUser(a, b User) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// org looks an org up by both keys.
func (r *run) org(step string, id int64, slug string) {
	r.t.Helper()
	ctx := context.Background()
	lookup(r, step+" GetOrg", getOrg, func() (Org, error) { return r.q.GetOrg(ctx, id) })
	lookup(r, step+" GetOrgBySlug", getOrgBySlug, func() (Org, error) { return r.q.GetOrgBySlug(ctx, slug) })
}

// list runs the :many query, which is no key lookup: every call reaches
// PostgreSQL.
func (r *run) list(step string, orgID int64) []User {
	r.t.Helper()
	before := r.tr.count(listUsersByOrg)
	us, err := r.q.ListUsersByOrg(context.Background(), orgID)
	if _, err := r.q.ListUsersByOrg(context.Background(), orgID); err != nil {
		r.t.Fatal(err)
	}
	if n := r.tr.count(listUsersByOrg) - before; n != 2 {
		r.t.Errorf("%s: ListUsersByOrg twice reached PostgreSQL %d times; want 2", step, n)
	}
	r.record(step+" ListUsersByOrg", us, err)
	return us
}

func fatalIf(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// body is what an application using the generated code does; nothing in
// it knows about cachedsql.
func body(r *run) {
	t, q, ctx := r.t, r.q, context.Background()

	acme, err := q.CreateOrg(ctx, CreateOrgParams{Slug: "acme", Name: "Acme"})
	fatalIf(t, "CreateOrg", err)
	globex, err := q.CreateOrg(ctx, CreateOrgParams{Slug: "globex", Name: "Globex"})
	fatalIf(t, "CreateOrg", err)
	r.record("CreateOrg", []Org{acme, globex}, nil)
	r.org("orgs", acme.ID, "acme")

	// Misses are cached, and the INSERT that creates the row flushes them.
	r.user("before ann exists", nil, 1, "Ann@Example.com", acme.ID, "ann")
	ann, err := q.CreateUser(ctx, CreateUserParams{
		OrgID: acme.ID, Email: "Ann@Example.com", Handle: "ann",
		Status: UserStatusActive, Profile: json.RawMessage(`{"theme": "dark"}`),
	})
	fatalIf(t, "CreateUser ann", err)
	bob, err := q.CreateUser(ctx, CreateUserParams{
		OrgID: acme.ID, Email: "bob@example.com", Handle: "bob",
		Status: UserStatusActive, Profile: json.RawMessage(`{}`),
	})
	fatalIf(t, "CreateUser bob", err)
	cy, err := q.CreateUser(ctx, CreateUserParams{
		OrgID: globex.ID, Email: "cy@example.com", Handle: "cy",
		Status: UserStatusActive, Profile: json.RawMessage(`{"tags": ["a", "b"]}`),
	})
	fatalIf(t, "CreateUser cy", err)
	r.record("CreateUser", []User{ann, bob, cy}, nil)
	if ann.ID != 1 || ann.Status != UserStatusActive || ann.LastLogin.Valid {
		t.Errorf("CreateUser ann: %+v; want id 1, active, no last login", ann)
	}
	r.user("ann created", &ann, ann.ID, "ann@example.com", acme.ID, "ann")
	r.user("bob", &bob, bob.ID, "bob@example.com", acme.ID, "bob")
	r.user("cy", &cy, cy.ID, "cy@example.com", globex.ID, "cy")
	r.list("acme", acme.ID)

	// :exec re-keying the composite key: the old handle is gone, the new
	// one found (it was a cached miss).
	r.user("before rename, new handle", nil, 0, "nobody@example.com", acme.ID, "annie")
	fatalIf(t, "RenameUser", q.RenameUser(ctx, RenameUserParams{ID: ann.ID, Handle: "annie"}))
	ann.Handle = "annie"
	r.user("after rename", &ann, ann.ID, "ann@example.com", acme.ID, "annie")
	r.user("after rename, old handle", nil, 0, "nobody@example.com", acme.ID, "ann")

	// :execrows re-keying the lower(email) key.
	n, err := q.ChangeEmail(ctx, ChangeEmailParams{ID: ann.ID, Email: "ann@new.example"})
	fatalIf(t, "ChangeEmail", err)
	r.record("ChangeEmail", n, nil)
	ann.Email = "ann@new.example"
	r.user("after email change", &ann, ann.ID, "ANN@new.example", acme.ID, "annie")
	r.user("after email change, old email", nil, 0, "ann@example.com", 0, "")

	// WithTx: inside the transaction its own write is read from the
	// database; after Commit the lookups (warmed above) show it, and a
	// rolled-back transaction changes nothing.
	r.user("before tx, new email", nil, 0, "ann@tx.example", 0, "")
	for _, commit := range []bool{false, true} {
		tx, err := r.db.BeginTx(ctx, nil)
		fatalIf(t, "BeginTx", err)
		qtx := q.WithTx(tx)
		n, err := qtx.ChangeEmail(ctx, ChangeEmailParams{ID: ann.ID, Email: "ann@tx.example"})
		fatalIf(t, "ChangeEmail in tx", err)
		u, err := qtx.GetUserByEmail(ctx, "Ann@TX.example")
		r.record(fmt.Sprintf("in tx (commit %v) ChangeEmail %d, GetUserByEmail", commit, n), u, err)
		if err != nil || u.ID != ann.ID {
			t.Errorf("in tx: GetUserByEmail: %+v, %v; want ann", u, err)
		}
		if commit {
			fatalIf(t, "Commit", tx.Commit())
		} else {
			fatalIf(t, "Rollback", tx.Rollback())
			r.user("after rollback", &ann, ann.ID, "ann@new.example", acme.ID, "annie")
			r.user("after rollback, new email", nil, 0, "ann@tx.example", 0, "")
		}
	}
	r.user("after commit, old email", nil, 0, "ann@new.example", 0, "")
	ann.Email = "ann@tx.example"
	r.user("after commit", &ann, ann.ID, "ann@tx.example", acme.ID, "annie")

	// Non-key columns: the nullable timestamptz and the jsonb.
	login := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	fatalIf(t, "RecordLogin", q.RecordLogin(ctx, RecordLoginParams{ID: bob.ID, LastLogin: sql.NullTime{Time: login, Valid: true}}))
	u, err := lookup(r, "after RecordLogin GetUser", getUser, func() (User, error) { return q.GetUser(ctx, bob.ID) })
	if err != nil || !u.LastLogin.Valid || !u.LastLogin.Time.Equal(login) {
		t.Errorf("after RecordLogin: %+v, %v; want last login %v", u, err, login)
	}
	fatalIf(t, "UpdateProfile", q.UpdateProfile(ctx, UpdateProfileParams{ID: bob.ID, Profile: json.RawMessage(`{"b": [1, 2], "a": null}`)}))
	u, err = lookup(r, "after UpdateProfile GetUserByEmail", getUserByEmail, func() (User, error) { return q.GetUserByEmail(ctx, "BOB@example.com") })
	if err != nil || string(u.Profile) != `{"a": null, "b": [1, 2]}` {
		t.Errorf("after UpdateProfile: profile %s, %v; want jsonb's normal form", u.Profile, err)
	}
	bob = u
	r.user("after RecordLogin and UpdateProfile", &bob, bob.ID, "bob@example.com", acme.ID, "bob")

	// :execrows over several rows, by a non-key column: the enum.
	n, err = q.SuspendOrg(ctx, acme.ID)
	fatalIf(t, "SuspendOrg", err)
	r.record("SuspendOrg", n, nil)
	if n != 2 {
		t.Errorf("SuspendOrg: %d rows; want 2", n)
	}
	ann.Status, bob.Status = UserStatusSuspended, UserStatusSuspended
	r.user("ann suspended", &ann, ann.ID, "ann@tx.example", acme.ID, "annie")
	r.user("bob suspended", &bob, bob.ID, "bob@example.com", acme.ID, "bob")
	r.user("cy not suspended", &cy, cy.ID, "cy@example.com", globex.ID, "cy")
	r.list("acme suspended", acme.ID)

	// :execrows DELETE: every key of the row is gone.
	n, err = q.DeleteUser(ctx, bob.ID)
	fatalIf(t, "DeleteUser", err)
	r.record("DeleteUser", n, nil)
	r.user("bob deleted", nil, bob.ID, "bob@example.com", acme.ID, "bob")

	// :exec DELETE of an org: ON DELETE CASCADE deletes cy, which
	// cachedsql never sees; the rules' flush_with: [orgs] flushes users.
	fatalIf(t, "DeleteOrg", q.DeleteOrg(ctx, globex.ID))
	r.user("cy cascaded", nil, cy.ID, "cy@example.com", globex.ID, "cy")
	lookup(r, "globex deleted GetOrg", getOrg, func() (Org, error) { return q.GetOrg(ctx, globex.ID) })
	r.user("ann after the cascade", &ann, ann.ID, "ann@tx.example", acme.ID, "annie")
	r.list("acme at the end", acme.ID)
	r.list("globex at the end", globex.ID)
}

func TestGeneratedQueries(t *testing.T) {
	db, tr, _ := openDB(t, freshSchema(t), nil)
	want := &run{t: t, db: db, q: New(db), tr: tr}
	t.Run("pgx", func(t *testing.T) {
		want.t = t
		body(want)
	})

	backends := []struct {
		name  string
		cache func(t *testing.T) cachedsql.Cache
	}{
		{"memory", func(*testing.T) cachedsql.Cache { return cachedsql.NewMemoryCache(0) }},
		{"memcached", func(t *testing.T) cachedsql.Cache { return cachedsql.Memcache(memcache.New(testenv.MemcacheAddr(t))) }},
	}
	for _, b := range backends {
		t.Run("cachedsql-"+b.name, func(t *testing.T) {
			db, tr, cn := openDB(t, freshSchema(t), b.cache(t))
			got := &run{t: t, db: db, q: New(db), tr: tr, cached: true}
			body(got)
			if len(got.rec) != len(want.rec) {
				t.Fatalf("recorded %d results; pgx recorded %d", len(got.rec), len(want.rec))
			}
			for i := range want.rec {
				if got.rec[i] != want.rec[i] {
					t.Errorf("result %d differs from pgx:\n got %s\nwant %s", i, got.rec[i], want.rec[i])
				}
			}
			st := cn.Stats()
			if st.Hits == 0 || st.NegativeHits == 0 || st.RuleViolations != 0 {
				t.Errorf("stats: %d hits, %d negative hits, %d rule violations; want hits of both kinds and no violations",
					st.Hits, st.NegativeHits, st.RuleViolations)
			}
		})
	}
}
