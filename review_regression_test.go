package cachedsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// Regression tests for defects a review of the read and write paths found:
// transaction state drifting from the server's, multi-statement strings
// around COMMIT, RETURNING on row-level-security tables, QueryRow writes
// bumping their table, and a cancelled fill leader returning its
// connection while its query still ran.

type rvEnv struct {
	table  string
	writer *sql.DB
	reader *sql.DB
	rcn    *cachedsql.Connector
	plain  *sql.DB
}

func rvSetup(t *testing.T) *rvEnv {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	plain, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	tbl := fmt.Sprintf("rvreg_%d", rand.Int63())
	for _, s := range []string{
		fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, name text NOT NULL)", tbl),
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'old'), (2, 'old2')", tbl),
	} {
		if _, err := plain.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { plain.Exec("DROP TABLE " + tbl); plain.Close() })
	rules, err := cachedsql.ParseRules([]byte(fmt.Sprintf("tables:\n  %s:\n    keys: [[id]]\n", tbl)))
	if err != nil {
		t.Fatal(err)
	}
	cache := cachedsql.NewMemoryCache(0)
	ns := fmt.Sprint(rand.Int63())
	open := func() (*sql.DB, *cachedsql.Connector) {
		pc, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cn, err := cachedsql.NewConnector(stdlib.GetConnector(*pc), cachedsql.Config{Rules: rules, Cache: cache, Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(cn)
		t.Cleanup(func() { db.Close() })
		return db, cn
	}
	e := &rvEnv{table: tbl, plain: plain}
	e.writer, _ = open()
	e.reader, e.rcn = open()
	return e
}

func (e *rvEnv) read(t *testing.T, id int) string {
	t.Helper()
	var name string
	if err := e.reader.QueryRow(fmt.Sprintf("SELECT name FROM %s WHERE id = $1", e.table), id).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func (e *rvEnv) warm(t *testing.T, id int) {
	t.Helper()
	e.read(t, id)
	before := e.rcn.Stats().Hits
	e.read(t, id)
	if e.rcn.Stats().Hits != before+1 {
		t.Fatalf("not cached")
	}
}

func (e *rvEnv) check(t *testing.T, id int, want string) {
	t.Helper()
	if got := e.read(t, id); got != want {
		t.Errorf("STALE: cached read of id=%d got %q, database has %q", id, got, want)
	}
}

// BEGIN sent as text inside a database/sql Tx: tx.Commit clears c.tx but
// textTx stays set; the pooled conn then treats every autocommit write as
// in a transaction and never flushes it.
func TestRegressionTextBeginInsideTx(t *testing.T) {
	e := rvSetup(t)
	e.writer.SetMaxOpenConns(1)
	e.warm(t, 1)
	tx, err := e.writer.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.writer.Exec(fmt.Sprintf("UPDATE %s SET name = 'new' WHERE id = $1", e.table), 1); err != nil {
		t.Fatal(err)
	}
	e.check(t, 1, "new")
}

// "UPDATE ...; COMMIT" as one string in a text transaction: nothing flushed.
func TestRegressionMultiUpdateCommit(t *testing.T) {
	e := rvSetup(t)
	e.warm(t, 1)
	ctx := context.Background()
	c, err := e.writer.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, fmt.Sprintf("UPDATE %s SET name = 'new' WHERE id = 1; COMMIT", e.table)); err != nil {
		t.Fatal(err)
	}
	e.check(t, 1, "new")
}

// "BEGIN; UPDATE ..." outside a transaction, then COMMIT: flushed at the
// first statement (before commit), nothing at COMMIT.
func TestRegressionMultiBeginUpdate(t *testing.T) {
	e := rvSetup(t)
	e.warm(t, 1)
	ctx := context.Background()
	c, err := e.writer.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, fmt.Sprintf("BEGIN; UPDATE %s SET name = 'new' WHERE id = 1", e.table)); err != nil {
		t.Fatal(err)
	}
	e.warm(t, 1) // a reader fills the old row while the tx is open
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	e.check(t, 1, "new")
}

func TestRegressionTrailingCommentAndSemicolon(t *testing.T) {
	for _, q := range []string{
		"UPDATE %s SET name = 'new' WHERE id = $1 -- trailing comment",
		"UPDATE %s SET name = 'new' WHERE id = $1;",
		"UPDATE %s SET name = 'new' WHERE id = $1 /* c */",
		"UPDATE %s SET name = 'new' WHERE id = $1;\n-- c",
	} {
		t.Run(q, func(t *testing.T) {
			e := rvSetup(t)
			e.warm(t, 1)
			res, err := e.writer.Exec(fmt.Sprintf(q, e.table), 1)
			if err != nil {
				t.Fatalf("exec: %v", err)
			}
			n, _ := res.RowsAffected()
			if n != 1 {
				t.Errorf("RowsAffected %d", n)
			}
			e.check(t, 1, "new")
		})
	}
}

