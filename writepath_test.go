package cachedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/fakememcache"
	"github.com/cachedsql/cachedsql/internal/pgproxy"
)

// Issue 5, item 1: every write shape, against real PostgreSQL, on both
// cache backends. Per case and mode: a fresh fixture and a pool under a
// fresh namespace; every key of every fixture row, and the keys the writes
// create, are cached (values and misses); the write runs; then every lookup
// must answer what a plain pgx pool answers, and for writes whose keys are
// knowable (flushed key by key), the rows the write did not touch must
// still be cache hits, counted at the pgx tracer. Table bumps may miss.

// wpExecer is what *sql.DB, *sql.Tx and *sql.Conn share.
type wpExecer interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
}

type wpCase struct {
	name string
	sql  string
	args []any
	// exact: the write's keys are knowable, so rows outside touched keep
	// their cached entries.
	exact   bool
	touched []int64
	// affected, when > 0, is the RowsAffected an Exec must report (and the
	// row count of a Query with a RETURNING of the caller's).
	affected int64
	// Modes beyond autocommit and tx Exec: Query (drained) and a prepared
	// statement; queryOnly: only through Query (statements returning rows).
	query, stmt, queryOnly bool
	// run replaces the standard modes with one custom run.
	run func(t *testing.T, ctx context.Context, d *wpDB) error
}

