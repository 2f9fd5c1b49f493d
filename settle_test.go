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
	lf := newLockedRow(t, 200*time.Millisecond, 0)
	ctx := context.Background()
	writer, writerCn, proxy := lf.proxiedWriter(t)
	reader, _, _ := hfOpen(t, lf.dsn, lf.cfg())
	plain, schema, query, lock := lf.plain, lf.schema, lf.query, lf.lock

	done := lf.startWrite(t, writer)
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

// proxiedWriter opens a cachedsql pool of lf's configuration whose
// connections go through a fault proxy.
func (lf *lockedRow) proxiedWriter(t *testing.T) (*sql.DB, *cachedsql.Connector, *faultproxy.Proxy) {
	t.Helper()
	pcfg, err := pgx.ParseConfig(lf.dsn)
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
	cn, err := cachedsql.NewConnector(stdlib.GetConnector(*proxied), lf.cfg())
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(cn)
	t.Cleanup(func() { db.Close() })
	return db, cn, proxy
}

// TestBrokenConnectionTerminatesTheSession: when the database can be
// reached again while the broken write still waits on its lock, cachedsql
// ends that session (pg_terminate_backend) rather than wait for it, so the
// write never commits, and releases its markers at once.
func TestBrokenConnectionTerminatesTheSession(t *testing.T) {
	lf := newLockedRow(t, 200*time.Millisecond, 0)
	ctx := context.Background()
	writer, writerCn, proxy := lf.proxiedWriter(t)
	reader, _, _ := hfOpen(t, lf.dsn, lf.cfg())
	before, err := hfGet(ctx, lf.plain, lf.query, 1)
	if err != nil {
		t.Fatal(err)
	}
	done := lf.startWrite(t, writer)
	proxy.SetMode(faultproxy.Reset) // pgx's cancel request is lost
	if err := <-done; err == nil {
		t.Fatal("the write succeeded through a cut connection")
	}
	// pgx sends its cancel request from a goroutine as the connection
	// breaks: let it fail before the database is reachable again.
	time.Sleep(300 * time.Millisecond)
	proxy.SetMode(faultproxy.Pass) // the settle can reach the database
	waitSettled(t, writerCn)       // while the lock is still held
	if err := lf.lock.Commit(); err != nil {
		t.Fatal(err)
	}
	waitNoSession(t, lf.plain, lf.schema)
	after, err := hfGet(ctx, lf.plain, lf.query, 1)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("the broken write committed (%+v, was %+v): its session was not terminated", after, before)
	}
	if got, err := hfGet(ctx, reader, lf.query, 1); err != nil || got != after {
		t.Errorf("cachedsql reads %+v (%v); the database holds %+v", got, err, after)
	}
}

// lockedRow is a one-row items table whose row another session holds
// (lock), so that a write of it waits; cfg builds configurations of
// cachedsql pools that share one namespace.
type lockedRow struct {
	dsn, schema, query string
	plain              *sql.DB
	lock               *sql.Tx
	cfg                func() cachedsql.Config
}

// newLockedRow sets up a lockedRow; markerTTL 0 is the default.
func newLockedRow(t *testing.T, leaseWait, markerTTL time.Duration) *lockedRow {
	t.Helper()
	lf := &lockedRow{dsn: testenv.PostgresDSN(t)}
	mcAddr := testenv.MemcacheAddr(t)
	lf.plain = hfPlain(t, lf.dsn)
	lf.schema = hfSchema(t, lf.plain, 1)
	lf.query = hfLookup(lf.schema)
	lf.cfg = func() cachedsql.Config {
		cache, err := cachedsql.NewMemcache(cachedsql.MemcacheConfig{Servers: []string{mcAddr}, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return cachedsql.Config{Rules: hfRules(lf.schema), Cache: cache, Namespace: "locked-" + lf.schema,
			CacheTimeout: time.Second, LeaseWait: leaseWait, MarkerTTL: markerTTL}
	}
	lock, err := lf.plain.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Rollback() })
	if _, err := lock.Exec("SELECT 1 FROM " + lf.schema + ".items WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	lf.lock = lock
	return lf
}

// startWrite starts, through db, a write of the locked row, and returns
// once it waits on the lock; its error arrives on the channel. It is a
// bump write (NamedArgs): one autocommit statement, protected before it
// runs, which commits when it ends.
func (lf *lockedRow) startWrite(t *testing.T, db *sql.DB) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := db.ExecContext(context.Background(), "UPDATE "+lf.schema+".items SET version = version + 1, name = 'late' WHERE id = @id",
			pgx.NamedArgs{"id": int64(1)})
		done <- err
	}()
	waitForLockWait(t, lf.plain, lf.schema)
	return done
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
