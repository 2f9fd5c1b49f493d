package cachedsql_test

import (
	"database/sql"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
)

// sqlx through cachedsql, unchanged (issue 7): one body runs on plain pgx
// and on cachedsql (each backend), each run in a fresh schema so serial ids
// agree, and every result is recorded. The runs must record the same
// things, and on cachedsql every key lookup repeated at once must not reach
// PostgreSQL (counted at the pgx tracer, below cachedsql).

var sxDDL = []string{
	`CREATE TABLE @.users (
		id bigserial PRIMARY KEY,
		email text NOT NULL,
		name text NOT NULL,
		bio text,
		created_at timestamptz NOT NULL DEFAULT '2024-01-02 03:04:05+00')`,
	`CREATE UNIQUE INDEX ON @.users (lower(email))`,
}

const sxRules = `
tables:
  users:
    keys: [[id], [email]]
    normalize: {email: lower}
`

// sxUser is scanned by sqlx through its db tags.
type sxUser struct {
	ID        int64          `db:"id"`
	Email     string         `db:"email"`
	Name      string         `db:"name"`
	Bio       sql.NullString `db:"bio"`
	CreatedAt time.Time      `db:"created_at"`
}

const (
	sxByID    = `SELECT id, email, name, bio, created_at FROM users WHERE id = $1`
	sxByEmail = `SELECT * FROM users WHERE lower(email) = lower($1)`
	sxAll     = `SELECT * FROM users ORDER BY id`
)

// sxRun is one run of the body: its database, the tracer below it, and
// what it recorded.
type sxRun struct {
	t      *testing.T
	db     *sqlx.DB
	tr     *rpTracer
	cached bool
	rec    []string
}

func (r *sxRun) record(step string, v any, err error) {
	if err != nil {
		r.rec = append(r.rec, fmt.Sprintf("%s: error %v", step, err))
		return
	}
	r.rec = append(r.rec, fmt.Sprintf("%s: %+v", step, v))
}

// get runs a key lookup twice with Get and records its result once. On
// cachedsql the second call must be served from the cache; on pgx each
// call must reach the tracer (so the tracer does count these statements).
func (r *sxRun) get(step, query string, args ...any) sxUser {
	r.t.Helper()
	var first, second sxUser
	err1 := r.db.Get(&first, query, args...)
	before := r.tr.count(query)
	err2 := r.db.Get(&second, query, args...)
	after := r.tr.count(query)
	if !reflect.DeepEqual(first, second) || fmt.Sprint(err1) != fmt.Sprint(err2) {
		r.t.Errorf("%s: repeat returned %+v, %v; first %+v, %v", step, second, err2, first, err1)
	}
	switch {
	case r.cached && after != before:
		r.t.Errorf("%s: repeated lookup reached PostgreSQL %d times; want 0 (served from the cache)", step, after-before)
	case !r.cached && after != before+1:
		r.t.Errorf("%s: pgx tracer counted %d; want 1", step, after-before)
	}
	r.record(step, first, err1)
	return first
}