var wpCases = []wpCase{
	// INSERT
	{name: "insert single", sql: "INSERT INTO users (id, email, org_id, slug, name) VALUES ($1, $2, $3, $4, $5)",
		args: []any{6, "new@x", 1, "new", "New"}, exact: true, affected: 1, query: true, stmt: true},
	{name: "insert default id", sql: "INSERT INTO users (email, org_id, slug, name) VALUES ('New@X', 1, 'new', 'New')",
		exact: true, affected: 1, query: true, stmt: true},
	{name: "insert multi", sql: "INSERT INTO users (id, email, org_id, slug, name) VALUES (6, 'new@x', 1, 'new', 'N1'), (7, 'new2@x', 1, 'new2', 'N2')",
		exact: true, affected: 2, query: true},
	{name: "insert select", sql: "INSERT INTO users (id, email, org_id, slug, name) SELECT id + 100, 'c' || email, org_id, slug || '2', name FROM users WHERE org_id = 2",
		exact: true, affected: 2, query: true},
	{name: "sqlc one insert returning star", sql: "-- name: CreateUser :one\nINSERT INTO users (email, org_id, slug, name) VALUES ($1, $2, $3, $4) RETURNING *",
		args: []any{"new@x", 1, "new", "New"}, exact: true, affected: 1, queryOnly: true, stmt: true},
	{name: "insert returning id", sql: "INSERT INTO users (email, org_id, slug, name) VALUES ('new2@x', 1, 'new2', 'N') RETURNING id",
		exact: true, affected: 1, queryOnly: true},

	// UPDATE, non-key columns
	{name: "update by id", sql: "UPDATE users SET name = $1, version = version + 1 WHERE id = $2",
		args: []any{"Ann2", 1}, exact: true, touched: []int64{1}, affected: 1, query: true, stmt: true},
	{name: "update by email", sql: "UPDATE users SET name = 'Bobby' WHERE lower(email) = lower($1)",
		args: []any{"BOB@x"}, exact: true, touched: []int64{2}, affected: 1, query: true, stmt: true},
	{name: "update by composite key", sql: "UPDATE users SET name = 'Cyrus' WHERE org_id = $1 AND slug = $2",
		args: []any{2, "cy"}, exact: true, touched: []int64{3}, affected: 1, stmt: true},
	{name: "update range", sql: "UPDATE users SET version = version + 10 WHERE id BETWEEN 2 AND 4",
		exact: true, touched: []int64{2, 3, 4}, affected: 3, query: true},
	{name: "update no where", sql: "UPDATE users SET version = version + 1", affected: 5, query: true},
	{name: "update returning", sql: "UPDATE users SET name = 'R' WHERE id = 2 RETURNING id, name",
		exact: true, touched: []int64{2}, affected: 1, queryOnly: true, stmt: true},
	{name: "update zero rows", sql: "UPDATE users SET name = 'none' WHERE id = 99", exact: true, query: true},

	// UPDATE of key columns
	{name: "rename email", sql: "UPDATE users SET email = $1 WHERE id = $2",
		args: []any{"renamed@x", 1}, exact: true, touched: []int64{1}, affected: 1, query: true, stmt: true},
	{name: "rename email by old email", sql: "UPDATE users SET email = $1 WHERE lower(email) = lower($2)",
		args: []any{"renamed@x", "ANN@x"}, exact: true, touched: []int64{1}, affected: 1, stmt: true},
	{name: "rename email case only", sql: "UPDATE users SET email = 'ANN@X' WHERE id = 1",
		exact: true, touched: []int64{1}, affected: 1},
	{name: "change composite key", sql: "UPDATE users SET org_id = 3, slug = 'zed' WHERE id = 2",
		exact: true, touched: []int64{2}, affected: 1, query: true},
	{name: "change slug by email", sql: "UPDATE users SET slug = 'renamed' WHERE email = 'ann@x'",
		exact: true, touched: []int64{1}, affected: 1},
	{name: "rekey range", sql: "UPDATE users SET slug = slug || '-x' WHERE org_id = $1",
		args: []any{1}, exact: true, touched: []int64{1, 2}, affected: 2, query: true, stmt: true},
	{name: "set key to itself", sql: "UPDATE users SET email = email, slug = slug WHERE id = 3",
		exact: true, touched: []int64{3}, affected: 1},
	{name: "rename returning", sql: "UPDATE users SET email = 'renamed@x' WHERE id = 1 RETURNING email",
		exact: true, touched: []int64{1}, affected: 1, queryOnly: true},

	// Upserts
	{name: "upsert do nothing conflict", sql: "INSERT INTO users (id, email, org_id, slug, name) VALUES (1, 'ann@x', 1, 'ann', 'Dup') ON CONFLICT DO NOTHING",
		exact: true, query: true},
	{name: "upsert do nothing insert", sql: "INSERT INTO users (id, email, org_id, slug, name) VALUES (6, 'new@x', 1, 'new', 'New') ON CONFLICT DO NOTHING",
		exact: true, affected: 1, query: true},
	{name: "upsert do update non-key", sql: "INSERT INTO users (id, email, org_id, slug, name) VALUES ($1, 'ann@x', 1, 'ann', $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, version = users.version + 1",
		args: []any{1, "Ann3"}, exact: true, touched: []int64{1}, affected: 1, query: true, stmt: true},
	{name: "upsert do update insert", sql: "INSERT INTO users (id, email, org_id, slug, name) VALUES (6, 'new@x', 1, 'new', 'New') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
		exact: true, affected: 1},
	{name: "upsert do update rekey", sql: "INSERT INTO users (id, email, org_id, slug, name) VALUES (1, 'renamed@x', 1, 'annz', 'A') ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, slug = EXCLUDED.slug",
		affected: 1, query: true},

	// DELETE
	{name: "delete by id", sql: "DELETE FROM users WHERE id = $1", args: []any{2},
		exact: true, touched: []int64{2}, affected: 1, query: true, stmt: true},
	{name: "delete by email", sql: "DELETE FROM users WHERE lower(email) = lower($1)", args: []any{"Dee@X"},
		exact: true, touched: []int64{4}, affected: 1},
	{name: "delete range", sql: "DELETE FROM users WHERE id > 3", exact: true, touched: []int64{4, 5}, affected: 2, query: true},
	{name: "delete all", sql: "DELETE FROM users", exact: true, touched: []int64{1, 2, 3, 4, 5}, affected: 5},
	{name: "delete returning star", sql: "DELETE FROM users WHERE org_id = 1 RETURNING *",
		exact: true, touched: []int64{1, 2}, affected: 2, queryOnly: true},

	// Writes whose rows cannot be known: table bumps.
	{name: "delete parent cascade", sql: "DELETE FROM orgs WHERE id = 2", affected: 1, stmt: true},
	{name: "update parent", sql: "UPDATE orgs SET name = 'acme2' WHERE id = 1", affected: 1},
	{name: "truncate", sql: "TRUNCATE users"},
	{name: "truncate parent cascade", sql: "TRUNCATE orgs CASCADE"},
	{name: "alter table", sql: "ALTER TABLE users ADD COLUMN extra int DEFAULT 0"},
	{name: "copy from program", sql: `COPY users (id, email, org_id, slug, name) FROM PROGRAM 'echo 6,copied@x,3,copied,Copied' WITH (FORMAT csv)`, affected: 1},
	{name: "call procedure", sql: "CALL set_email(1, 'renamed@x')"},
	{name: "do block", sql: "DO $$ BEGIN UPDATE users SET email = 'renamed@x' WHERE id = 1; DELETE FROM users WHERE id = 5; END $$"},
	{name: "multi statement", sql: "UPDATE users SET name = 'M1' WHERE id = 1; UPDATE users SET email = 'renamed@x' WHERE id = 2"},
	{name: "writable cte", sql: "WITH u AS (UPDATE users SET email = 'renamed@x' WHERE id = 1 RETURNING id) SELECT id FROM u",
		query: true},
	{name: "select writing function", sql: "SELECT touch_user(1, 'Touched')", queryOnly: true},
	{name: "explain analyze update", sql: "EXPLAIN ANALYZE UPDATE users SET email = 'renamed@x' WHERE id = 1", queryOnly: true},
	{name: "unclassifiable", sql: "UPDATE users SET name = 'U' WHERE id = 1 RETURNING (SELECT 1", run: wpRunUnclassifiable},
	{name: "named args", sql: "UPDATE users SET name = @name, email = @email WHERE id = @id",
		args: []any{pgx.NamedArgs{"name": "Named", "email": "renamed@x", "id": 1}}, affected: 1},
	{name: "simple protocol", sql: "UPDATE users SET email = $1 WHERE id = $2",
		args: []any{pgx.QueryExecModeSimpleProtocol, "renamed@x", 1}, exact: true, touched: []int64{1}, affected: 1, query: true},
	{name: "write to table without rule", sql: "UPDATE notes SET body = 'x' WHERE id = 1", exact: true, affected: 1, query: true, stmt: true},

	// Writes through Query, in autocommit.
	{name: "query drained", run: wpRunQueryDrained, exact: true, touched: []int64{1}},
	// Closed early: the rows not read were written too, so the table is bumped.
	{name: "query closed early", run: wpRunQueryClosedEarly},

	// Transactions controlled with SQL text on a sql.Conn.
	{name: "begin commit as text", run: wpRunTextCommit, exact: true, touched: []int64{1, 2}},
	{name: "rollback as text", run: wpRunTextRollback, exact: true},
	{name: "savepoint rollback to", run: wpRunSavepoint, exact: true, touched: []int64{1, 2}},
	{name: "commit and chain", run: wpRunCommitAndChain, exact: true, touched: []int64{1, 2}},
}

