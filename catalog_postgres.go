package cachedsql

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// loadPostgres reads the catalog through the pgx connection, in the
// caller's ctx, and returns the database identity for the namespace.
func loadPostgres(ctx context.Context, pc *pgx.Conn, c *catalog, cfg *Config) (string, error) {
	identity, err := postgresIdentity(ctx, pc, cfg)
	if err != nil {
		return "", err
	}
	var dbname, searchPath string
	if err := pc.QueryRow(ctx, `SELECT current_database(), current_setting('search_path')`).Scan(&dbname, &searchPath); err != nil {
		return "", fmt.Errorf("cachedsql: reading catalog: %w", err)
	}
	for _, rt := range ruleTables(cfg) {
		t, err := loadPostgresTable(ctx, pc, &rt, cfg, dbname, searchPath)
		if err != nil {
			return "", err
		}
		c.add(t)
	}
	// The bare name of each table, as this session's search_path resolves
	// it: "users" in a query is the cached public.users only if nothing
	// earlier in the path shadows it.
	for _, t := range c.tables {
		var same bool
		err := pc.QueryRow(ctx, `SELECT coalesce(to_regclass(quote_ident($1)) = to_regclass($2), false)`,
			t.name, pgQuote(t.schema, t.name)).Scan(&same)
		if err != nil {
			return "", fmt.Errorf("cachedsql: reading catalog: table %s: %w", t.qualified(), err)
		}
		if same {
			c.bare[t.name] = t
		}
	}
	return identity, nil
}

// postgresIdentity names the database so that every process sharing the
// cache agrees on it whatever address it connects through (a proxy,
// pgbouncer, a DNS alias, a unix socket): the cluster's system identifier
// (its replicas share it), the port the server listens on, and the
// database's OID. Only a role that may not call pg_control_system()
// falls back, with a warning, to the address in the connection's
// configuration: such processes share a namespace only with each other,
// and only if they use the same address. Any other error fails the
// catalog read, which the next connection retries: a namespace chosen by
// a passing error would split the processes for the pool's lifetime.
func postgresIdentity(ctx context.Context, pc *pgx.Conn, cfg *Config) (string, error) {
	var system int64
	var port string
	var dbOID uint32
	err := pc.QueryRow(ctx, `SELECT (SELECT system_identifier FROM pg_control_system()), current_setting('port'),
		(SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&system, &port, &dbOID)
	if err == nil {
		return "postgres-cluster:" + strconv.FormatInt(system, 10) + ":" + port + ":" + strconv.FormatUint(uint64(dbOID), 10), nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || (pgErr.Code != "42501" && pgErr.Code != "42883") { // insufficient_privilege, undefined_function
		return "", fmt.Errorf("cachedsql: reading catalog: the database's identity: %w", err)
	}
	pcfg := pc.Config()
	cfg.logger().Warn("cachedsql: may not read the cluster's identity (pg_control_system); the key namespace is derived from the connection's host, port and database: only processes in the same case, connecting by the same address, share invalidations",
		"error", err)
	return "postgres:" + strconv.Quote(pcfg.Host) + ":" + strconv.Itoa(int(pcfg.Port)) + ":" + strconv.Quote(pcfg.Database), nil
}

// pgQuote quotes name parts as PostgreSQL identifiers. Rule names are
// already folded, so quoting every part keeps exactly what the rule meant.
func pgQuote(parts ...string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(q, ".")
}

func loadPostgresTable(ctx context.Context, pc *pgx.Conn, rt *ruleTable, cfg *Config, dbname, searchPath string) (*tableInfo, error) {
	var (
		oid          uint32
		schema, name string
		relkind      string
		rls          bool
	)
	err := pc.QueryRow(ctx, `
SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relrowsecurity
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)`, pgQuote(rt.id.parts...)).Scan(&oid, &schema, &name, &relkind, &rls)
	if errors.Is(err, pgx.ErrNoRows) {
		where := "search_path " + searchPath
		if rt.id.schema() != "" {
			where = "schema " + strconv.Quote(rt.id.schema())
		}
		return nil, &RulesError{Where: rt.where, Msg: fmt.Sprintf("does not exist in database %s (%s)", dbname, where)}
	}
	if err != nil {
		return nil, fmt.Errorf("cachedsql: reading catalog: %s: %w", rt.where, err)
	}
	switch relkind {
	case "r", "p": // table, partitioned table
	default:
		return nil, &RulesError{Where: rt.where, Msg: fmt.Sprintf("%s is a %s, not a table: only tables can be cached", pgQuote(schema, name), relkindName(relkind))}
	}

	columns, err := pgColumns(ctx, pc, oid)
	if err != nil {
		return nil, fmt.Errorf("cachedsql: reading catalog: %s: %w", rt.where, err)
	}
	t, err := rt.newTable(schema, name, columns)
	if err != nil {
		return nil, err
	}
	t.rls = rls
	if rls {
		cfg.logger().Warn("cachedsql: table has row-level security: it is never cached (writes to it still flush)",
			"table", t.qualified())
	}
	indexes, err := pgUniqueIndexes(ctx, pc, oid, columns)
	if err != nil {
		return nil, fmt.Errorf("cachedsql: reading catalog: %s: %w", rt.where, err)
	}
	warnUnbacked(cfg, t, indexes)
	return t, nil
}

func relkindName(k string) string {
	switch k {
	case "v":
		return "view"
	case "m":
		return "materialized view"
	case "f":
		return "foreign table"
	case "S":
		return "sequence"
	case "i", "I":
		return "index"
	case "c":
		return "composite type"
	}
	return "relation of kind " + strconv.Quote(k)
}

// pgColumns reads the columns of a table: type (a domain's base type
// decides its comparison), nullability and collation determinism (a
// nondeterministic collation may find "a" = "A" or ignore accents, which we
// do not reproduce).
func pgColumns(ctx context.Context, pc *pgx.Conn, oid uint32) (map[string]columnInfo, error) {
	rows, err := pc.Query(ctx, `
SELECT a.attname, format_type(a.atttypid, a.atttypmod), coalesce(bt.typname, t.typname),
       NOT a.attnotnull, coalesce(co.collisdeterministic, true)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, oid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	columns := make(map[string]columnInfo)
	for rows.Next() {
		var name, typ, base string
		var nullable, deterministic bool
		if err := rows.Scan(&name, &typ, &base, &nullable, &deterministic); err != nil {
			return nil, err
		}
		ci := columnInfo{typ: typ, nullable: nullable}
		ci.kind, ci.bits, ci.nativeLower = pgKind(base)
		if !deterministic {
			ci.kind = kindUnsupported
		}
		columns[name] = ci
	}
	return columns, rows.Err()
}

