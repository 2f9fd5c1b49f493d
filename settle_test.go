package cachedsql_test

import (
	"context"
	"database/sql"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/faultproxy"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// TestBrokenConnectionWaitsForTheServer: a write whose connection breaks
// while the server still works on it (here: waiting on a row lock) may
// commit after the client gave up. Its markers must stay until the server
// session is gone: released at once, a reader fills the row as it was, the
// late commit changes it, and the entry stays stale until it expires
// (found by the consistency checker, issue 6).
func TestBrokenConnectionWaitsForTheServer(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	mcAddr := testenv.MemcacheAddr(t)
	plain := hfPlain(t, dsn)
	schema := hfSchema(t, plain, 1)
	query := hfLookup(schema)
	ctx := context.Background()

	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.Start(net.JoinHostPort(pcfg.Host, strconv.Itoa(int(pcfg.Port))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	host, port, _ := net.SplitHostPort(proxy.Addr())
	proxied := pcfg.Copy()
	proxied.Host = host
	p, _ := strconv.Atoi(port)
	proxied.Port = uint16(p)

	cfg := func() cachedsql.Config {
		cache, err := cachedsql.NewMemcache(cachedsql.MemcacheConfig{Servers: []string{mcAddr}, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return cachedsql.Config{Rules: hfRules(schema), Cache: cache, Namespace: "settle-" + schema,
			CacheTimeout: time.Second, LeaseWait: 200 * time.Millisecond}
	}
	writerCn, err := cachedsql.NewConnector(stdlib.GetConnector(*proxied), cfg())
	if err != nil {
		t.Fatal(err)
	}
	writer := sql.OpenDB(writerCn)
	t.Cleanup(func() { writer.Close() })
	reader, _, _ := hfOpen(t, dsn, cfg())

	// Another session holds the row, so the write waits on its lock.
	lock, err := plain.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.Exec("SELECT 1 FROM " + schema + ".items WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	// A bump write (NamedArgs) runs as one autocommit statement: it is
	// protected before it runs, and commits when it ends.
	done := make(chan error, 1)
	go func() {
		_, err := writer.ExecContext(ctx, "UPDATE "+schema+".items SET version = version + 1, name = 'late' WHERE id = @id",
			pgx.NamedArgs{"id": int64(1)})
		done <- err
	}()
	waitForLockWait(t, plain, schema)
	// Cut the connection, and refuse new ones: pgx's cancel request must
	// not reach the server either, as in a network partition.
	proxy.SetMode(faultproxy.Reset)
	if err := <-done; err == nil {
		t.Fatal("the write succeeded through a cut connection")
	}
	// A reader now: before the fix it filled the row as it was.
	if _, err := hfGet(ctx, reader, query, 1); err != nil {
		t.Fatal(err)
	}
	// The lock goes; a write still running on the server commits now.
	if err := lock.Commit(); err != nil {
		t.Fatal(err)
	}
	// Whatever the write's fate, the cache must agree with the database
	// once the write's session has ended and the writer's pool settled.
	waitNoSession(t, plain, schema)
	proxy.SetMode(faultproxy.Pass)
	waitSettled(t, writerCn)
	want, err := hfGet(ctx, plain, query, 1)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := hfGet(ctx, reader, query, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("after a write on a broken connection: cachedsql reads %+v; the database holds %+v", got, want)
		}
	}
}

// waitForLockWait returns once a session waits on a lock of schema.items.
func waitForLockWait(t *testing.T, plain *sql.DB, schema string) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
		var n int
		err := plain.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '.items%'`, schema).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
	}
	t.Fatal("the write never waited on the lock")
}

// waitNoSession returns once no session runs an UPDATE of schema.items.
func waitNoSession(t *testing.T, plain *sql.DB, schema string) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
		var n int
		err := plain.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE 'UPDATE ' || $1 || '.items%' AND state <> 'idle'`, schema).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("the write's session never ended")
}

// waitSettled waits for the connector's background releases.
func waitSettled(t *testing.T, cn *cachedsql.Connector) {
	t.Helper()
	done := make(chan struct{})
	go func() { cachedsql.WaitBackground(cn); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the writer's background releases did not end within 30s")
	}
}