func TestRegressionQueryWriteVariants(t *testing.T) {
	e := rvSetup(t)
	e.warm(t, 1)
	_, err := e.writer.Exec(fmt.Sprintf("UPDATE %s SET name = 'new' WHERE id = $1", e.table), pgx.QueryExecModeSimpleProtocol, 1)
	if err != nil {
		t.Fatal(err)
	}
	e.check(t, 1, "new")
	e.warm(t, 2)
	_, err = e.writer.Exec(fmt.Sprintf("UPDATE %s SET name = 'new2' WHERE id = @id", e.table), pgx.NamedArgs{"id": 2})
	if err != nil {
		t.Fatal(err)
	}
	e.check(t, 2, "new2")
}

// TestRegressionRLSInsert: a role may insert rows it may not select; the
// RETURNING cachedsql appends for its flush must not make that insert fail.
func TestRegressionRLSInsert(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	plain, _ := sql.Open("pgx", dsn)
	defer plain.Close()
	tbl := fmt.Sprintf("rvrls_%d", rand.Int63())
	for _, s := range []string{
		`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='rvreg_app') THEN CREATE ROLE rvreg_app LOGIN PASSWORD 'rvreg'; END IF; END $$`,
		fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, owner text NOT NULL)", tbl),
		fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY", tbl),
		fmt.Sprintf("CREATE POLICY sel ON %s FOR SELECT USING (owner = current_user)", tbl),
		fmt.Sprintf("CREATE POLICY ins ON %s FOR INSERT WITH CHECK (true)", tbl),
		fmt.Sprintf("GRANT SELECT, INSERT ON %s TO rvreg_app", tbl),
	} {
		if _, err := plain.Exec(s); err != nil {
			t.Fatal(s, err)
		}
	}
	defer plain.Exec("DROP TABLE " + tbl)
	rules, _ := cachedsql.ParseRules([]byte(fmt.Sprintf("tables:\n  %s:\n    keys: [[id]]\n", tbl)))
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pc.User, pc.Password = "rvreg_app", "rvreg"
	app := sql.OpenDB(stdlib.GetConnector(*pc))
	defer app.Close()
	if _, err := app.Exec(fmt.Sprintf("INSERT INTO %s VALUES ($1, 'someone_else')", tbl), 1); err != nil {
		t.Fatalf("plain pgx: %v", err)
	}
	cn, err := cachedsql.NewConnector(stdlib.GetConnector(*pc), cachedsql.Config{Rules: rules, Cache: cachedsql.NewMemoryCache(0)})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(cn)
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("INSERT INTO %s VALUES ($1, 'someone_else')", tbl), 2); err != nil {
		t.Errorf("cachedsql: %v", err)
	}
}

func TestRegressionQueryRowInsertBumps(t *testing.T) {
	e := rvSetup(t)
	e.warm(t, 2)
	var id int64
	if err := e.writer.QueryRow(fmt.Sprintf("INSERT INTO %s VALUES ($1, 'x') RETURNING id", e.table), 3).Scan(&id); err != nil {
		t.Fatal(err)
	}
	before := e.rcn.Stats().Hits
	e.read(t, 2)
	if e.rcn.Stats().Hits != before+1 {
		t.Errorf("QueryRow(INSERT ... RETURNING).Scan flushed the whole table: unrelated key id=2 no longer a hit")
	}
	e.warm(t, 2)
	if err := e.writer.QueryRow(fmt.Sprintf("UPDATE %s SET name='y' WHERE id = $1 RETURNING id", e.table), 1).Scan(&id); err != nil {
		t.Fatal(err)
	}
	before = e.rcn.Stats().Hits
	e.read(t, 2)
	if e.rcn.Stats().Hits != before+1 {
		t.Errorf("QueryRow(UPDATE ... RETURNING).Scan flushed the whole table")
	}
}

func TestRegressionLeaderCancelRace(t *testing.T) {
	e := rvSetup(t)
	e.reader.SetMaxOpenConns(1)
	ctx := context.Background()
	locker, err := e.plain.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	q := fmt.Sprintf("SELECT name FROM %s WHERE id = $1", e.table)
	for i := 0; i < 20; i++ {
		ltx, _ := locker.BeginTx(ctx, nil)
		ltx.Exec("LOCK TABLE " + e.table + " IN ACCESS EXCLUSIVE MODE")
		cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		var name string
		err := e.reader.QueryRowContext(cctx, q, 100+i).Scan(&name)
		cancel()
		ltx.Rollback()
		if err2 := e.reader.QueryRowContext(ctx, q, 1).Scan(&name); err2 != nil {
			t.Logf("iteration %d: first err %v; follow-up err %v", i, err, err2)
		}
	}
}
