package cachedsql

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/base64"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/stdlib"

	sqlparser "github.com/cachedsql/cachedsql/parser"
)

// The catalog is what the read and write paths know about cached tables:
// where each rule's table really is (schema, as the session's search_path
// resolves it), the SQL type of each key column (which decides canonical key
// values), whether the database guarantees each key unique, and the
// namespace every cache key starts with. It is read once per pool, at the
// first connection, and never changes afterwards: a session that changes
// search_path or role bypasses the cache (plan's job, not the catalog's).

// relName is a resolved table name: schema as the database spells it
// ("public"; "main" for SQLite; "" when the catalog could not be read and
// the rule named none).
type relName struct{ schema, name string }

// catalog is immutable once loadCatalog returns: connections share it
// without locks.
type catalog struct {
	dialect sqlparser.Dialect
	source  catalogSource
	// namespace starts every cache key: a hash of the database's identity,
	// Config.Namespace and Config.SchemaVersion (see namespaceOf).
	namespace string
	tables    map[relName]*tableInfo // by resolved schema and table
	// bare maps an unqualified table name to the table the session's
	// search_path resolved it to at connect. A name missing here resolves
	// to no cached table.
	bare map[string]*tableInfo
}

// tableInfo is one rule's table.
type tableInfo struct {
	schema, name string    // resolved; schema "" only for generic drivers
	qname        string    // qualified(), spelled once at load: keys use it on every read
	rule         TableRule // its rule
	columns      map[string]columnInfo
	keys         []keyInfo // rule.Keys, resolved, in the rule's order
	// rls: row-level security is on, so rows depend on the session's role:
	// never served from or filled into the cache. Writes still flush.
	rls bool
	// validated: the catalog was read (false for generic drivers, whose
	// key columns are all kindUnknown and keys not known to be backed).
	validated bool
	// genKeys are the table's generation keys in namespace genNS (the
	// catalog's), spelled once at load: every read needs one.
	genKeys [genBuckets]string
	genNS   string
}

// columnInfo is what the catalog says about a column.
type columnInfo struct {
	typ         string  // as the database spells it: "bigint", "character(3)", "TEXT"
	kind        colKind // comparison family, for canonical key values
	bits        int     // kindInt: 16, 32 or 64
	nullable    bool
	nativeLower bool // citext: equality ignores case
	stringsOnly bool // SQLite: []byte is a BLOB, not text
}

// qualified is the table's canonical name in cache keys: "public.users",
// `app."Users"`, or "users" when the schema is unknown (generic drivers).
func (t *tableInfo) qualified() string {
	if t.qname != "" {
		return t.qname
	}
	return t.spellQualified()
}

func (t *tableInfo) spellQualified() string {
	if t.schema == "" {
		return ident{parts: []string{t.name}}.String()
	}
	return ident{parts: []string{t.schema, t.name}}.String()
}

// cached reports whether lookups of t may be served from the cache.
func (t *tableInfo) cached() bool {
	return !t.rls && t.rule.mode() == ModeCache
}

// table finds a cached table by the name a statement used, folded by the
// parser. schema "" resolves as the session did at connect (search_path;
// SQLite: main). The answer is what both paths must agree on: a read of
// the table and a write to it find the same *tableInfo.
func (c *catalog) table(schema, name string) (*tableInfo, bool) {
	if c == nil {
		return nil, false
	}
	if c.source == sourceSQLite {
		// SQLite compares table names ignoring ASCII case, quoted or not.
		schema, name = strings.ToLower(schema), strings.ToLower(name)
	}
	if schema == "" {
		t, ok := c.bare[name]
		return t, ok
	}
	if t, ok := c.tables[relName{schema, name}]; ok {
		return t, true
	}
	if c.source == sourceGeneric {
		// Without a catalog, a rule naming no schema matches the table in
		// any schema, as Rules.Lookup does.
		t, ok := c.tables[relName{"", name}]
		return t, ok
	}
	return nil, false
}

// catalogSource says where the catalog comes from.
type catalogSource uint8

const (
	sourceGeneric  catalogSource = iota // unknown driver: nothing is read
	sourcePostgres                      // pgx stdlib: pg_catalog
	sourceSQLite                        // SQLite drivers: PRAGMAs
)

