// Package testenv gives tests the real servers they need. A test that needs
// PostgreSQL or memcached skips when the server is not reachable, except in CI
// (CI=true), where an absent server is a failure: CI must never pass by skipping.
package testenv

import (
	"context"
	"database/sql"
	"net"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
)

const (
	defaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultMemcache    = "127.0.0.1:11211"
)

// InCI reports whether the tests run in CI, where nothing may skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// PostgresDSN returns the DSN of the test database (CACHEDSQL_TEST_PG_DSN, or
// the local default), after checking that it answers.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("CACHEDSQL_TEST_PG_DSN")
	if dsn == "" {
		dsn = defaultPostgresDSN
	}
	db, err := sql.Open("pgx", dsn)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		db.Close()
	}
	if err != nil {
		unavailable(t, "PostgreSQL at "+dsn, err)
	}
	return dsn
}

// MemcacheAddr returns host:port of the test memcached
// (CACHEDSQL_TEST_MEMCACHE, or the local default), after checking that it
// accepts connections.
func MemcacheAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("CACHEDSQL_TEST_MEMCACHE")
	if addr == "" {
		addr = defaultMemcache
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		unavailable(t, "memcached at "+addr, err)
	}
	c.Close()
	return addr
}

func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required in CI: %v", what, err)
	}
	t.Skipf("%s not available (set CI=true to make this a failure): %v", what, err)
}
