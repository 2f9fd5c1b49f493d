package cachedsql

import (
	"fmt"
	"strings"

	"github.com/cachedsql/cachedsql/parser"
)

// Checking statements without a database: `cachedsql check` asks the same
// planner the driver uses what it would do with each statement, on a
// catalog built from the rules alone. The tables are taken to exist as the
// rules say, as the driver finds them when it reads PostgreSQL's or
// SQLite's catalog (so writes plan their RETURNING flush as they do
// there), but column types are unknown: casts on key values are not known
// to keep them. MySQL has no catalog reader, so there writes bump.

// Kinds of CheckResult.
const (
	CheckCached      = "CACHED"       // a single-row key lookup served from the cache
	CheckPassThrough = "PASS-THROUGH" // sent to the database untouched; Reason says why
	CheckWrite       = "WRITE"        // may write; Flush says what it flushes
)

// CheckResult is what cachedsql does with one statement.
type CheckResult struct {
	// Kind is CheckCached, CheckPassThrough or CheckWrite.
	Kind string
	// Name is the sqlc query name ("-- name: GetUser :one"), or "".
	Name string
	// SQL is the statement as written, without a trailing ';'; Offset is
	// its byte offset in the text given to Checker.Script (0 for Query).
	SQL    string
	Offset int
	// Table and Key: for CheckCached, the table and the key (KeyName
	// spelling) the lookup pins; for a CheckWrite flushed through
	// RETURNING, the table written ("" for Key).
	Table, Key string
	// Reason says why a statement passes through, or why a write flushes
	// whole tables.
	Reason string
	// Flush describes, for CheckWrite, what a committed write flushes:
	// "keys (id), (email) from RETURNING", "old keys by pre-read: SELECT
	// ...", "table users", "all cached tables". Empty: it writes no cached
	// table.
	Flush []string
	// TableWide is set when the write flushes whole cached tables (a
	// generation bump): every cached row of those tables is lost, so a
	// write on a hot path deserves a look.
	TableWide bool
}

// Checker classifies statements with the driver's own planner against
// rules, without a database. Safe for concurrent use.
type Checker struct {
	pl *planner
}

// NewChecker validates rules and returns a Checker for SQL in dialect
// ("postgres", "mysql" or "sqlite"; "" is postgres).
func NewChecker(rules Rules, dialect string) (*Checker, error) {
	d, err := parseDialect(dialect)
	if err != nil {
		return nil, err
	}
	if err := rules.Validate(); err != nil {
		return nil, err
	}
	rules = rules.clone()
	return &Checker{pl: newPlanner(checkCatalog(rules, d), &rules)}, nil
}

// Check classifies every statement of a script (see Checker.Script).
func Check(rules Rules, dialect, sql string) ([]CheckResult, error) {
	c, err := NewChecker(rules, dialect)
	if err != nil {
		return nil, err
	}
	return c.Script(sql), nil
}

// Script splits sql into statements at top-level semicolons (with the
// parser's lexer: semicolons in strings, comments and function bodies do
// not split) and classifies each one. Comments before a statement stay
// with it, so sqlc's "-- name:" headers name the results.
func (c *Checker) Script(sql string) []CheckResult {
	var out []CheckResult
	for _, r := range splitStatements(sql, c.pl.dialect) {
		res := c.Query(sql[r[0]:r[1]])
		res.Offset += r[0]
		out = append(out, res)
	}
	return out
}

// Query classifies one string as the driver would receive it from
// QueryContext or ExecContext (several statements in it are one Multi).
func (c *Checker) Query(query string) CheckResult {
	p := c.pl.plan(query)
	st := p.stmt
	res := CheckResult{Name: st.Name, Offset: st.Start}
	if st.End >= st.Start && st.End <= len(query) {
		res.SQL = query[st.Start:st.End]
	}
	if st.Kind == parser.Multi && len(st.Parts) > 0 {
		res.Name = st.Parts[0].Name
	}
	switch {
	case p.write != nil:
		res.Kind = CheckWrite
		describeWrite(&res, p.write)
	case p.lookup != nil:
		res.Kind = CheckCached
		res.Table = p.lookup.table.qualified()
		res.Key = p.lookup.table.keys[p.lookup.key].name
	case st.Kind == parser.Write || st.Kind == parser.Multi && writes(st):
		res.Kind = CheckWrite
		res.Reason = "writes no cached table"
	default:
		res.Kind = CheckPassThrough
		res.Reason = p.reason
		switch st.Kind {
		case parser.OtherRead:
			res.Reason = st.Reason
		case parser.TxControl:
			res.Reason = "transaction control"
		case parser.Session:
			res.Reason = "session statement"
			if st.Session != nil && st.Session.Affects&(parser.AffectsSearchPath|parser.AffectsRole|parser.AffectsSessionAuthorization) != 0 {
				res.Reason += ": the connection bypasses the cache afterwards"
			}
		}
	}
	return res
}

