package cachedsql

import (
	"database/sql/driver"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cachedsql/cachedsql/parser"
)

// maxFlushKeys bounds a write's key flush: past it, the tables are bumped
// instead (one generation change beats thousands of tombstones).
const maxFlushKeys = 1000

// writePlan is what a statement that may write a cached table must flush.
// Plans are shared by a pool's connections and never written after
// planning.
type writePlan struct {
	// returning lists the targets whose written rows come back through an
	// appended RETURNING clause: their keys, old and new, are flushed
	// exactly. At most one (a statement with one target table).
	returning *returningPlan
	// bump lists tables whose generation must change: writes whose rows
	// cannot be known. bumpAll: every cached table (the statement may
	// write anything).
	bump    []*tableInfo
	bumpAll bool
	reason  string // why a bump, for check and debug logs
}

// needed reports whether the statement must be flushed at all.
func (w *writePlan) needed() bool {
	return w != nil && (w.returning != nil || len(w.bump) > 0 || w.bumpAll)
}

// forArgs adapts w to a call's arguments: pgx's named arguments and other
// query rewriters change the statement, so the RETURNING rewrite cannot be
// trusted; its table is bumped instead.
func (w *writePlan) forArgs(args []driver.NamedValue) *writePlan {
	if w == nil || w.returning == nil {
		return w
	}
	if _, ok := stripPgxOptions(args); ok {
		return w
	}
	b := &writePlan{bump: slices.Clone(w.bump), bumpAll: w.bumpAll, reason: "named arguments rewrite the statement"}
	b.addBump(w.returning.table, b.reason)
	return b
}

// returningPlan rewrites a single-table write so that it reports its rows'
// key columns.
type returningPlan struct {
	table *tableInfo
	// query is the statement with the key columns appended to (or added
	// as) its RETURNING list.
	query string
	// keyCols are the columns appended, in order; the last len(keyCols)
	// columns of each returned row.
	keyCols []string
	// callerCols is how many columns the caller's own RETURNING returns
	// (0: the caller used no RETURNING, and gets a plain Result).
	callerReturning bool
	// preRead reads the old keys of the rows an UPDATE will re-key, with
	// the same WHERE, locking them; preReadParams are the statement's
	// parameters it uses, in the order of its own placeholders. Empty
	// when no key column is assigned.
	preRead       string
	preReadParams []int
}

// planWrite decides how st, which may write, is flushed. It returns nil
// when st touches no cached table.
func (pl *planner) planWrite(query string, st *parser.Statement) *writePlan {
	w := &writePlan{}
	pl.addWrite(w, query, st)
	if !w.needed() {
		return nil
	}
	if w.bumpAll {
		w.bump = nil
	}
	return w
}

func (pl *planner) addWrite(w *writePlan, query string, st *parser.Statement) {
	switch st.Kind {
	case parser.Unknown:
		w.bumpAll, w.reason = true, "statement not understood: "+st.Reason
	case parser.Multi:
		for i := range st.Parts {
			// Parts of a multi-statement string are bumped: RETURNING
			// cannot be added to each, and they run as one implicit
			// transaction in pgx's simple protocol.
			pl.addBumps(w, &st.Parts[i])
		}
	case parser.Write:
		if len(st.Targets) == 1 && pl.addReturning(w, query, st) {
			return
		}
		pl.addBumps(w, st)
	case parser.Lookup, parser.OtherRead:
		pl.addFunctionBumps(w, st)
	case parser.TxControl:
		if st.Tx.Op == parser.TxCommitPrepared {
			// A prepared transaction's writes were flushed at PREPARE, but
			// become visible only now, and what it wrote is not known here.
			w.bumpAll, w.reason = true, "COMMIT PREPARED of writes not known here"
		}
	}
}

// addBumps bumps every cached table st may write, and the tables that
// depend on them through flush_with.
func (pl *planner) addBumps(w *writePlan, st *parser.Statement) {
	switch st.Kind {
	case parser.Unknown, parser.Multi:
		pl.addWrite(w, "", st)
		return
	case parser.Lookup, parser.OtherRead:
		pl.addFunctionBumps(w, st)
		return
	case parser.Write:
	default:
		return
	}
	for _, t := range st.Targets {
		if t.Table == "" {
			w.bumpAll, w.reason = true, fmt.Sprintf("%s names no table", t.Op)
			return
		}
		if ti, ok := pl.cat.table(t.Schema, t.Table); ok {
			w.addBump(ti, fmt.Sprintf("%s of %s", t.Op, ti.qualified()))
		}
		pl.addDependents(w, t.Schema, t.Table, t.Op)
	}
	pl.addFunctionBumps(w, st)
}