// pgKind maps a base type name to its comparison family.
func pgKind(typname string) (kind colKind, bits int, nativeLower bool) {
	switch typname {
	case "int2":
		return kindInt, 16, false
	case "int4":
		return kindInt, 32, false
	case "int8":
		return kindInt, 64, false
	case "text", "varchar":
		return kindText, 0, false
	case "citext":
		return kindText, 0, true
	case "bpchar":
		return kindBpchar, 0, false
	case "uuid":
		return kindUUID, 0, false
	case "bool":
		return kindBool, 0, false
	case "timestamptz":
		return kindTimestamptz, 0, false
	case "timestamp":
		return kindTimestamp, 0, false
	case "date":
		return kindDate, 0, false
	}
	// numeric (1.0 = 1.00), floats, name, enums, arrays, json...
	return kindUnsupported, 0, false
}

// pgUniqueIndexes lists the valid, non-partial unique indexes of a table
// (primary keys and unique constraints have one each), with each key
// column either a plain column or lower(column).
func pgUniqueIndexes(ctx context.Context, pc *pgx.Conn, oid uint32, columns map[string]columnInfo) ([]uniqueIndex, error) {
	rows, err := pc.Query(ctx, `
SELECT c.relname, i.indpred IS NOT NULL,
       array(SELECT coalesce(a.attname, '') FROM generate_series(1, i.indnkeyatts) k
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k-1]
             ORDER BY k),
       array(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k ORDER BY k)
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid
ORDER BY c.relname`, oid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []uniqueIndex
	for rows.Next() {
		var name string
		var partial bool
		var attnames, exprs []string
		if err := rows.Scan(&name, &partial, &attnames, &exprs); err != nil {
			return nil, err
		}
		if partial || len(attnames) != len(exprs) {
			continue // unique only among some rows
		}
		ix := uniqueIndex{name: name, cols: make(map[string]indexCol, len(attnames))}
		for i, att := range attnames {
			if att != "" {
				ix.cols[att] = indexCol{}
				continue
			}
			col, ok := lowerOf(exprs[i], columns)
			if !ok {
				ix.cols = nil // an expression we do not understand
				break
			}
			ix.cols[col] = indexCol{lower: true}
		}
		if ix.cols != nil {
			out = append(out, ix)
		}
	}
	return out, rows.Err()
}

// lowerOf recognises an index expression lower(col), as pg_get_indexdef
// prints it: lower(email), lower((email)::text) for varchar, with col
// quoted when needed.
func lowerOf(expr string, columns map[string]columnInfo) (string, bool) {
	inner, ok := strings.CutPrefix(expr, "lower(")
	if !ok {
		return "", false
	}
	inner, ok = strings.CutSuffix(inner, ")")
	if !ok {
		return "", false
	}
	if s, ok := strings.CutSuffix(inner, "::text"); ok {
		inner = s
		if s, ok := strings.CutPrefix(inner, "("); ok {
			inner, ok = strings.CutSuffix(s, ")")
			if !ok {
				return "", false
			}
		}
	}
	if id, err := parseIdent(inner, 1); err == nil {
		if _, exists := columns[id.table()]; exists {
			return id.table(), true
		}
	}
	return "", false
}