func writes(st *parser.Statement) bool {
	for i := range st.Parts {
		if st.Parts[i].Kind == parser.Write || st.Parts[i].Kind == parser.Unknown {
			return true
		}
	}
	return false
}

// describeWrite fills res from a write plan.
func describeWrite(res *CheckResult, w *writePlan) {
	if rp := w.returning; rp != nil {
		res.Table = rp.table.qualified()
		keys := make([]string, len(rp.table.keys))
		for i, k := range rp.table.keys {
			keys[i] = "(" + k.name + ")"
		}
		res.Flush = append(res.Flush, fmt.Sprintf("keys %s of %s from RETURNING", strings.Join(keys, ", "), res.Table))
		if rp.preRead != "" {
			res.Flush = append(res.Flush, "old keys by pre-read: "+rp.preRead)
		}
	}
	switch {
	case w.bumpAll:
		res.Flush = append(res.Flush, "all cached tables")
		res.TableWide = true
	case len(w.bump) > 0:
		for _, t := range w.bump {
			res.Flush = append(res.Flush, "table "+t.qualified())
		}
		res.TableWide = true
	}
	if res.TableWide {
		res.Reason = w.reason
	}
}

// splitStatements returns the byte ranges [start, end) of the statements
// of a script in dialect, split at top-level semicolons with the parser's
// lexer: a ';' inside a string, a quoted identifier, a comment, a dollar
// quote, parentheses or a CREATE ... BEGIN ... END body does not split.
// Each range starts just after the previous ';' (leading comments belong
// to the statement that follows them) and excludes its own ';'. Ranges
// holding only whitespace and comments are left out.
func splitStatements(sql string, dialect parser.Dialect) [][2]int {
	var out [][2]int
	start, depth, block := 0, 0, 0
	var first parser.Token // the statement's first significant token
	significant := false
	for _, t := range parser.Lex(sql, dialect) {
		if t.Trivia() {
			continue
		}
		kw := func(k string) bool { return t.Kind == parser.Ident && strings.EqualFold(t.Text, k) }
		switch {
		case t.Kind == parser.Punct && (t.Text == "(" || t.Text == "["):
			depth++
		case t.Kind == parser.Punct && (t.Text == ")" || t.Text == "]"):
			depth--
		case t.Kind == parser.Ident && significant && first.Kind == parser.Ident && strings.EqualFold(first.Text, "create"):
			// Bodies nest with CASE ... END inside them, as the parser
			// splits them.
			if kw("begin") || (block > 0 && kw("case")) {
				block++
			} else if block > 0 && kw("end") {
				block--
			}
		case t.Kind == parser.Punct && t.Text == ";" && depth <= 0 && block == 0:
			if significant {
				out = append(out, [2]int{start, t.Pos})
			}
			start, significant, depth = t.End(), false, 0
			continue
		}
		if !significant {
			first, significant = t, true
		}
	}
	if significant {
		out = append(out, [2]int{start, len(sql)})
	}
	return out
}

// parseDialect reads a dialect name.
func parseDialect(name string) (parser.Dialect, error) {
	switch strings.ToLower(name) {
	case "", "postgres", "postgresql", "pgx":
		return parser.Postgres, nil
	case "mysql":
		return parser.MySQL, nil
	case "sqlite", "sqlite3":
		return parser.SQLite, nil
	}
	return 0, fmt.Errorf("%w: unknown dialect %q (want postgres, mysql or sqlite)", ErrConfig, name)
}

// checkCatalog builds a catalog from rules alone, as loadGeneric does for
// drivers whose catalog cannot be read: tables resolve by the rule's name
// (a rule without a schema matches the table in any schema), key columns
// have no type (kindUnknown). Tables are marked validated, as a catalog
// read would mark them, for the dialects whose catalog the driver reads.
func checkCatalog(rules Rules, dialect parser.Dialect) *catalog {
	cfg := &Config{Rules: rules}
	c := &catalog{
		dialect: dialect,
		source:  sourceGeneric,
		tables:  make(map[relName]*tableInfo, len(rules.Tables)),
		bare:    make(map[string]*tableInfo, len(rules.Tables)),
	}
	for _, rt := range ruleTables(cfg) {
		t, err := rt.newTable(rt.id.schema(), rt.id.table(), nil)
		if err != nil {
			continue // newTable without columns cannot fail
		}
		t.validated = dialect != parser.MySQL
		c.add(t)
		if t.schema == "" {
			c.bare[t.name] = t
		}
	}
	c.namespace = namespaceOf("check", "", "")
	return c
}
