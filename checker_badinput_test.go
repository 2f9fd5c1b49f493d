package cachedsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// Bad inputs through the driver, on real PostgreSQL and memcached: each
// query answers exactly as plain pgx does, twice (cold, then warm), and
// nothing errors because of the cache.
func TestCheckerBadInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dsn := testenv.PostgresDSN(t)
	plain := hfPlain(t, dsn)
	s := "bi_" + hfRandom()
	for _, q := range []string{
		"CREATE SCHEMA " + s,
		"CREATE TABLE " + s + ".t (id bigint PRIMARY KEY, k text UNIQUE NOT NULL, body text)",
		"INSERT INTO " + s + ".t VALUES (1, 'with space', 'a'), (2, e'ctl\\x01\\n\\t', 'b'), (3, 'big', repeat('x', 2000000)), (4, '', 'empty')",
	} {
		if _, err := plain.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { plain.Exec("DROP SCHEMA " + s + " CASCADE") })
	mc := memcache.New(testenv.MemcacheAddr(t))
	mc.Timeout = 2 * time.Second
	db, _, _ := hfOpen(t, dsn, cachedsql.Config{
		Rules:        cachedsql.Rules{Tables: map[string]cachedsql.TableRule{s + ".t": {Keys: [][]string{{"id"}, {"k"}}}}},
		Cache:        cachedsql.Memcache(mc),
		Namespace:    "bi-" + hfRandom(),
		CacheTimeout: time.Second,
	})
	in := make([]string, 5000)
	for i := range in {
		in[i] = fmt.Sprint(i + 1)
	}
	T := s + ".t"
	cases := []struct {
		name  string
		query string
		args  []any
	}{
		{"key with spaces", "SELECT id, body FROM " + T + " WHERE k = $1", []any{"with space"}},
		{"key with control characters", "SELECT id, body FROM " + T + " WHERE k = $1", []any{"ctl\x01\n\t"}},
		{"empty key", "SELECT id, body FROM " + T + " WHERE k = $1", []any{""}},
		{"value over 1 MB", "SELECT id, length(body) FROM " + T + " WHERE id = $1", []any{3}},
		{"value over 1 MB, raw", "SELECT id, body FROM " + T + " WHERE id = $1", []any{int64(3)}},
		{"huge IN list", "SELECT id, k FROM " + T + " WHERE id IN (" + strings.Join(in, ",") + ") ORDER BY id", nil},
		{"unclassifiable", "SELECT id FROM " + T + " WHERE id = $1 ;; -- trailing", []any{1}},
		{"unclassifiable DO", "DO $$ BEGIN PERFORM 1; END $$", nil},
		{"int32 for bigint", "SELECT id, k FROM " + T + " WHERE id = $1", []any{int32(1)}},
		{"uint8 for bigint", "SELECT id, k FROM " + T + " WHERE id = $1", []any{uint8(2)}},
		{"string for bigint", "SELECT id, k FROM " + T + " WHERE id = $1", []any{"4"}},
		{"[]byte key", "SELECT id, body FROM " + T + " WHERE k = $1", []any{[]byte("with space")}},
		{"sql.NullString key", "SELECT id, body FROM " + T + " WHERE k = $1", []any{sql.NullString{String: "with space", Valid: true}}},
		{"pointer key", "SELECT id, k FROM " + T + " WHERE id = $1", []any{ptr(int64(1))}},
		{"nil key", "SELECT id, k FROM " + T + " WHERE id = $1", []any{nil}},
		{"QueryExecModeSimpleProtocol", "SELECT id, k FROM " + T + " WHERE id = $1", []any{pgx.QueryExecModeSimpleProtocol, int64(1)}},
		{"QueryResultFormats", "SELECT id, k FROM " + T + " WHERE id = $1", []any{pgx.QueryResultFormats{pgx.TextFormatCode, pgx.TextFormatCode}, int64(2)}},
		{"NamedArgs", "SELECT id, k FROM " + T + " WHERE id = @id", []any{pgx.NamedArgs{"id": int64(1)}}},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, werr := biRows(ctx, plain, c.query, c.args)
			for round := range 2 {
				got, err := biRows(ctx, db, c.query, c.args)
				if (err != nil) != (werr != nil) {
					t.Fatalf("round %d: error %v; plain pgx: %v", round, err, werr)
				}
				if got != want {
					t.Fatalf("round %d: got %.200q; plain pgx %.200q", round, got, want)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// biRows renders every row of a query as text.
func biRows(ctx context.Context, db *sql.DB, query string, args []any) (string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return "", err
		}
		for _, v := range vals {
			b.WriteString(fmt.Sprintf("%d:%s|", len(v), v))
		}
		b.WriteByte('\n')
	}
	return b.String(), rows.Err()
}
