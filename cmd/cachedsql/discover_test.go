package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"strings"
	"testing"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// discoverFixture is created in a schema of its own; SCHEMA is replaced.
const discoverFixture = `
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE SCHEMA.orgs (
    id   bigserial PRIMARY KEY,
    slug text NOT NULL UNIQUE,
    name text NOT NULL
);
CREATE TABLE SCHEMA.users (
    id         bigserial PRIMARY KEY,
    org_id     bigint NOT NULL REFERENCES SCHEMA.orgs (id) ON DELETE CASCADE,
    email      text NOT NULL,
    handle     text NOT NULL,
    deleted_at timestamptz,
    UNIQUE (org_id, handle)
);
CREATE UNIQUE INDEX users_email_lower ON SCHEMA.users (lower(email));
CREATE UNIQUE INDEX users_live_handle ON SCHEMA.users (handle) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_handle_len ON SCHEMA.users (org_id, length(handle));
CREATE TABLE SCHEMA.sessions (
    token   text PRIMARY KEY,
    user_id bigint REFERENCES SCHEMA.users (id) ON DELETE SET NULL ON UPDATE CASCADE,
    org_id  bigint REFERENCES SCHEMA.orgs (id)
);
CREATE TABLE SCHEMA."Tags" ("Name" text PRIMARY KEY);
CREATE TABLE SCHEMA.audit_log (at timestamptz NOT NULL DEFAULT now(), what text);
CREATE TABLE SCHEMA.user_counts (org_id bigint PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION SCHEMA.count_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO SCHEMA.user_counts AS c (org_id, n) VALUES (NEW.org_id, 1)
        ON CONFLICT (org_id) DO UPDATE SET n = c.n + 1;
    INSERT INTO audit_log (what) VALUES ('user; created');
    RETURN NEW;
END $$;
CREATE TRIGGER users_count AFTER INSERT ON SCHEMA.users FOR EACH ROW EXECUTE FUNCTION SCHEMA.count_user();
CREATE TABLE SCHEMA.secrets (id bigint PRIMARY KEY, owner text NOT NULL);
ALTER TABLE SCHEMA.secrets ENABLE ROW LEVEL SECURITY;
`

// newSchema creates a schema with a random name, dropped at the end.
func newSchema(t *testing.T, dsn, ddl string) string {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	schema := "discover_" + strings.ToLower(rand.Text()[:10])
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP SCHEMA " + schema + " CASCADE") })
	if _, err := db.Exec(strings.ReplaceAll(ddl, "SCHEMA", schema)); err != nil {
		t.Fatal(err)
	}
	return schema
}

func TestDiscoverGolden(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	schema := newSchema(t, dsn, discoverFixture)
	out, stderr, code := runCmd(t, "discover", "-dsn", dsn, "-schema", schema)
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	// The output parses as rules, as it is.
	rules, err := cachedsql.ParseRules([]byte(out))
	if err != nil {
		t.Fatalf("ParseRules: %v\n%s", err, out)
	}
	users, ok := rules.Lookup(schema + ".users")
	if !ok || len(users.Keys) != 3 || users.Normalize["email"] != "lower" || len(users.FlushWith) != 1 {
		t.Errorf("users rule: %+v", users)
	}
	if _, ok := rules.Lookup(schema + ".secrets"); ok {
		t.Errorf("a table with row-level security is in the rules")
	}
	golden(t, "discover.golden", strings.ReplaceAll(out, schema, "SCHEMA"))
}

func TestDiscoverErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"discover"}, "-dsn is required"},
		{[]string{"discover", "-dsn", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"}, "connecting to PostgreSQL at 127.0.0.1:1"},
		{[]string{"discover", "-dsn", "::not a dsn"}, "-dsn"},
		{[]string{"discover", "-dsn", "postgres://x@127.0.0.1/x", "extra"}, "unexpected arguments"},
	} {
		_, stderr, code := runCmd(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit status %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	dsn := testenv.PostgresDSN(t)
	_, stderr, code := runCmd(t, "discover", "-dsn", dsn, "-schema", "no_such_schema_xyz")
	if code != 2 || !strings.Contains(stderr, `schema "no_such_schema_xyz" does not exist`) {
		t.Errorf("missing schema: exit %d, %q", code, stderr)
	}
	_ = context.Background
}
