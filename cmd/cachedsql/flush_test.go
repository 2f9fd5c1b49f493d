package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// queryCounter counts the queries with one text that reach PostgreSQL.
type queryCounter struct {
	query string
	n     atomic.Int64
}

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if d.SQL == c.query {
		c.n.Add(1)
	}
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestFlushCommand(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	addr := testenv.MemcacheAddr(t)
	schema := newSchema(t, dsn, `
CREATE TABLE SCHEMA.users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text);
INSERT INTO SCHEMA.users VALUES (1, 'ann@example.com', 'Ann'), (2, 'bob@example.com', 'Bob');`)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("tables:\n  "+schema+".users:\n    keys: [[id], [email]]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := cachedsql.LoadRules(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	namespace := "flushcmd-" + schema

	byID := "SELECT name FROM " + schema + ".users WHERE id = $1"
	tracer := &queryCounter{query: byID}
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.Tracer = tracer
	connector, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cachedsql.Config{
		Rules: rules, Cache: cachedsql.Memcache(memcache.New(addr)), Namespace: namespace,
	})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx := context.Background()

	lookup := func(id int, wantQueries int64) {
		t.Helper()
		var name string
		if err := db.QueryRowContext(ctx, byID, id).Scan(&name); err != nil {
			t.Fatal(err)
		}
		if got := tracer.n.Load(); got != wantQueries {
			t.Fatalf("lookup of %d: %d queries reached PostgreSQL, want %d", id, got, wantQueries)
		}
	}
	flush := func(args ...string) {
		t.Helper()
		out, stderr, code := runCmd(t, append([]string{"flush", "-dsn", dsn, "-memcache", addr, "-rules", rulesFile, "-namespace", namespace}, args...)...)
		if code != 0 || !strings.HasPrefix(out, "flushed ") {
			t.Fatalf("flush %q: exit status %d\n%s%s", args, code, out, stderr)
		}
	}

	lookup(1, 1) // miss: filled
	lookup(1, 1) // hit
	flush(schema+".users", "id=1")
	lookup(1, 2) // the key was flushed: the database again
	lookup(1, 2)

	// Another key of the same row is not id: FlushKey by email leaves id cached.
	flush(schema+".users", "email=ann@example.com")
	lookup(1, 2)

	// Every key of the row: FlushRow.
	flush(schema+".users", "id=1", "email=ann@example.com")
	lookup(1, 3)

	// The whole table.
	lookup(2, 4)
	lookup(2, 4)
	flush(schema + ".users")
	lookup(2, 5)
	lookup(1, 6)
}

func TestFlushCommandErrors(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	addr := testenv.MemcacheAddr(t)
	schema := newSchema(t, dsn, `CREATE TABLE SCHEMA.t (id bigint PRIMARY KEY, a int NOT NULL, b int NOT NULL, UNIQUE (a, b));`)
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rules, []byte("tables:\n  "+schema+".t:\n    keys: [[id], [a, b]]\n"), 0o644)
	table := schema + ".t"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"flush", table}, "-dsn, -memcache, -rules required"},
		{[]string{"flush", "-dsn", dsn, "-memcache", addr, "-rules", rules}, "no table given"},
		{[]string{"flush", "-dsn", dsn, "-memcache", addr, "-rules", rules, "nosuch"}, `table "nosuch" has no rule`},
		{[]string{"flush", "-dsn", dsn, "-memcache", addr, "-rules", rules, table, "c=1"}, `column "c" is in no key`},
		{[]string{"flush", "-dsn", dsn, "-memcache", addr, "-rules", rules, table, "a=1"}, "give one key's columns, or every key's"},
		{[]string{"flush", "-dsn", dsn, "-memcache", addr, "-rules", rules, table, "id"}, `"id" is not COLUMN=VALUE`},
		{[]string{"flush", "-dsn", dsn, "-memcache", "127.0.0.1:1", "-rules", rules, table}, "memcached at 127.0.0.1:1 is not reachable"},
		{[]string{"flush", "-dsn", dsn, "-memcache", "nocolon", "-rules", rules, table}, "is not host:port"},
		{[]string{"flush", "-dsn", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2", "-memcache", addr, "-rules", rules, table}, "PostgreSQL at 127.0.0.1:1 is not reachable"},
		{[]string{"flush", "-dsn", dsn, "-memcache", addr, "-rules", filepath.Join(dir, "none.yaml"), table}, "no such file"},
		{[]string{"flush", "-nope"}, "flag provided but not defined"},
	} {
		_, stderr, code := runCmd(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit status %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// A value that is not an integer for an integer key: FlushKey flushes
	// the table instead, and says nothing is wrong.
	if out, stderr, code := runCmd(t, "flush", "-dsn", dsn, "-memcache", addr, "-rules", rules, table, "id=abc"); code != 0 {
		t.Errorf("id=abc: exit status %d: %s%s", code, out, stderr)
	}
}
