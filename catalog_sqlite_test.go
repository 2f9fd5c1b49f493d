package cachedsql

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // registers "sqlite"

	sqlparser "github.com/cachedsql/cachedsql/parser"
)

func openSQLite(t *testing.T, path string, ddl ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, q := range ddl {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return db
}

func TestCatalogSQLite(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "a.db"),
		`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, org_id INTEGER, slug VARCHAR(20),
			nick TEXT, data BLOB, price REAL, UNIQUE (org_id, slug))`,
		`CREATE TABLE Tags (name TEXT COLLATE NOCASE PRIMARY KEY, code TEXT COLLATE RTRIM UNIQUE, plain TEXT UNIQUE)`,
		`CREATE TABLE partial (k TEXT)`,
		`CREATE UNIQUE INDEX partial_k ON partial (k) WHERE k > ''`,
		`CREATE VIEW v AS SELECT 1 AS id`,
	)
	cfg := &Config{Rules: Rules{Tables: map[string]TableRule{
		"users":   {Keys: [][]string{{"id"}, {"EMAIL"}, {"org_id", "slug"}, {"nick"}, {"data"}, {"price"}}},
		"tags":    {Keys: [][]string{{"name"}, {"code"}, {"plain"}}},
		"partial": {Keys: [][]string{{"k"}}},
	}}}
	logs := captureLogs(cfg)
	c, err := loadCatalogVia(t, db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.source != sourceSQLite || c.dialect != sqlparser.SQLite {
		t.Fatalf("source %v dialect %v; want sqlite", c.source, c.dialect)
	}
	users, ok := c.table("", "users")
	if !ok || users.schema != "main" || users.qualified() != "main.users" {
		t.Fatalf("table(users) = %+v, %v", users, ok)
	}
	if u, ok := c.table("main", "USERS"); !ok || u != users {
		t.Error("SQLite table names ignore case")
	}
	for i, w := range []struct {
		name   string
		kind   colKind
		backed bool
	}{{"id", kindInt, true}, {"email", kindText, true}, {"org_id,slug", kindInt, true},
		{"nick", kindText, false}, {"data", kindUnknown, false}, {"price", kindUnsupported, false}} {
		k := users.keys[i]
		if k.name != w.name || k.cols[0].kind != w.kind || k.backed != w.backed {
			t.Errorf("users key %d = %+v; want %s %v backed=%v", i, k, w.name, w.kind, w.backed)
		}
	}
	if _, ok := canonicalKey(users.keys[1], []any{[]byte("a@b")}); ok {
		t.Error("[]byte is a BLOB in SQLite: not a TEXT key value")
	}
	tags, ok := c.table("", "TAGS")
	if !ok {
		t.Fatal("tags not found")
	}
	if kc := tags.keys[0].cols[0]; !kc.lower || !kc.nativeLower || kc.kind != kindText {
		t.Errorf("NOCASE column = %+v", kc)
	}
	if kc := tags.keys[1].cols[0]; kc.kind != kindUnsupported {
		t.Errorf("RTRIM column = %+v; want unsupported", kc)
	}
	if kc := tags.keys[2].cols[0]; kc.kind != kindText || kc.lower {
		t.Errorf("BINARY column = %+v", kc)
	}
	if p, _ := c.table("", "partial"); p.keys[0].backed {
		t.Error("a partial unique index backs a key")
	}
	for _, w := range []string{"key=nick", "key=data", "key=k"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("logs lack %q:\n%s", w, logs)
		}
	}

	for _, tc := range []struct {
		name string
		rule map[string]TableRule
		want string
	}{
		{"missing table", map[string]TableRule{"nope": {Keys: [][]string{{"id"}}}}, `table "nope": does not exist`},
		{"missing column", map[string]TableRule{"users": {Keys: [][]string{{"nope"}}}}, `column "nope" does not exist in main.users`},
		{"other schema", map[string]TableRule{"temp.users": {Keys: [][]string{{"id"}}}}, `only tables of the main database`},
		{"view", map[string]TableRule{"v": {Keys: [][]string{{"id"}}}}, `is a view`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{Rules: Rules{Tables: tc.rule}}
			captureLogs(cfg)
			_, err := loadCatalogVia(t, db, cfg)
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want ErrConfig containing %q", err, tc.want)
			}
		})
	}
}

func TestCatalogSQLiteNamespace(t *testing.T) {
	dir := t.TempDir()
	ns := func(path string) string {
		c, err := loadCatalogVia(t, openSQLite(t, path), &Config{})
		if err != nil {
			t.Fatal(err)
		}
		return c.namespace
	}
	a := ns(filepath.Join(dir, "a.db"))
	if b := ns(filepath.Join(dir, "a.db")); a != b {
		t.Errorf("same file, two namespaces: %q, %q", a, b)
	}
	if b := ns(filepath.Join(dir, "b.db")); a == b {
		t.Error("two files share a namespace")
	}
	if m1, m2 := ns(":memory:"), ns(":memory:"); m1 == m2 {
		t.Error("two in-memory databases share a namespace")
	}
}
