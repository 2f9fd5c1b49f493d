package cachedsql

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	sqlparser "github.com/cachedsql/cachedsql/parser"
)

// logBuffer captures what a Config's logger writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func captureLogs(cfg *Config) *logBuffer {
	lb := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return lb
}

// loadCatalogVia loads the catalog through db's driver connection, as the
// connector does at the first connection, after running setup statements
// on that same session.
func loadCatalogVia(t *testing.T, db *sql.DB, cfg *Config, setup ...string) (*catalog, error) {
	t.Helper()
	ctx := context.Background()
	if _, err := cfg.validated(); err != nil {
		t.Fatalf("invalid test config: %v", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, s := range setup {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	var c *catalog
	err = conn.Raw(func(dc any) error {
		inner := dc.(driver.Conn)
		dialect, _ := detectDialect(inner)
		var err error
		c, err = loadCatalog(ctx, inner, dialect, cfg)
		return err
	})
	return c, err
}

// nopConn is a driver whose catalog cannot be read.
type nopConn struct{}

func (nopConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("no") }
func (nopConn) Close() error                        { return nil }
func (nopConn) Begin() (driver.Tx, error)           { return nil, errors.New("no") }

func TestCatalogGeneric(t *testing.T) {
	cfg := &Config{Rules: Rules{Tables: map[string]TableRule{
		"Users":            {Keys: [][]string{{"ID"}, {"email"}}, Normalize: map[string]string{"email": "lower"}},
		"billing.invoices": {Keys: [][]string{{"id"}}},
	}}}
	logs := captureLogs(cfg)
	dialect, src := detectDialect(nopConn{})
	if dialect != sqlparser.Postgres || src != sourceGeneric {
		t.Fatalf("detectDialect(nopConn) = %v, %v; want postgres, generic", dialect, src)
	}
	c, err := loadCatalog(context.Background(), nopConn{}, dialect, cfg)
	if err != nil {
		t.Fatal(err)
	}
	users, ok := c.table("", "users")
	if !ok || users.qualified() != "users" || users.validated {
		t.Fatalf("table(users) = %+v, %v", users, ok)
	}
	if u2, _ := c.table("public", "users"); u2 != users {
		t.Error("a rule without schema should match a qualified name when the catalog is unknown")
	}
	if _, ok := c.table("", "invoices"); ok {
		t.Error("bare invoices matched the qualified rule billing.invoices")
	}
	if inv, ok := c.table("billing", "invoices"); !ok || inv.qualified() != "billing.invoices" {
		t.Errorf("table(billing.invoices) = %v", ok)
	}
	if k := users.keys[0]; k.name != "id" || k.cols[0].kind != kindUnknown || k.backed {
		t.Errorf("key 0 = %+v", k)
	}
	if k := users.keys[1]; !k.cols[0].lower {
		t.Errorf("email key not lower-normalised: %+v", k)
	}
	a, _ := canonicalKey(users.keys[0], []any{5})
	b, _ := canonicalKey(users.keys[0], []any{"5"})
	if entryKey(c.namespace, users, 0, a) == entryKey(c.namespace, users, 0, b) {
		t.Error(`5 and "5" share a key on a column of unknown type`)
	}
	if !strings.Contains(logs.String(), "level=DEBUG") || !strings.Contains(logs.String(), "cannot read") {
		t.Errorf("want one debug line about skipped validation, got %q", logs.String())
	}
	c2, _ := loadCatalog(context.Background(), nopConn{}, dialect, &Config{Namespace: "x"})
	if c2.namespace == c.namespace {
		t.Error("Config.Namespace does not change the namespace")
	}
	if len(c.namespace) != 16 {
		t.Errorf("namespace %q: want 16 characters", c.namespace)
	}
}

func TestNamespaceOf(t *testing.T) {
	base := namespaceOf("postgres:a:5432:db", "", "")
	for _, other := range []string{
		namespaceOf("postgres:a:5432:db2", "", ""),
		namespaceOf("postgres:a:5432:db", "svc", ""),
		namespaceOf("postgres:a:5432:db", "", "v2"),
		namespaceOf("postgres:a:5432:db", "v2", ""), // fields do not run into each other
	} {
		if other == base {
			t.Errorf("namespace collision: %q", other)
		}
	}
	if namespaceOf("postgres:a:5432:db", "", "") != base {
		t.Error("namespace is not deterministic")
	}
	if strings.ContainsAny(base, ":= ") {
		t.Errorf("namespace %q has separator characters", base)
	}
}
