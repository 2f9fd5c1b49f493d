package cachedsql

import (
	"crypto/rand"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql/internal/testenv"
)

// pgSchemas creates n fresh schemas for one test and drops them at cleanup.
func pgSchemas(t *testing.T, db *sql.DB, n int) []string {
	t.Helper()
	var out []string
	for range n {
		s := "cachedsql_cat_" + strings.ToLower(rand.Text()[:10])
		if _, err := db.Exec("CREATE SCHEMA " + s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Exec("DROP SCHEMA " + s + " CASCADE") })
		out = append(out, s)
	}
	return out
}

func openPG(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestCatalogPostgres(t *testing.T) {
	db := openPG(t)
	sc := pgSchemas(t, db, 2)
	s, s2 := sc[0], sc[1]
	citext := true
	if _, err := db.Exec("CREATE EXTENSION IF NOT EXISTS citext"); err != nil {
		if testenv.InCI() {
			t.Fatalf("citext: %v", err)
		}
		t.Logf("citext unavailable, its case is skipped: %v", err)
		citext = false
	}
	ddl := []string{
		`CREATE TABLE ` + s + `.users (id bigint PRIMARY KEY, email text NOT NULL, org_id int NOT NULL,
			slug varchar(40) NOT NULL, code char(3), nick text, score numeric, small int2,
			UNIQUE (org_id, slug))`,
		`CREATE UNIQUE INDEX ON ` + s + `.users (lower(email))`,
		`CREATE TABLE ` + s + `.accounts (id uuid PRIMARY KEY, vemail varchar(100), "Weird Col" text UNIQUE, made timestamptz UNIQUE)`,
		`CREATE UNIQUE INDEX ON ` + s + `.accounts (lower(vemail))`,
		`CREATE TABLE ` + s + `.secrets (id int PRIMARY KEY)`,
		`ALTER TABLE ` + s + `.secrets ENABLE ROW LEVEL SECURITY`,
		`CREATE TABLE ` + s + `.partial (id int, k text)`,
		`CREATE UNIQUE INDEX ON ` + s + `.partial (k) WHERE id > 0`,
		`CREATE TABLE ` + s2 + `.users (id int PRIMARY KEY)`,
		`CREATE TABLE ` + s2 + `.only2 (id int PRIMARY KEY)`,
		`CREATE VIEW ` + s + `.v AS SELECT 1 AS id`,
	}
	if citext {
		ddl = append(ddl, `CREATE TABLE `+s+`.handles (h public.citext PRIMARY KEY)`)
	}
	for _, q := range ddl {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	tables := map[string]TableRule{
		"users": {Keys: [][]string{{"id"}, {"Email"}, {"slug", "org_id"}, {"nick"}, {"small"}, {"id", "code"}},
			Normalize: map[string]string{"email": "lower"}},
		"accounts":    {Keys: [][]string{{"id"}, {"vemail"}, {`"Weird Col"`}, {"made"}}, Normalize: map[string]string{"vemail": "lower"}},
		"secrets":     {Keys: [][]string{{"id"}}},
		"partial":     {Keys: [][]string{{"k"}}},
		s2 + ".users": {Keys: [][]string{{"id"}}},
		s2 + ".only2": {Keys: [][]string{{"id"}}},
	}
	if citext {
		tables["handles"] = TableRule{Keys: [][]string{{"h"}}}
	}
	cfg := &Config{Rules: Rules{Tables: tables}}
	logs := captureLogs(cfg)
	c, err := loadCatalogVia(t, db, cfg, "SET search_path = "+s+", "+s2+", public")
	if err != nil {
		t.Fatal(err)
	}
	if c.source != sourcePostgres {
		t.Fatalf("source = %v; want postgres", c.source)
	}

	// search_path resolution.
	users, ok := c.table("", "users")
	if !ok || users.schema != s || users.name != "users" {
		t.Fatalf(`table("", users) = %+v, %v; want %s.users`, users, ok, s)
	}
	if u, ok := c.table(s, "users"); !ok || u != users {
		t.Errorf("qualified lookup of %s.users failed", s)
	}
	shadowed, ok := c.table(s2, "users")
	if !ok || shadowed == users {
		t.Errorf("qualified rule %s.users not resolved to its own table", s2)
	}
	if only2, ok := c.table("", "only2"); !ok || only2.schema != s2 {
		t.Errorf("bare only2 should resolve through search_path to %s.only2", s2)
	}
	if _, ok := c.table("public", "users"); ok {
		t.Error("public.users resolved to a cached table")
	}
	if users.qualified() != s+".users" {
		t.Errorf("qualified = %q", users.qualified())
	}

	// Column kinds and keys.
	want := []struct {
		key    string
		kinds  []colKind
		lower  bool
		backed bool
	}{
		{"id", []colKind{kindInt}, false, true},
		{"email", []colKind{kindText}, true, true},
		{"slug,org_id", []colKind{kindText, kindInt}, false, true},
		{"nick", []colKind{kindText}, false, false},
		{"small", []colKind{kindInt}, false, false},
		{"id,code", []colKind{kindInt, kindBpchar}, false, true}, // the primary key is a unique subset
	}
	for i, w := range want {
		k := users.keys[i]
		if k.name != w.key || k.backed != w.backed || k.cols[0].lower != w.lower {
			t.Errorf("users key %d = %+v; want %+v", i, k, w)
		}
		for j, kind := range w.kinds {
			if k.cols[j].kind != kind {
				t.Errorf("users key %s column %s: kind %v; want %v", w.key, k.cols[j].name, k.cols[j].kind, kind)
			}
		}
	}
	if users.keys[1].cols[0].nativeLower {
		t.Error("a text column with a lower() index compares case-sensitively: not nativeLower")
	}
	if b := users.keys[4].cols[0].bits; b != 16 {
		t.Errorf("int2 bits = %d", b)
	}
	if got := users.columns["score"]; got.kind != kindUnsupported || got.typ != "numeric" {
		t.Errorf("numeric column = %+v", got)
	}
	if got := users.columns["slug"]; got.typ != "character varying(40)" || got.nullable {
		t.Errorf("slug column = %+v", got)
	}
	accounts, _ := c.table("", "accounts")
	for i, w := range []struct {
		name string
		kind colKind
	}{{"id", kindUUID}, {"vemail", kindText}, {`"Weird Col"`, kindText}, {"made", kindTimestamptz}} {
		k := accounts.keys[i]
		if k.name != w.name || !k.backed || k.cols[0].kind != w.kind {
			t.Errorf("accounts key %d = %+v; want %s backed %v", i, k, w.name, w.kind)
		}
	}
	if secrets, _ := c.table("", "secrets"); !secrets.rls || secrets.cached() {
		t.Error("RLS table not marked")
	}
	if users.rls || !users.cached() {
		t.Error("users marked RLS")
	}
	if p, _ := c.table("", "partial"); p.keys[0].backed {
		t.Error("a partial unique index backs a key")
	}
	if citext {
		h, _ := c.table("", "handles")
		if kc := h.keys[0].cols[0]; kc.kind != kindText || !kc.lower || !kc.nativeLower || !h.keys[0].backed {
			t.Errorf("citext key column = %+v, backed %v", kc, h.keys[0].backed)
		}
	}

	// One key per spelling of the same row.
	k1, _ := canonicalKey(users.keys[0], []any{int64(5)})
	k2, _ := canonicalKey(users.keys[0], []any{"5"})
	if entryKey(c.namespace, users, 0, k1) != entryKey(c.namespace, users, 0, k2) {
		t.Error(`int64(5) and "5" differ on a bigint key`)
	}

	l := logs.String()
	for _, w := range []string{"key=nick", "key=small", "key=k", "row-level security"} {
		if !strings.Contains(l, w) {
			t.Errorf("logs lack %q:\n%s", w, l)
		}
	}
	if strings.Contains(l, "key=id ") || strings.Contains(l, "key=email") {
		t.Errorf("backed keys were warned about:\n%s", l)
	}
}

func TestCatalogPostgresErrors(t *testing.T) {
	db := openPG(t)
	s := pgSchemas(t, db, 1)[0]
	if _, err := db.Exec(`CREATE TABLE ` + s + `.t (id int PRIMARY KEY); CREATE VIEW ` + s + `.v AS SELECT 1 AS id`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		rules map[string]TableRule
		want  []string
	}{
		{"missing table", map[string]TableRule{"nope": {Keys: [][]string{{"id"}}}},
			[]string{`cachedsql: rules: table "nope": does not exist in database`, "search_path"}},
		{"missing qualified", map[string]TableRule{s + ".nope": {Keys: [][]string{{"id"}}}},
			[]string{`table "` + s + `.nope": does not exist`, `schema "` + s + `"`}},
		{"missing column", map[string]TableRule{"t": {Keys: [][]string{{"id"}, {"email"}}}},
			[]string{`table "t": key email: column "email" does not exist in ` + s + `.t (columns: id)`}},
		{"view", map[string]TableRule{"v": {Keys: [][]string{{"id"}}}},
			[]string{`table "v"`, "is a view"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{Rules: Rules{Tables: tc.rules}}
			captureLogs(cfg)
			_, err := loadCatalogVia(t, db, cfg, "SET search_path = "+s)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not match ErrConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCatalogPostgresNamespace(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	ns := func(database string) string {
		pc, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if database != "" {
			pc.Database = database
		}
		db := stdlib.OpenDB(*pc)
		defer db.Close()
		c, err := loadCatalogVia(t, db, &Config{})
		if err != nil {
			t.Fatal(err)
		}
		return c.namespace
	}
	a, b := ns(""), ns("")
	if a != b {
		t.Errorf("same DSN, two namespaces: %q, %q", a, b)
	}
	if other := ns("postgres"); other == a {
		t.Errorf("two databases share namespace %q", a)
	}
}