func TestWritePathShapes(t *testing.T) {
	if len(wpCases) < 40 {
		t.Fatalf("%d cases; issue 5 wants at least 40", len(wpCases))
	}
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		t.Parallel()
		e := newRPEnv(t, wpDDL...)
		for _, c := range wpCases {
			t.Run(c.name, func(t *testing.T) {
				for _, mode := range c.modes() {
					if b.name == "memory" && !strings.HasSuffix(mode, "exec") && len(c.modes()) > 2 {
						continue // Query and Stmt paths are backend-independent: memcached runs them; keep the run short
					}
					t.Run(mode, func(t *testing.T) { wpRunCase(t, e, b, c, mode) })
				}
			})
		}
	})
}

func (c wpCase) modes() []string {
	if c.run != nil {
		return []string{"custom"}
	}
	var m []string
	if !c.queryOnly {
		m = append(m, "exec", "tx-exec")
	}
	if c.query || c.queryOnly {
		m = append(m, "query", "tx-query")
	}
	if c.stmt {
		m = append(m, "stmt", "tx-stmt")
	}
	return m
}

func wpRunCase(t *testing.T, e *rpEnv, b rpBackend, c wpCase, mode string) {
	ctx := rpCtx(t)
	wpReset(t, e)
	d := wpOpen(t, e, b, wpOpts{})
	keys := wpAllKeys()
	d.warm(t, ctx, keys)

	var err error
	if c.run != nil {
		err = c.run(t, ctx, d)
	} else {
		err = wpRunStandard(t, ctx, d, c, mode)
	}
	if err != nil {
		if strings.Contains(err.Error(), "FROM PROGRAM") || sqlState(err) == "42501" {
			t.Skipf("COPY FROM PROGRAM not possible here: %v", err)
		}
		t.Fatalf("write: %v", err)
	}
	// Untouched rows first: the consistency checks below refill them.
	if c.exact {
		d.stillHits(t, ctx, "after the write", otherIDs(c.touched...))
	}
	d.consistent(t, ctx, "after the write", keys)
}