// addFunctionBumps bumps the tables the rules say a called function writes.
func (pl *planner) addFunctionBumps(w *writePlan, st *parser.Statement) {
	for _, fn := range st.Functions {
		for _, ti := range pl.functionTables(fn) {
			w.addBump(ti, fmt.Sprintf("calls %s()", fn))
		}
	}
}

// addDependents bumps cached tables that declare the written table in
// flush_with: the database cascades into them without a statement of
// ours. Inserts cannot cascade.
func (pl *planner) addDependents(w *writePlan, schema, table string, op parser.WriteOp) {
	if op == parser.OpInsert || op == parser.OpInsertMulti || op == parser.OpInsertSelect {
		return
	}
	for _, dep := range pl.dependents(schema, table) {
		w.addBump(dep, fmt.Sprintf("%s cascades from %s", dep.qualified(), qualifiedName(schema, table)))
	}
}

func (w *writePlan) addBump(t *tableInfo, reason string) {
	if !slices.Contains(w.bump, t) {
		w.bump = append(w.bump, t)
		if w.reason == "" {
			w.reason = reason
		}
	}
}

// addReturning plans an exact flush through RETURNING for a write to one
// table, reporting false when it must be bumped instead.
func (pl *planner) addReturning(w *writePlan, query string, st *parser.Statement) bool {
	t := st.Targets[0]
	if t.Table == "" {
		// CALL, DO, DDL of no table: it may write any table.
		return false
	}
	ti, ok := pl.cat.table(t.Schema, t.Table)
	if !ok {
		pl.addDependents(w, t.Schema, t.Table, t.Op)
		pl.addFunctionBumps(w, st)
		return true // not a cached table; dependents handled
	}
	// RETURNING keys are exact only where the catalog typed the key
	// columns: without it (generic drivers such as go-sqlmock) the write
	// runs as sent and bumps its table.
	// Nor where RETURNING could fail a write that succeeds without it: on
	// tables with row-level security a SELECT policy applies to the rows
	// returned. Such tables are never cached; a bump costs nothing.
	if pl.dialect != parser.Postgres || !ti.validated || ti.rls || t.ReturningAt < 0 || query == "" || st.Explained || pl.callsWritingFunction(st) {
		return false
	}
	switch t.Op {
	case parser.OpInsert, parser.OpInsertMulti, parser.OpInsertSelect, parser.OpDelete:
	case parser.OpUpsert:
		// DO UPDATE returns the updated rows; their old keys are unknown
		// if it assigns a key column.
		if t.Replace || assignsKey(ti, t.Set) {
			return false
		}
	case parser.OpUpdate:
		if !t.HasWhere || len(t.From) > 0 {
			return false
		}
	default:
		return false
	}
	cols := keyColumns(ti)
	rp := &returningPlan{table: ti, keyCols: cols, callerReturning: t.Returning != nil}
	rp.query = appendReturning(query, t.ReturningAt, t.Returning != nil, cols)
	if t.Op == parser.OpUpdate && assignsKey(ti, t.Set) {
		pre, params, ok := preReadQuery(ti, t)
		if !ok {
			return false
		}
		rp.preRead, rp.preReadParams = pre, params
	}
	w.returning = rp
	if t.Op == parser.OpDelete || t.Op == parser.OpUpdate && assignsKey(ti, t.Set) {
		pl.addDependents(w, t.Schema, t.Table, t.Op)
	}
	return true
}

// keyColumns lists every column of every key of t, once, in key order.
func keyColumns(t *tableInfo) []string {
	var cols []string
	for _, k := range t.keys {
		for _, c := range k.cols {
			if !slices.Contains(cols, c.name) {
				cols = append(cols, c.name)
			}
		}
	}
	return cols
}

// assignsKey reports whether set assigns a column of any key of t.
func assignsKey(t *tableInfo, set []parser.Assignment) bool {
	for _, a := range set {
		col, _, _ := strings.Cut(a.Column, ".") // a.b: field b of composite column a
		col = strings.TrimSuffix(col, "[]")
		for _, k := range t.keys {
			for _, c := range k.cols {
				if c.name == col {
					return true
				}
			}
		}
	}
	return false
}