// detectDialect decides, from the wrapped connection's type, which SQL
// dialect statements are in and how the catalog is read. It is the one
// place that knows driver types: pgx's *stdlib.Conn is PostgreSQL; the
// SQLite drivers are recognised by package path, so that importing
// cachedsql does not link SQLite into every program; anything else
// (go-sqlmock, lib/pq, ...) is PostgreSQL syntax with a generic catalog.
func detectDialect(inner driver.Conn) (sqlparser.Dialect, catalogSource) {
	inner = unwrapConn(inner)
	if _, ok := inner.(*stdlib.Conn); ok {
		return sqlparser.Postgres, sourcePostgres
	}
	t := reflect.TypeOf(inner)
	if t != nil && t.Kind() == reflect.Pointer {
		switch t.Elem().PkgPath() {
		case "modernc.org/sqlite", "github.com/mattn/go-sqlite3", "github.com/ncruces/go-sqlite3/driver":
			if _, ok := inner.(driver.QueryerContext); ok {
				return sqlparser.SQLite, sourceSQLite
			}
		}
	}
	return sqlparser.Postgres, sourceGeneric
}

// unwrapConn sees through connection wrappers below cachedsql that expose
// the connection they wrap (tracing or counting layers), so the dialect
// and catalog are the real database's.
func unwrapConn(c driver.Conn) driver.Conn {
	for range 8 { // bounded: a wrapper could unwrap to itself
		u, ok := c.(interface{ Unwrap() driver.Conn })
		if !ok {
			return c
		}
		next := u.Unwrap()
		if next == nil {
			return c
		}
		c = next
	}
	return c
}

// loadCatalog reads the catalog through inner, in ctx, for cfg's rules.
// dialect is the statements' dialect (detectDialect's, unless the caller
// knows better); the catalog source follows inner's type. A rule whose table
// or key column does not exist is an error wrapping ErrConfig (a
// *RulesError naming them); an unbacked key or an RLS table is a warning.
func loadCatalog(ctx context.Context, inner driver.Conn, dialect sqlparser.Dialect, cfg *Config) (*catalog, error) {
	_, src := detectDialect(inner)
	c := &catalog{
		dialect: dialect,
		source:  src,
		tables:  make(map[relName]*tableInfo, len(cfg.Rules.Tables)),
		bare:    make(map[string]*tableInfo, len(cfg.Rules.Tables)),
	}
	var identity string
	var err error
	switch src {
	case sourcePostgres:
		identity, err = loadPostgres(ctx, unwrapConn(inner).(*stdlib.Conn).Conn(), c, cfg)
	case sourceSQLite:
		q, ok := inner.(driver.QueryerContext)
		if !ok {
			q = unwrapConn(inner).(driver.QueryerContext)
		}
		identity, err = loadSQLite(ctx, q, c, cfg)
	default:
		identity = loadGeneric(inner, c, cfg)
	}
	if err != nil {
		return nil, err
	}
	c.namespace = namespaceOf(identity, cfg.Namespace, cfg.SchemaVersion)
	for _, t := range c.tables {
		for b := range t.genKeys {
			t.genKeys[b] = genKey(c.namespace, t, b)
		}
		t.genNS = c.namespace
	}
	return c, nil
}

