package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	sqlparser "github.com/cachedsql/cachedsql/parser"
)

const discoverUsage = `usage: cachedsql discover -dsn postgres://... [-schema s]

Reads a PostgreSQL schema and prints a commented rules file (the format
cachedsql.LoadRules reads) on standard output:

  keys        primary key first, then unique constraints and unique
              indexes; a unique index on lower(col) becomes
              normalize: {col: lower}; partial and other expression indexes
              are skipped, with a comment
  flush_with  on a child table whose foreign key cascades (ON DELETE or ON
              UPDATE CASCADE, SET NULL, SET DEFAULT) from a parent
  comments    tables written by triggers (those writes bypass cachedsql),
              tables with row-level security (never cached), tables without
              a unique key

Review it before use: list only the keys your lookups use, since every
write flushes every key of every row it touches.

flags:
`

func runDiscover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("discover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, discoverUsage)
		fs.PrintDefaults()
	}
	dsn := fs.String("dsn", "", "PostgreSQL DSN, postgres://user@host:port/db (required)")
	schema := fs.String("schema", "public", "schema to read")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if *dsn == "" {
		fs.Usage()
		return usageError(errors.New("discover: -dsn is required"))
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return usageError(fmt.Errorf("discover: unexpected arguments %q", fs.Args()))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rules, err := discover(ctx, *dsn, *schema)
	if err != nil {
		return fmt.Errorf("discover: %w", err)
	}
	_, err = io.WriteString(stdout, rules)
	return err
}

// dTable is what discover learns about one table.
type dTable struct {
	oid       uint32
	name      string
	rls       bool
	keys      [][]string      // column names, as the catalog spells them
	lower     map[string]bool // columns with a unique lower(col) index
	comments  []string        // about keys and indexes skipped
	flushWith []string        // parent tables, rule syntax
	fkNotes   []string        // why each flush_with
	warnings  []string        // triggers
}