// wpRunStandard runs c's statement in mode, through database/sql.
func wpRunStandard(t *testing.T, ctx context.Context, d *wpDB, c wpCase, mode string) error {
	var (
		x   wpExecer = d.DB
		tx  *sql.Tx
		err error
	)
	if strings.HasPrefix(mode, "tx-") {
		if tx, err = d.BeginTx(ctx, nil); err != nil {
			return err
		}
		x = tx
	}
	var n int64
	switch strings.TrimPrefix(mode, "tx-") {
	case "exec", "stmt":
		var res sql.Result
		if mode == "exec" || mode == "tx-exec" {
			res, err = x.ExecContext(ctx, c.sql, c.args...)
		} else {
			var st *sql.Stmt
			if st, err = x.PrepareContext(ctx, c.sql); err == nil {
				res, err = st.ExecContext(ctx, c.args...)
				st.Close()
			}
		}
		if err == nil {
			n, err = res.RowsAffected()
			if err != nil && c.affected == 0 {
				err = nil // DDL, DO, CALL: no count to check
			}
		}
	case "query":
		var rows *sql.Rows
		if rows, err = x.QueryContext(ctx, c.sql, c.args...); err == nil {
			var got int
			got, err = drain(rows)
			cols, _ := rows.Columns()
			if len(cols) > 0 {
				n = int64(got)
			} else {
				n = c.affected // no rows to count
			}
		}
	}
	if err != nil {
		if tx != nil {
			tx.Rollback()
		}
		return err
	}
	if c.affected > 0 && n != c.affected {
		t.Errorf("%s: %d rows affected; want %d", mode, n, c.affected)
	}
	if tx != nil {
		return tx.Commit()
	}
	return nil
}

// wpRunUnclassifiable sends a statement the parser cannot classify (here,
// one PostgreSQL rejects too, after which a valid write follows): it must
// flush everything it might have written, and never break the session.
func wpRunUnclassifiable(t *testing.T, ctx context.Context, d *wpDB) error {
	if _, err := d.ExecContext(ctx, "UPDATE users SET name = 'U' WHERE id = 1 RETURNING (SELECT 1"); err == nil {
		return errors.New("a syntax error was accepted")
	}
	// A statement that lexes oddly but is valid: a nested dollar-quoted
	// string with a keyword inside, and an unusual statement head.
	_, err := d.ExecContext(ctx, "/* x */ (WITH u AS (UPDATE users SET email = 'renamed@x' WHERE id = 1 RETURNING id) SELECT id FROM u)")
	return err
}