// appendReturning adds cols to the statement's RETURNING list at at.
func appendReturning(query string, at int, hasReturning bool, cols []string) string {
	var b strings.Builder
	b.WriteString(query[:at])
	if hasReturning {
		b.WriteString(", ")
	} else {
		b.WriteString(" RETURNING ")
	}
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(query[at:])
	return b.String()
}

// preReadQuery builds the SELECT that reads, and locks, the current keys of
// the rows an UPDATE will change, with the UPDATE's own WHERE. Its
// placeholders are renumbered from $1, so that it binds only the
// parameters its WHERE uses (PostgreSQL rejects parameters it cannot type).
func preReadQuery(t *tableInfo, target parser.Target) (string, []int, bool) {
	renumbered, params, ok := renumberParams(target.Where.Text)
	if !ok {
		return "", nil, false
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, c := range keyColumns(t) {
		if i > 0 {
			b.WriteString(", ")
		}
		if target.Alias != "" {
			b.WriteString(quoteIdent(target.Alias))
			b.WriteByte('.')
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(" FROM ")
	b.WriteString(t.qualified())
	if target.Alias != "" {
		b.WriteString(" AS ")
		b.WriteString(quoteIdent(target.Alias))
	}
	b.WriteString(" WHERE ")
	b.WriteString(renumbered)
	// FOR UPDATE rather than FOR NO KEY UPDATE: the UPDATE changes a key,
	// which may be referenced by a foreign key; the stronger lock is what
	// the UPDATE itself would take.
	b.WriteString(" FOR UPDATE")
	return b.String(), params, true
}

// renumberParams rewrites the $N placeholders of a PostgreSQL fragment to
// $1, $2, ... in order of first use, returning the original index of each.
func renumberParams(fragment string) (string, []int, bool) {
	var b strings.Builder
	var params []int
	for _, tok := range parser.Lex(fragment, parser.Postgres) {
		if tok.Kind != parser.Param {
			b.WriteString(tok.Text)
			continue
		}
		n := tok.Param
		if n < 1 {
			return "", nil, false // a named placeholder
		}
		i := slices.Index(params, n)
		if i < 0 {
			params = append(params, n)
			i = len(params) - 1
		}
		b.WriteString("$" + strconv.Itoa(i+1))
	}
	return b.String(), params, true
}

// quoteIdent quotes a folded column name only when it needs it.
func quoteIdent(name string) string {
	return ident{parts: []string{name}}.String()
}

// callsWritingFunction reports whether st calls a function the rules
// declare as writing. Other functions (lower(), now(), ...) leave the
// statement's own rows exact: RETURNING still names every row it wrote.
func (pl *planner) callsWritingFunction(st *parser.Statement) bool {
	for _, fn := range st.Functions {
		if len(pl.functionTables(fn)) > 0 {
			return true
		}
	}
	return false
}

// functionTables lists the cached tables the rules say fn writes. Names
// match by function name alone when either side has no schema: the
// search_path may resolve either way, and flushing more is safe.
func (pl *planner) functionTables(fn string) []*tableInfo {
	callSchema, callName := splitQualified(fn)
	var out []*tableInfo
	for name, tables := range pl.rules.Functions {
		schema, fname := splitQualified(name)
		if fname != callName || (schema != "" && callSchema != "" && schema != callSchema) {
			continue
		}
		for _, tn := range tables {
			if ti, ok := pl.resolveRuleName(tn); ok && !slices.Contains(out, ti) {
				out = append(out, ti)
			}
		}
	}
	return out
}

// dependents lists the cached tables whose flush_with names the table.
func (pl *planner) dependents(schema, table string) []*tableInfo {
	var out []*tableInfo
	for _, ti := range pl.cat.tables {
		for _, parent := range ti.rule.FlushWith {
			ps, pt := splitQualified(parent)
			if pt == table && (ps == "" || schema == "" || ps == schema) && !slices.Contains(out, ti) {
				out = append(out, ti)
			}
		}
	}
	return out
}

// resolveRuleName finds the cached table a name in the rules refers to.
func (pl *planner) resolveRuleName(name string) (*tableInfo, bool) {
	schema, table := splitQualified(name)
	return pl.cat.table(schema, table)
}

// splitQualified splits a rule's name into schema and name, folded as
// the rules fold them.
func splitQualified(name string) (schema, table string) {
	id, err := parseIdent(name, 2)
	if err != nil {
		return "", name
	}
	return id.schema(), id.table()
}