// discover reads schema through dsn and returns the rules file.
func discover(ctx context.Context, dsn, schema string) (string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("-dsn: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("connecting to PostgreSQL at %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var dbname string
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT current_database(), EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`, schema).Scan(&dbname, &exists); err != nil {
		return "", err
	}
	if !exists {
		return "", fmt.Errorf("schema %q does not exist in database %s", schema, dbname)
	}
	tables, err := discoverTables(ctx, conn, schema)
	if err != nil {
		return "", err
	}
	byName := map[string]*dTable{}
	for _, t := range tables {
		byName[t.name] = t
		if err := discoverKeys(ctx, conn, t); err != nil {
			return "", fmt.Errorf("table %s: %w", t.name, err)
		}
	}
	if err := discoverForeignKeys(ctx, conn, schema, byName); err != nil {
		return "", err
	}
	if err := discoverTriggers(ctx, conn, schema, byName); err != nil {
		return "", err
	}
	return formatRules(dbname, schema, tables), nil
}

func discoverTables(ctx context.Context, conn *pgx.Conn, schema string) ([]*dTable, error) {
	rows, err := conn.Query(ctx, `
SELECT c.oid, c.relname, c.relrowsecurity
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname`, schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*dTable, error) {
		t := &dTable{lower: map[string]bool{}}
		err := r.Scan(&t.oid, &t.name, &t.rls)
		return t, err
	})
}

// discoverKeys reads the primary key, unique constraints and unique
// indexes of t, in that order.
func discoverKeys(ctx context.Context, conn *pgx.Conn, t *dTable) error {
	rows, err := conn.Query(ctx, `
SELECT ci.relname, i.indisvalid, coalesce(pg_get_expr(i.indpred, i.indrelid, true), ''),
       array(SELECT coalesce(a.attname, '') FROM generate_series(1, i.indnkeyatts) k
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k-1]
             ORDER BY k),
       array(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
       coalesce(con.contype::text, '')
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u')
WHERE i.indrelid = $1 AND i.indisunique
ORDER BY i.indisprimary DESC, con.oid IS NULL, ci.relname`, t.oid)
	if err != nil {
		return err
	}
	type index struct {
		name, pred, contype string
		valid               bool
		atts, exprs         []string
	}
	ixs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var ix index
		err := r.Scan(&ix.name, &ix.valid, &ix.pred, &ix.atts, &ix.exprs, &ix.contype)
		return ix, err
	})
	if err != nil {
		return err
	}
	plain := map[string]bool{} // columns in some plain key
	type cand struct {
		cols  []string
		lower string // the lower(col) column, or ""
		what  string
	}
	var cands []cand
	for _, ix := range ixs {
		what := "unique index " + ix.name
		switch ix.contype {
		case "p":
			what = "primary key " + ix.name
		case "u":
			what = "unique constraint " + ix.name
		}
		switch {
		case !ix.valid:
			t.comments = append(t.comments, fmt.Sprintf("skipped %s: not valid (a failed CREATE INDEX CONCURRENTLY?)", what))
			continue
		case ix.pred != "":
			t.comments = append(t.comments, fmt.Sprintf("skipped %s: partial (WHERE %s), unique only among some rows", what, ix.pred))
			continue
		}
		c := cand{what: what}
		for i, att := range ix.atts {
			if att != "" {
				c.cols = append(c.cols, att)
				continue
			}
			col, ok := lowerColumn(ix.exprs[i])
			if !ok || c.lower != "" {
				c.cols = nil
				t.comments = append(t.comments, fmt.Sprintf("skipped %s: expression (%s)", what, strings.Join(ix.exprs, ", ")))
				break
			}
			c.lower = col
			c.cols = append(c.cols, col)
		}
		if c.cols == nil {
			continue
		}
		if c.lower == "" {
			for _, col := range c.cols {
				plain[col] = true
			}
		}
		cands = append(cands, c)
	}
	for _, c := range cands {
		if c.lower != "" && plain[c.lower] {
			t.comments = append(t.comments, fmt.Sprintf("skipped %s on lower(%s): %s is also in a plain key, and normalising it would change that key",
				strings.TrimPrefix(c.what, "unique index "), c.lower, c.lower))
			continue
		}
		dup := slices.ContainsFunc(t.keys, func(k []string) bool { return sameSet(k, c.cols) })
		if dup {
			t.comments = append(t.comments, fmt.Sprintf("skipped %s: same columns as an earlier key", c.what))
			continue
		}
		t.keys = append(t.keys, c.cols)
		if c.lower != "" {
			t.lower[c.lower] = true
		}
	}
	return nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// lowerColumn recognises an index expression lower(col), as
// pg_get_indexdef prints it (lower(email), lower((email)::text),
// lower("Email")), with the parser's lexer.
func lowerColumn(expr string) (string, bool) {
	var toks []sqlparser.Token
	for _, t := range sqlparser.Lex(expr, sqlparser.Postgres) {
		if !t.Trivia() {
			toks = append(toks, t)
		}
	}
	is := func(i int, kind sqlparser.TokenKind, text string) bool {
		return i < len(toks) && toks[i].Kind == kind && (text == "" || strings.EqualFold(toks[i].Text, text))
	}
	if !is(0, sqlparser.Ident, "lower") || !is(1, sqlparser.Punct, "(") || !is(len(toks)-1, sqlparser.Punct, ")") {
		return "", false
	}
	inner := toks[2 : len(toks)-1]
	// (col)::text or col::text
	if n := len(inner); n >= 2 && inner[n-2].Kind == sqlparser.Op && inner[n-2].Text == "::" &&
		inner[n-1].Kind == sqlparser.Ident && strings.EqualFold(inner[n-1].Text, "text") {
		inner = inner[:n-2]
		if len(inner) == 3 && inner[0].Text == "(" && inner[2].Text == ")" {
			inner = inner[1:2]
		}
	}
	if len(inner) == 1 && (inner[0].Kind == sqlparser.Ident || inner[0].Kind == sqlparser.QuotedIdent) {
		return inner[0].Name(), true
	}
	return "", false
}

// discoverForeignKeys sets flush_with on children whose foreign keys
// cascade: the database changes their rows without a statement cachedsql
// sees.
func discoverForeignKeys(ctx context.Context, conn *pgx.Conn, schema string, byName map[string]*dTable) error {
	rows, err := conn.Query(ctx, `
SELECT con.conname, cl.relname, pn.nspname, pl.relname, con.confdeltype::text, con.confupdtype::text
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class cl ON cl.oid = con.conrelid
JOIN pg_catalog.pg_namespace cn ON cn.oid = cl.relnamespace
JOIN pg_catalog.pg_class pl ON pl.oid = con.confrelid
JOIN pg_catalog.pg_namespace pn ON pn.oid = pl.relnamespace
WHERE con.contype = 'f' AND cn.nspname = $1
ORDER BY cl.relname, con.conname`, schema)
	if err != nil {
		return err
	}
	var name, child, pschema, parent, del, upd string
	_, err = pgx.ForEachRow(rows, []any{&name, &child, &pschema, &parent, &del, &upd}, func() error {
		t := byName[child]
		if t == nil {
			return nil
		}
		var actions []string
		if a := fkAction(del); a != "" {
			actions = append(actions, "ON DELETE "+a)
		}
		if a := fkAction(upd); a != "" {
			actions = append(actions, "ON UPDATE "+a)
		}
		if len(actions) == 0 {
			return nil
		}
		p := ruleName(pschema, parent, schema)
		if !slices.Contains(t.flushWith, p) {
			t.flushWith = append(t.flushWith, p)
		}
		t.fkNotes = append(t.fkNotes, fmt.Sprintf("%s: %s", name, strings.Join(actions, ", ")))
		return nil
	})
	return err
}

func fkAction(c string) string {
	switch c {
	case "c":
		return "CASCADE"
	case "n":
		return "SET NULL"
	case "d":
		return "SET DEFAULT"
	}
	return ""
}

// discoverTriggers warns about tables that triggers write: the trigger
// function's body is scanned with the parser's lexer for INSERT INTO,
// UPDATE, DELETE FROM and MERGE INTO naming a table of the schema.
func discoverTriggers(ctx context.Context, conn *pgx.Conn, schema string, byName map[string]*dTable) error {
	rows, err := conn.Query(ctx, `
SELECT t.tgname, c.relname, pn.nspname, p.proname, l.lanname, p.prosrc
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE NOT t.tgisinternal AND n.nspname = $1
ORDER BY c.relname, t.tgname`, schema)
	if err != nil {
		return err
	}
	var tg, table, fschema, fname, lang, src string
	_, err = pgx.ForEachRow(rows, []any{&tg, &table, &fschema, &fname, &lang, &src}, func() error {
		on := byName[table]
		fn := ruleName(fschema, fname, schema) + "()"
		if lang != "plpgsql" && lang != "sql" {
			if on != nil {
				on.warnings = append(on.warnings, fmt.Sprintf("warning: trigger %s runs %s (%s), whose writes cannot be read: tables it writes are not flushed by cachedsql", tg, fn, lang))
			}
			return nil
		}
		for _, w := range writtenTables(src, schema) {
			if t := byName[w]; t != nil {
				t.warnings = append(t.warnings, fmt.Sprintf("warning: written by trigger %s on %s (%s): those writes bypass cachedsql; rows stay cached until the TTL unless flushed (flush_with, cachedsql flush)", tg, table, fn))
			}
		}
		return nil
	})
	return err
}

// writtenTables lists the tables of schema a function body writes.
func writtenTables(src, schema string) []string {
	var toks []sqlparser.Token
	for _, t := range sqlparser.Lex(src, sqlparser.Postgres) {
		if !t.Trivia() {
			toks = append(toks, t)
		}
	}
	kw := func(i int, k string) bool {
		return i >= 0 && i < len(toks) && toks[i].Kind == sqlparser.Ident && strings.EqualFold(toks[i].Text, k)
	}
	var out []string
	for i := range toks {
		var at int
		switch {
		case kw(i, "insert") && kw(i+1, "into"), kw(i, "delete") && kw(i+1, "from"), kw(i, "merge") && kw(i+1, "into"):
			at = i + 2
		case kw(i, "update") && !kw(i-1, "do") && !kw(i-1, "for") && !kw(i-1, "key"):
			at = i + 1
		default:
			continue
		}
		if kw(at, "only") {
			at++
		}
		if at >= len(toks) || (toks[at].Kind != sqlparser.Ident && toks[at].Kind != sqlparser.QuotedIdent) {
			continue
		}
		name := toks[at].Name()
		if at+2 < len(toks) && toks[at+1].Kind == sqlparser.Punct && toks[at+1].Text == "." {
			if name != schema {
				continue
			}
			name = toks[at+2].Name()
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// ruleName is a table's name in rules syntax: bare in the public schema
// (or the schema being read, when that is public), qualified otherwise,
// with parts quoted when folding would change them.
func ruleName(schema, table, current string) string {
	if schema == "public" && current == "public" {
		return ruleIdent(table)
	}
	return ruleIdent(schema) + "." + ruleIdent(table)
}

// ruleIdent quotes an identifier as SQL does when it is not a plain
// lower-case name.
func ruleIdent(s string) string {
	plain := s != ""
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '$')) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// yamlScalar writes s as a YAML plain scalar when it is safe, else single
// quoted.
func yamlScalar(s string) string {
	safe := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '$') {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// formatRules prints the rules file.
func formatRules(dbname, schema string, tables []*dTable) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# cachedsql rules for schema %s of database %s, written by cachedsql discover.\n", schema, dbname)
	b.WriteString("# Keys: primary key first, then unique constraints and unique indexes. Keep\n")
	b.WriteString("# only the keys your lookups use: every write flushes every key of every row.\n")
	b.WriteString("# ttl: 10m\n# miss_ttl: 1m\n")
	var body strings.Builder
	n := 0
	for _, t := range tables {
		name := yamlScalar(ruleName(schema, t.name, schema))
		switch {
		case t.rls:
			fmt.Fprintf(&body, "  # %s: row-level security is enabled: rows depend on the role, so it is not cached\n", name)
			continue
		case len(t.keys) == 0:
			fmt.Fprintf(&body, "  # %s: no primary key, unique constraint or unique index: not cached\n", name)
			for _, c := range t.comments {
				fmt.Fprintf(&body, "  #   %s\n", c)
			}
			continue
		}
		n++
		fmt.Fprintf(&body, "  %s:\n", name)
		for _, w := range t.warnings {
			fmt.Fprintf(&body, "    # %s\n", w)
		}
		keys := make([]string, len(t.keys))
		for i, k := range t.keys {
			cols := make([]string, len(k))
			for j, c := range k {
				cols[j] = yamlScalar(ruleIdent(c))
			}
			keys[i] = "[" + strings.Join(cols, ", ") + "]"
		}
		fmt.Fprintf(&body, "    keys: [%s]\n", strings.Join(keys, ", "))
		if len(t.lower) > 0 {
			var cols []string
			for _, k := range t.keys {
				for _, c := range k {
					if t.lower[c] && !slices.Contains(cols, c) {
						cols = append(cols, c)
					}
				}
			}
			items := make([]string, len(cols))
			for i, c := range cols {
				items[i] = yamlScalar(ruleIdent(c)) + ": lower"
			}
			fmt.Fprintf(&body, "    normalize: {%s}   # unique index on lower(...)\n", strings.Join(items, ", "))
		}
		if len(t.flushWith) > 0 {
			items := make([]string, len(t.flushWith))
			for i, p := range t.flushWith {
				items[i] = yamlScalar(p)
			}
			fmt.Fprintf(&body, "    flush_with: [%s]   # %s\n", strings.Join(items, ", "), strings.Join(t.fkNotes, "; "))
		}
		for _, c := range t.comments {
			fmt.Fprintf(&body, "    # %s\n", c)
		}
	}
	if n == 0 {
		b.WriteString("tables: {}\n")
		b.WriteString(strings.ReplaceAll(body.String(), "  # ", "# "))
		return b.String()
	}
	b.WriteString("tables:\n")
	b.WriteString(body.String())
	return b.String()
}