// wpRunQueryDrained: a write without RETURNING sent through Query in
// autocommit: the flush happens at the end of its rows.
func wpRunQueryDrained(t *testing.T, ctx context.Context, d *wpDB) error {
	rows, err := d.QueryContext(ctx, "UPDATE users SET email = 'renamed@x' WHERE id = 1")
	if err != nil {
		return err
	}
	if rows.Next() {
		t.Errorf("a write without RETURNING returned a row")
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

// wpRunQueryClosedEarly: a write with RETURNING, closed after one of its
// two rows. A read starting after Close must see the write.
func wpRunQueryClosedEarly(t *testing.T, ctx context.Context, d *wpDB) error {
	rows, err := d.QueryContext(ctx, "UPDATE users SET email = 'r' || email, version = version + 1 WHERE org_id = 1 RETURNING id")
	if err != nil {
		return err
	}
	if !rows.Next() {
		rows.Close()
		return fmt.Errorf("no row: %v", rows.Err())
	}
	if err := rows.Close(); err != nil {
		return err
	}
	// Immediately after Close, through the same pool.
	for _, l := range []wpLookup{byID(1), byID(2), byEmail("ann@x"), byEmail("rann@x"), bySlug(1, "bob")} {
		got, want := lookupVia(ctx, d, l), lookupPlain(ctx, d.plain, l)
		if got != want {
			t.Errorf("right after Close: %v: cachedsql %v; database %v", l, got, want)
		}
	}
	return nil
}

func wpConn(ctx context.Context, d *wpDB) (*sql.Conn, error) { return d.Conn(ctx) }

// wpRunTextCommit: BEGIN and COMMIT sent as SQL text on one sql.Conn.
func wpRunTextCommit(t *testing.T, ctx context.Context, d *wpDB) error {
	c, err := wpConn(ctx, d)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, q := range []string{
		"BEGIN",
		"UPDATE users SET email = 'renamed@x' WHERE id = 1",
		"UPDATE users SET name = 'B2', slug = 'new' WHERE id = 2",
	} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	// Inside: the session's own writes.
	if got := lookupVia(ctx, c, byEmail("renamed@x")); got.ID != 1 {
		t.Errorf("inside the text transaction, by new email: %v; want row 1", got)
	}
	_, err = c.ExecContext(ctx, "COMMIT")
	return err
}

// wpRunTextRollback: ROLLBACK sent as text flushes nothing (every row stays
// a hit) and leaves the cache consistent.
func wpRunTextRollback(t *testing.T, ctx context.Context, d *wpDB) error {
	c, err := wpConn(ctx, d)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, q := range []string{
		"BEGIN",
		"UPDATE users SET email = 'renamed@x' WHERE id = 1",
		"DELETE FROM users WHERE id = 2",
		"INSERT INTO users (id, email, org_id, slug, name) VALUES (6, 'new@x', 1, 'new', 'New')",
		"ROLLBACK",
	} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// wpRunSavepoint: a savepoint rolled back to undoes only part of the
// transaction; what stays committed must be flushed.
func wpRunSavepoint(t *testing.T, ctx context.Context, d *wpDB) error {
	c, err := wpConn(ctx, d)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, q := range []string{
		"BEGIN",
		"UPDATE users SET email = 'renamed@x' WHERE id = 1",
		"SAVEPOINT s1",
		"UPDATE users SET slug = 'new' WHERE id = 2",
		"ROLLBACK TO SAVEPOINT s1",
		"UPDATE users SET name = 'Bob2' WHERE id = 2",
		"RELEASE SAVEPOINT s1",
		"COMMIT",
	} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// wpRunCommitAndChain: COMMIT AND CHAIN commits (and must flush) the first
// transaction while the session stays in a new one.
func wpRunCommitAndChain(t *testing.T, ctx context.Context, d *wpDB) error {
	c, err := wpConn(ctx, d)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, q := range []string{
		"BEGIN",
		"UPDATE users SET email = 'renamed@x' WHERE id = 1",
		"COMMIT AND CHAIN",
	} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	// The first transaction is committed: other sessions must see it.
	for _, m := range d.mismatches(ctx, d, []wpLookup{byID(1), byEmail("ann@x"), byEmail("renamed@x"), bySlug(1, "ann")}) {
		t.Errorf("after COMMIT AND CHAIN, another session: %s", m)
	}
	for _, q := range []string{
		"UPDATE users SET slug = 'new' WHERE id = 2",
		"COMMIT",
	} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// TestWritePathHarnessDetectsStaleness: the checks above can fail. A write
// made behind cachedsql's back (the plain pool) leaves stale entries that
// consistent reports.
func TestWritePathHarnessDetectsStaleness(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		ctx := rpCtx(t)
		e := newRPEnv(t, wpDDL...)
		wpReset(t, e)
		d := wpOpen(t, e, b, wpOpts{})
		d.warm(t, ctx, wpAllKeys())
		e.exec(t, "UPDATE @.users SET email = 'renamed@x' WHERE id = 1")
		if m := d.mismatches(ctx, d, wpAllKeys()); len(m) < 3 {
			t.Errorf("an unflushed rename: %d mismatches reported (%q); want at least 3 (old email, new email, id)", len(m), m)
		}
	})
}

// Issue 5, item 2: a rollback flushes nothing; a failed COMMIT and a
// COMMIT whose outcome is unknown leave the cache consistent.

func TestWritePathRollbackFlushesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		ctx := rpCtx(t)
		e := newRPEnv(t, wpDDL...)
		wpReset(t, e)
		d := wpOpen(t, e, b, wpOpts{})
		keys := wpAllKeys()
		d.warm(t, ctx, keys)
		tx, err := d.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"UPDATE users SET email = 'renamed@x' WHERE id = 1",
			"DELETE FROM users WHERE id = 2",
			"INSERT INTO users (id, email, org_id, slug, name) VALUES (6, 'new@x', 1, 'new', 'New')",
			"UPDATE users SET version = version + 1", // a bump, rolled back too
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		d.stillHits(t, ctx, "after ROLLBACK", otherIDs())
		for _, l := range wpMissKeys {
			if !d.isHit(ctx, l) {
				t.Errorf("after ROLLBACK: cached miss %v was flushed", l)
			}
		}
		d.consistent(t, ctx, "after ROLLBACK", keys)
	})
}

