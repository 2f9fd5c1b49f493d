package cachedsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// Issue 5, item 6: the cost of the write path, side by side with plain
// pgx stdlib, against real PostgreSQL and memcached:
//
//	go test -run '^$' -bench BenchmarkWrite -benchmem
//
// plain: UPDATE by primary key through pgx stdlib, no cachedsql.
// keys1 / keys3: the same UPDATE through cachedsql, the table ruled with
// one key ([id]) or three ([id], [email], [org_id, slug]): one implicit
// transaction, RETURNING of the key columns, tombstones before COMMIT,
// clears after.
// rename3: an UPDATE of the natural key email (three keys): adds the
// pre-read of the old keys.

const wbRules1 = `
tables:
  users:
    keys: [[id]]
`

func BenchmarkWriteUpdateByPK(b *testing.B) {
	dsn, schema := wbSchema(b)
	addr := testenv.MemcacheAddr(b)
	open := func(rules string) *sql.DB {
		if rules == "" {
			db := sql.OpenDB(stdlib.GetConnector(*mustPgxConfig(b, dsn)))
			b.Cleanup(func() { db.Close() })
			return db
		}
		r, err := cachedsql.ParseRules([]byte(strings.ReplaceAll(rules, "@.", schema+".")))
		if err != nil {
			b.Fatal(err)
		}
		cn, err := cachedsql.NewConnector(stdlib.GetConnector(*mustPgxConfig(b, dsn)), cachedsql.Config{
			Rules: r, Cache: cachedsql.Memcache(memcache.New(addr)), Namespace: wpName("wb-"),
			// Generous: a loaded machine must not turn a benchmark into a failure.
			FlushTimeout: 2 * time.Second, CacheTimeout: time.Second,
		})
		if err != nil {
			b.Fatal(err)
		}
		db := sql.OpenDB(cn)
		b.Cleanup(func() { db.Close() })
		return db
	}
	ctx := context.Background()
	for _, c := range []struct {
		name, rules string
		rename      bool
	}{
		{"plain", "", false},
		{"keys1", wbRules1, false},
		{"keys3", wpRules, false},
		{"plain-rename", "", true},
		{"rename3", wpRules, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			db := open(c.rules)
			db.SetMaxIdleConns(2)
			i := 0
			for b.Loop() {
				i++
				var err error
				if c.rename {
					_, err = db.ExecContext(ctx, "UPDATE users SET email = $1 WHERE id = $2", fmt.Sprintf("r%d@x", i), 3)
				} else {
					_, err = db.ExecContext(ctx, "UPDATE users SET version = version + 1 WHERE id = $1", 3)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// wbSchema creates the write-path fixture in a schema of its own and
// returns a DSN whose search_path is that schema.
func wbSchema(b *testing.B) (dsn, schema string) {
	b.Helper()
	base := testenv.PostgresDSN(b)
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, base)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(admin.Close)
	schema = wpName("wb_")
	stmts := append([]string{"CREATE SCHEMA " + schema}, wpDDL...)
	stmts = append(stmts, `INSERT INTO @.orgs VALUES (1, 'acme'), (2, 'globex'), (3, 'initech')`,
		`INSERT INTO @.users (id, email, org_id, slug, name, version) VALUES
		(1, 'ann@x', 1, 'ann', 'Ann', 1), (2, 'bob@x', 1, 'bob', 'Bob', 1), (3, 'cy@x', 2, 'cy', 'Cy', 1)`)
	for _, s := range stmts {
		if _, err := admin.Exec(ctx, strings.ReplaceAll(s, "@.", schema+".")); err != nil {
			b.Fatalf("%s: %v", s, err)
		}
	}
	b.Cleanup(func() { admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema
}

func mustPgxConfig(b *testing.B, dsn string) *pgx.ConnConfig {
	b.Helper()
	c, err := pgx.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