// namespaceOf hashes what separates one database's keys from another's:
// 12 bytes of SHA-256, 16 characters of base64url (no ':', which keys use
// as a separator). Fields are length-prefixed so that no two different
// inputs hash the same text.
func namespaceOf(identity, namespace, schemaVersion string) string {
	h := sha256.New()
	for _, s := range []string{identity, namespace, schemaVersion} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// randomIdentity is the identity of a database that has none (an in-memory
// SQLite database lives in one process, one pool): never shared.
func randomIdentity() string {
	return "random:" + rand.Text()
}

// ruleTable is a rule's table name and key columns, parsed.
type ruleTable struct {
	written string // the rule's name as written, for messages
	id      ident
	rule    TableRule
	keys    [][]string        // folded column names
	lower   map[string]bool   // folded columns normalised with lower
	where   string            // `table "users"`, for errors
	cols    map[string]string // folded -> as written, for messages
}

// ruleTables parses cfg's rules (already validated) in a stable order, so
// the first error is the same one every time.
func ruleTables(cfg *Config) []ruleTable {
	var out []ruleTable
	for _, written := range sortedKeys(cfg.Rules.Tables) {
		id, err := parseIdent(written, 2)
		if err != nil {
			continue // Validate rejected it already
		}
		r := cfg.Rules.Tables[written]
		rt := ruleTable{written: written, id: id, rule: r, lower: map[string]bool{},
			cols: map[string]string{}, where: "table " + strconv.Quote(written)}
		for _, key := range r.Keys {
			cols := make([]string, 0, len(key))
			for _, col := range key {
				f := foldCol(col)
				cols = append(cols, f)
				rt.cols[f] = col
			}
			rt.keys = append(rt.keys, cols)
		}
		for col, n := range r.Normalize {
			if n == normalizeLower {
				rt.lower[foldCol(col)] = true
			}
		}
		out = append(out, rt)
	}
	return out
}

// foldCol is a column name as the catalog spells it.
func foldCol(col string) string {
	if id, err := parseIdent(col, 1); err == nil {
		return id.table()
	}
	return col
}

// newTable builds a tableInfo from a rule and the columns the catalog
// reported (nil columns: generic, every key column kindUnknown).
func (rt *ruleTable) newTable(schema, name string, columns map[string]columnInfo) (*tableInfo, error) {
	t := &tableInfo{schema: schema, name: name, rule: rt.rule, columns: columns, validated: columns != nil}
	t.qname = t.spellQualified()
	for i, key := range rt.keys {
		k := keyInfo{name: KeyName(rt.rule.Keys[i])}
		for _, col := range key {
			kc := keyCol{name: col, lower: rt.lower[col]}
			if columns != nil {
				ci, ok := columns[col]
				if !ok {
					return nil, &RulesError{Where: rt.where, Msg: fmt.Sprintf("key %s: column %q does not exist in %s (columns: %s)",
						k.name, rt.cols[col], t.qualified(), columnList(columns))}
				}
				kc.kind, kc.bits, kc.stringsOnly = ci.kind, ci.bits, ci.stringsOnly
				if ci.nativeLower {
					kc.lower, kc.nativeLower = true, true
				}
			}
			k.cols = append(k.cols, kc)
		}
		t.keys = append(t.keys, k)
	}
	return t, nil
}

func columnList(columns map[string]columnInfo) string {
	names := sortedKeys(columns)
	for i, n := range names {
		names[i] = ident{parts: []string{n}}.String()
	}
	return strings.Join(names, ", ")
}

// add registers t under its resolved name.
func (c *catalog) add(t *tableInfo) {
	c.tables[relName{t.schema, t.name}] = t
}

// uniqueIndex is a uniqueness guarantee the database enforces: a primary
// key, unique constraint or unique index, on plain columns or lower(col).
type uniqueIndex struct {
	name string
	cols map[string]indexCol // folded column -> how it is indexed
}

type indexCol struct {
	lower bool // the index is on lower(col)
	// collation (SQLite): "" when unknown; "BINARY", "NOCASE", ...
	collation string
}

// backs reports whether ix guarantees that key k finds at most one row:
// every indexed column is in the key (a unique subset makes the whole key
// unique), and each is indexed as the key compares it. A lower(col) index
// backs a key normalised with lower; a citext column's plain index too. A
// lower(col) index also backs a plain key: lower(a) unique implies a
// unique.
func (ix uniqueIndex) backs(k keyInfo) bool {
	if len(ix.cols) == 0 {
		return false
	}
	inKey := make(map[string]keyCol, len(k.cols))
	for _, kc := range k.cols {
		inKey[kc.name] = kc
	}
	for col, ic := range ix.cols {
		kc, ok := inKey[col]
		if !ok {
			return false
		}
		if kc.lower && !kc.nativeLower && !ic.lower && !strings.EqualFold(ic.collation, "NOCASE") {
			// Two rows differing in case share one normalised key.
			return false
		}
	}
	return true
}

// warnUnbacked logs keys no uniqueness guarantee backs: lookups on them may
// find several rows, which the read path detects and reports, caching
// nothing.
func warnUnbacked(cfg *Config, t *tableInfo, indexes []uniqueIndex) {
	for i := range t.keys {
		for _, ix := range indexes {
			if ix.backs(t.keys[i]) {
				t.keys[i].backed = true
				break
			}
		}
		if !t.keys[i].backed {
			cfg.logger().Warn("cachedsql: key is not backed by a primary key, unique constraint or unique index: lookups may find several rows, which are then not cached",
				"table", t.qualified(), "key", t.keys[i].name)
		}
	}
}

// loadGeneric builds the catalog from the rules alone.
func loadGeneric(inner driver.Conn, c *catalog, cfg *Config) string {
	for _, rt := range ruleTables(cfg) {
		t, _ := rt.newTable(rt.id.schema(), rt.id.table(), nil)
		c.add(t)
		if t.schema == "" {
			c.bare[t.name] = t
		}
	}
	if len(cfg.Rules.Tables) > 0 {
		cfg.logger().Debug("cachedsql: cannot read this driver's catalog: rules not checked against the database, key values canonicalised by Go type",
			"driver", fmt.Sprintf("%T", inner))
	}
	return fmt.Sprintf("generic:%T", inner)
}