// TestWritePathSerializationFailure: two SERIALIZABLE transactions with a
// write skew; the second COMMIT fails (40001). Whatever cachedsql flushed
// for it, every lookup afterwards answers what the database holds.
func TestWritePathSerializationFailure(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		ctx := rpCtx(t)
		e := newRPEnv(t, wpDDL...)
		wpReset(t, e)
		d := wpOpen(t, e, b, wpOpts{})
		keys := wpAllKeys()
		d.warm(t, ctx, keys)
		ser := &sql.TxOptions{Isolation: sql.LevelSerializable}
		t1, err := d.BeginTx(ctx, ser)
		if err != nil {
			t.Fatal(err)
		}
		defer t1.Rollback()
		t2, err := d.BeginTx(ctx, ser)
		if err != nil {
			t.Fatal(err)
		}
		defer t2.Rollback()
		var n int
		for _, tx := range []*sql.Tx{t1, t2} {
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM users WHERE org_id = 1").Scan(&n); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := t1.ExecContext(ctx, "UPDATE users SET email = 'renamed@x' WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		_, err2 := t2.ExecContext(ctx, "UPDATE users SET slug = 'new', name = 'B2' WHERE id = 2")
		if err := t1.Commit(); err != nil {
			t.Fatalf("first COMMIT: %v", err)
		}
		if err2 == nil {
			err2 = t2.Commit()
		}
		if sqlState(err2) != "40001" {
			t.Fatalf("second transaction: %v; want a serialization failure (40001)", err2)
		}
		d.consistent(t, ctx, "after a failed COMMIT", keys)
		if got := lookupVia(ctx, d, byID(2)); got.Name != "Bob" {
			t.Errorf("row 2 after its transaction failed: %v", got)
		}
	})
}

// TestWritePathCommitCut: the connection is cut exactly at COMMIT (a
// proxy forwards COMMIT, lets PostgreSQL commit, and drops the connection
// before its reply). The caller gets an error, the database has the write,
// and no pool sharing the cache serves the old value afterwards.
func TestWritePathCommitCut(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		e := newRPEnv(t, wpDDL...)
		u, err := url.Parse(e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		px, err := pgproxy.Start(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { px.Close() })
		u.Host = px.Addr()
		shared := b.cache(t)
		for _, mode := range []string{"tx", "autocommit", "query"} {
			t.Run(mode, func(t *testing.T) {
				ctx := rpCtx(t)
				wpReset(t, e)
				o := wpOpts{dsn: u.String(), cache: shared}
				w := wpOpen(t, e, b, o)
				o.namespace = w.ns
				r := wpOpen(t, e, b, o) // another process, sharing the cache
				keys := wpAllKeys()
				r.warm(t, ctx, keys)
				const q = "UPDATE users SET email = 'renamed@x', name = 'Cut' WHERE id = 1"
				cuts := px.Cuts()
				px.CutAtCommit()
				switch mode {
				case "tx":
					tx, err := w.BeginTx(ctx, nil)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := tx.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
					err = tx.Commit()
					if err == nil {
						t.Errorf("COMMIT over a cut connection returned nil")
					}
				case "autocommit":
					if _, err := w.ExecContext(ctx, q); err == nil {
						t.Errorf("an autocommit write over a connection cut at COMMIT returned nil")
					}
				case "query":
					rows, err := w.QueryContext(ctx, q+" RETURNING id")
					if err == nil {
						_, err = drain(rows)
					}
					if err == nil {
						t.Errorf("a write through Query over a connection cut at COMMIT returned nil")
					}
				}
				if got := px.Cuts() - cuts; got != 1 {
					t.Fatalf("the proxy cut %d connections at COMMIT; want 1", got)
				}
				if got := lookupPlain(ctx, w.plain, byID(1)); got.Name != "Cut" {
					t.Fatalf("the database does not have the write: %v", got)
				}
				r.consistent(t, ctx, "another pool, after the cut", keys)
				w.consistent(t, ctx, "the writer's pool, after the cut", keys)
			})
		}
	})
}

// Issue 5, item 3: inside a transaction, reads of what it wrote return its
// values; above READ COMMITTED (asked for, or the role's default) the
// transaction keeps its snapshot while other sessions commit and refill.

func TestWritePathTxIsolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b rpBackend) {
		e := newRPEnv(t, wpDDL...)
		role := wpName("wp_rr_")
		e.exec(t, "CREATE ROLE "+role+" LOGIN")
		t.Cleanup(func() {
			ctx := context.Background()
			e.admin.Exec(ctx, "DROP OWNED BY "+role)
			if _, err := e.admin.Exec(ctx, "DROP ROLE "+role); err != nil {
				t.Errorf("DROP ROLE %s: %v", role, err)
			}
		})
		e.exec(t, "GRANT USAGE ON SCHEMA "+e.schema+" TO "+role)
		e.exec(t, "GRANT ALL ON ALL TABLES IN SCHEMA "+e.schema+" TO "+role)
		e.exec(t, "GRANT ALL ON ALL SEQUENCES IN SCHEMA "+e.schema+" TO "+role)
		e.exec(t, "ALTER ROLE "+role+" SET default_transaction_isolation = 'repeatable read'")
		ru, err := url.Parse(e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		ru.User = url.User(role)

		for _, lv := range []struct {
			name     string
			level    sql.IsolationLevel
			dsn      string
			snapshot bool
		}{
			{"read committed", sql.LevelReadCommitted, "", false},
			{"repeatable read", sql.LevelRepeatableRead, "", true},
			{"serializable", sql.LevelSerializable, "", true},
			{"role default repeatable read", sql.LevelDefault, ru.String(), true},
		} {
			t.Run(lv.name, func(t *testing.T) {
				ctx := rpCtx(t)
				wpReset(t, e)
				shared := b.cache(t)
				a := wpOpen(t, e, b, wpOpts{dsn: lv.dsn, cache: shared})
				other := wpOpen(t, e, b, wpOpts{cache: shared, namespace: a.ns})
				keys := wpAllKeys()
				a.warm(t, ctx, keys)

				tx, err := a.BeginTx(ctx, &sql.TxOptions{Isolation: lv.level})
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				if got := lookupVia(ctx, tx, byID(3)); got.Name != "Cy" {
					t.Fatalf("first read in the transaction: %v", got)
				}
				for _, q := range []string{
					"UPDATE users SET name = 'TxName', version = 9 WHERE id = 1",
					"UPDATE users SET email = 'renamed@x' WHERE id = 2",
				} {
					if _, err := tx.ExecContext(ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				// Read your writes, by every key.
				for _, c := range []struct {
					l    wpLookup
					want string // name, or "" for absent
				}{
					{byID(1), "TxName"}, {byEmail("ann@x"), "TxName"}, {bySlug(1, "ann"), "TxName"},
					{byEmail("renamed@x"), "Bob"}, {byEmail("bob@x"), ""}, {byID(2), "Bob"},
				} {
					got := lookupVia(ctx, tx, c.l)
					if got.Name != c.want || got.Found != (c.want != "") {
						t.Errorf("inside the transaction, %v: %v; want name %q", c.l, got, c.want)
					}
				}
				// Another session commits a change to row 3, and another
				// process fills the new value.
				if _, err := other.ExecContext(ctx, "UPDATE users SET name = 'Outside' WHERE id = 3"); err != nil {
					t.Fatal(err)
				}
				lookupVia(ctx, other, byID(3))
				if !other.isHit(ctx, byID(3)) {
					t.Fatalf("the other process did not fill row 3")
				}
				want := "Outside"
				if lv.snapshot {
					want = "Cy"
				}
				for _, l := range []wpLookup{byID(3), byEmail("cy@x"), bySlug(2, "cy")} {
					if got := lookupVia(ctx, tx, l); got.Name != want {
						t.Errorf("inside the transaction after another commit, %v: %v; want name %q", l, got, want)
					}
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				a.consistent(t, ctx, "after COMMIT", keys)
				other.consistent(t, ctx, "another process, after COMMIT", keys)
			})
		}
	})
}

// Issue 5, item 4: the cache down or black-holed when a write commits.

// wpDownCases are the ways a cache can be gone.
var wpDownCases = []struct {
	name string
	down func(t *testing.T, srv *fakememcache.Server)
}{
	{"black hole", func(t *testing.T, srv *fakememcache.Server) { srv.SetFaults(fakememcache.Faults{BlackHole: true}) }},
	{"refused", func(t *testing.T, srv *fakememcache.Server) {
		if err := srv.Refuse(true); err != nil {
			t.Fatal(err)
		}
	}},
}

func wpCacheDownOpts(srv *fakememcache.Server, failOpen bool, ns string) wpOpts {
	return wpOpts{
		cache:     cachedsql.Memcache(memcache.New(srv.Addr())),
		namespace: ns,
		mutate: func(c *cachedsql.Config) {
			c.CacheTimeout = 100 * time.Millisecond
			c.FlushTimeout = 300 * time.Millisecond
			c.LeaseWait = 50 * time.Millisecond
			c.MarkerTTL = 2 * time.Second
			c.FailOpenWrites = failOpen
		},
	}
}

func TestWritePathCacheDownFailsClosed(t *testing.T) {
	e := newRPEnv(t, wpDDL...)
	mem := rpBackends[1]
	for _, down := range wpDownCases {
		t.Run(down.name, func(t *testing.T) {
			ctx := rpCtx(t)
			wpReset(t, e)
			srv := fakememcache.Start(t)
			d := wpOpen(t, e, mem, wpCacheDownOpts(srv, false, ""))
			d.warm(t, ctx, wpAllKeys())
			down.down(t, srv)

			for _, w := range []struct {
				name string
				run  func() error
			}{
				{"autocommit key flush", func() error {
					_, err := d.ExecContext(ctx, "UPDATE users SET email = 'renamed@x' WHERE id = 1")
					return err
				}},
				{"autocommit table bump", func() error {
					_, err := d.ExecContext(ctx, "UPDATE users SET name = 'All'")
					return err
				}},
				{"autocommit query", func() error {
					rows, err := d.QueryContext(ctx, "UPDATE users SET name = 'Q' WHERE id = 1 RETURNING id")
					if err == nil {
						_, err = drain(rows)
					}
					return err
				}},
				{"explicit tx", func() error {
					tx, err := d.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					if _, err := tx.ExecContext(ctx, "UPDATE users SET email = 'renamed@x', name = 'Tx' WHERE id = 1"); err != nil {
						tx.Rollback()
						return err
					}
					return tx.Commit()
				}},
			} {
				err := w.run()
				if !errors.Is(err, cachedsql.ErrFlushUnavailable) {
					t.Errorf("%s with the cache down: %v; want ErrFlushUnavailable", w.name, err)
				}
				if got := lookupPlain(ctx, d.plain, byID(1)); got.Name != "Ann" || got.Email != "ann@x" {
					t.Errorf("%s: the database has the write: %v", w.name, got)
				}
				if got := lookupPlain(ctx, d.plain, byID(2)); got.Name != "Bob" {
					t.Errorf("%s: the database has the write: %v", w.name, got)
				}
			}
			// Reads still work, from the database.
			d.consistent(t, ctx, "reads with the cache down", wpAllKeys())
		})
	}
}

// TestWritePathFailOpenWrites: with FailOpenWrites a write commits while
// the cache is down; the cache then comes back with its old entries (a
// black hole ends; nothing was evicted) later than MarkerTTL. The writer's
// process bypasses the written tables locally, and keeps retrying its
// clears for as long as an entry may live, so another process sharing the
// cache reads the new row once the clears land.
func TestWritePathFailOpenWrites(t *testing.T) {
	e := newRPEnv(t, wpDDL...)
	mem := rpBackends[1]
	for _, w := range []struct{ name, sql string }{
		{"key flush", "UPDATE users SET email = 'renamed@x', name = 'Open' WHERE id = 1"},
		{"table bump", "UPDATE users SET name = 'Open'"},
	} {
		t.Run(w.name, func(t *testing.T) {
			ctx := rpCtx(t)
			wpReset(t, e)
			srv := fakememcache.Start(t)
			a := wpOpen(t, e, mem, wpCacheDownOpts(srv, true, ""))
			other := wpOpen(t, e, mem, wpCacheDownOpts(srv, false, a.ns))
			keys := wpAllKeys()
			a.warm(t, ctx, keys)
			other.warm(t, ctx, keys)

			srv.SetFaults(fakememcache.Faults{BlackHole: true})
			if _, err := a.ExecContext(ctx, w.sql); err != nil {
				t.Fatalf("FailOpenWrites: %v; want the write committed", err)
			}
			if got := lookupPlain(ctx, a.plain, byID(1)); got.Name != "Open" {
				t.Fatalf("the database does not have the write: %v", got)
			}
			// Stay down past MarkerTTL (2s): retries bounded by it would
			// have given up by now.
			time.Sleep(2500 * time.Millisecond)
			deadline := time.Now().Add(10 * time.Second)
			srv.SetFaults(fakememcache.Faults{}) // the cache is back, old entries and all
			// Wait until both pools use the cache again (their breakers
			// closed): a row the write did not touch is a hit again.
			// Wait until the other pool uses the cache again, then past the
			// writer's breaker cooldown (1s), and let one read probe it.
			for !other.isHit(ctx, byID(5)) {
				if time.Now().After(deadline) {
					t.Fatalf("the cache never came back")
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Past the writer's breaker cooldown (1s) and its next retry
			// (at most 1s apart).
			time.Sleep(2200 * time.Millisecond)
			lookupVia(ctx, a, byID(5))
			lookupVia(ctx, a, byID(4))

			t.Run("writer process", func(t *testing.T) {
				a.consistent(t, ctx, "the writer's process, after the cache returns", keys)
			})
			t.Run("other process", func(t *testing.T) {
				other.consistent(t, ctx, "another process, after the cache returns", keys)
			})
		})
	}
}