// sxBody is what an sqlx user writes; nothing in it knows about cachedsql.
func sxBody(r *sxRun) {
	t, db := r.t, r.db

	// NamedExec from structs and from a map.
	for _, u := range []sxUser{
		{Email: "Ann@example.com", Name: "Ann", Bio: sql.NullString{String: "first", Valid: true}},
		{Email: "bob@example.com", Name: "Bob"},
	} {
		res, err := db.NamedExec(`INSERT INTO users (email, name, bio) VALUES (:email, :name, :bio)`, u)
		if err != nil {
			t.Fatalf("NamedExec insert: %v", err)
		}
		n, err := res.RowsAffected()
		r.record("insert "+u.Email, n, err)
	}
	if _, err := db.NamedExec(`INSERT INTO users (email, name) VALUES (:email, :name)`,
		map[string]any{"email": "cy@example.com", "name": "Cy"}); err != nil {
		t.Fatalf("NamedExec map: %v", err)
	}

	// Get by each key, any spelling of the email; a miss is cached too.
	r.get("by id 1", sxByID, 1)
	r.get("by email ann", sxByEmail, "ANN@example.com")
	r.get("by email ann lower", sxByEmail, "ann@example.com")
	r.get("by id 2 as int32", sxByID, int32(2))
	r.get("by id 99 (none)", sxByID, 99)

	// Select and In + Rebind pass through: every call reaches PostgreSQL.
	var all []sxUser
	before := r.tr.count(sxAll)
	err := db.Select(&all, sxAll)
	r.record("select all", all, err)
	if err := db.Select(&all, sxAll); err != nil {
		t.Fatal(err)
	}
	if got := r.tr.count(sxAll) - before; got != 2 {
		t.Errorf("Select twice: PostgreSQL saw it %d times; want 2 (not a key lookup)", got)
	}
	q, args, err := sqlx.In(`SELECT * FROM users WHERE id IN (?) ORDER BY id`, []int64{1, 3})
	if err != nil {
		t.Fatal(err)
	}
	q = db.Rebind(q)
	r.record("rebound", q, nil)
	var some []sxUser
	err = db.Select(&some, q, args...)
	r.record("select in", some, err)

	// A named update: both keys of the row show the new name.
	res, err := db.NamedExec(`UPDATE users SET name = :name, bio = :bio WHERE id = :id`,
		sxUser{ID: 1, Name: "Ann B.", Bio: sql.NullString{String: "second", Valid: true}})
	if err != nil {
		t.Fatalf("NamedExec update: %v", err)
	}
	n, err := res.RowsAffected()
	r.record("update ann", n, err)
	if u := r.get("by id 1 after update", sxByID, 1); u.Name != "Ann B." {
		t.Errorf("by id 1 after update: name %q; want Ann B.", u.Name)
	}
	if u := r.get("by email after update", sxByEmail, "ann@EXAMPLE.com"); u.Bio.String != "second" {
		t.Errorf("by email after update: bio %q; want second", u.Bio.String)
	}

	// Inserting the row a cached miss named flushes the miss.
	if _, err := db.NamedExec(`INSERT INTO users (id, email, name) VALUES (:id, :email, :name)`,
		sxUser{ID: 99, Email: "dee@example.com", Name: "Dee"}); err != nil {
		t.Fatalf("NamedExec insert 99: %v", err)
	}
	if u := r.get("by id 99 after insert", sxByID, 99); u.Name != "Dee" {
		t.Errorf("by id 99 after insert: %+v; want Dee", u)
	}

	// MustBegin: a transaction reads its own write from the database, and
	// after Commit the old email is gone and the new one found.
	r.get("by email bob before tx", sxByEmail, "bob@example.com")
	tx := db.MustBegin()
	tx.MustExec(`UPDATE users SET email = $1 WHERE id = $2`, "robert@example.com", 2)
	var inTx sxUser
	err = tx.Get(&inTx, sxByID, 2)
	r.record("in tx by id 2", inTx, err)
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	r.get("by id 2 after commit", sxByID, 2)
	r.get("by old email after commit", sxByEmail, "bob@example.com")
	if u := r.get("by new email after commit", sxByEmail, "Robert@example.com"); u.ID != 2 {
		t.Errorf("by new email after commit: %+v; want id 2", u)
	}

	// Beginx and Rollback: nothing changes, and nothing is flushed.
	r.get("by id 3 before rollback", sxByID, 3)
	tx2, err := db.Beginx()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx2.NamedExec(`UPDATE users SET name = :name WHERE id = :id`, sxUser{ID: 3, Name: "nobody"}); err != nil {
		t.Fatal(err)
	}
	if err := tx2.Rollback(); err != nil {
		t.Fatal(err)
	}
	before = r.tr.count(sxByID)
	r.get("by id 3 after rollback", sxByID, 3)
	if n := r.tr.count(sxByID) - before; r.cached && n != 0 {
		t.Errorf("by id 3 after rollback: PostgreSQL saw %d lookups; want 0 (a rolled-back write flushes nothing)", n)
	}

	// Beginx, a named delete, Commit: the row is gone by every key.
	tx3, err := db.Beginx()
	if err != nil {
		t.Fatal(err)
	}
	res, err = tx3.NamedExec(`DELETE FROM users WHERE id = :id`, map[string]any{"id": 1})
	if err != nil {
		t.Fatal(err)
	}
	n, err = res.RowsAffected()
	r.record("delete ann", n, err)
	if err := tx3.Commit(); err != nil {
		t.Fatal(err)
	}
	r.get("by id 1 after delete", sxByID, 1)
	r.get("by email after delete", sxByEmail, "ANN@example.com")
	err = db.Select(&all, sxAll)
	r.record("select all at the end", all, err)
}

func TestSqlx(t *testing.T) {
	// sqlx knows pgx's bind variables ($1) but not the name "cachedsql".
	sqlx.BindDriver("cachedsql", sqlx.DOLLAR)

	// Plain pgx: the reference.
	e := newRPEnv(t, sxDDL...)
	pcfg, err := pgx.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	tr := newRPTracer()
	pcfg.Tracer = tr
	plain := sql.OpenDB(stdlib.GetConnector(*pcfg))
	t.Cleanup(func() { plain.Close() })
	want := &sxRun{t: t, db: sqlx.NewDb(plain, "pgx"), tr: tr}
	t.Run("pgx", func(t *testing.T) {
		want.t = t
		sxBody(want)
	})

	forEachBackend(t, func(t *testing.T, b rpBackend) {
		e := newRPEnv(t, sxDDL...)
		d := e.open(t, b, sxRules)
		got := &sxRun{t: t, db: sqlx.NewDb(d.DB, "cachedsql"), tr: d.tr, cached: true}
		if bt := sqlx.BindType(got.db.DriverName()); bt != sqlx.DOLLAR {
			t.Fatalf("sqlx.BindType(%q): %d; want DOLLAR", got.db.DriverName(), bt)
		}
		sxBody(got)
		if len(want.rec) != len(got.rec) {
			t.Fatalf("recorded %d results; pgx recorded %d", len(got.rec), len(want.rec))
		}
		for i := range want.rec {
			if want.rec[i] != got.rec[i] {
				t.Errorf("result %d differs from pgx:\n got %s\nwant %s", i, got.rec[i], want.rec[i])
			}
		}
		if st := d.cn.Stats(); st.Hits == 0 || st.NegativeHits == 0 {
			t.Errorf("stats: %d hits, %d negative hits; want some of each", st.Hits, st.NegativeHits)
		}
	})
}
