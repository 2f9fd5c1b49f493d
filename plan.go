package cachedsql

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/cachedsql/cachedsql/parser"
)

// maxPlans bounds the plan cache: statements with inlined literals would
// otherwise grow it with every distinct value.
const maxPlans = 4096

// plan is what the driver does with one statement text. Plans are shared by
// every connection of a pool and never written after planning.
type plan struct {
	stmt   *parser.Statement
	lookup *lookupPlan // nil: not a cacheable lookup
	write  *writePlan  // nil: flushes nothing
	reason string      // why it is not a lookup, for debug logs
}

// lookupPlan describes a cacheable single-row key lookup.
type lookupPlan struct {
	table *tableInfo
	key   int      // index into table.keys
	args  []keyArg // one per key column, in the key's column order
	// extra lists the parameters, ascending, whose values the result also
	// depends on (row-local predicates, projection, pinned non-key columns):
	// they are part of the shape.
	extra []int
	// rawParams lists the key parameters whose values as given, not only
	// canonicalised, decide the result: "email = $1" on a column whose key
	// is lower-normalised finds the row for one spelling only.
	rawParams []int
	shape     string // identifies the statement text
	rule      string // "public.users(email)", for messages
}

// keyArg is where one key column's value comes from.
type keyArg struct {
	param   int    // 1-based parameter index, or 0 for a literal
	literal string // the decoded literal when param is 0
}

// planner turns statement texts into plans against one pool's catalog.
type planner struct {
	cat     *catalog
	rules   *Rules // the pool's validated rules, for functions and flush_with
	dialect parser.Dialect
	plans   *lru[*plan]
	// logger receives one debug line per plan built (Config.Logger; nil:
	// slog.Default() at the time of the call).
	logger *slog.Logger
}

func newPlanner(cat *catalog, rules *Rules) *planner {
	return &planner{cat: cat, rules: rules, dialect: cat.dialect, plans: newLRU[*plan](maxPlans)}
}

func (pl *planner) plan(query string) *plan {
	if p, ok := pl.plans.get(query); ok {
		return p
	}
	p := pl.build(query)
	pl.logPlan(query, p)
	pl.plans.put(query, p)
	return p
}

// logPlan says, at debug level, why a statement is or is not served from
// the cache and what it flushes: once per plan, not per query.
func (pl *planner) logPlan(query string, p *plan) {
	l := pl.logger
	if l == nil {
		l = slog.Default()
	}
	ctx := context.Background()
	if !l.Enabled(ctx, slog.LevelDebug) {
		return
	}
	if len(query) > 200 {
		query = query[:200] + "..."
	}
	attrs := []slog.Attr{slog.String("query", query)}
	switch {
	case p.lookup != nil:
		attrs = append(attrs, slog.Bool("cached", true), slog.String("rule", p.lookup.rule))
	default:
		attrs = append(attrs, slog.Bool("cached", false), slog.String("reason", p.reason))
	}
	if w := p.write; w != nil {
		switch {
		case w.bumpAll:
			attrs = append(attrs, slog.String("flush", "all cached tables"), slog.String("flush_reason", w.reason))
		case len(w.bump) > 0:
			names := make([]string, len(w.bump))
			for i, t := range w.bump {
				names[i] = t.qualified()
			}
			attrs = append(attrs, slog.String("flush", "tables "+strings.Join(names, ", ")), slog.String("flush_reason", w.reason))
		}
		if w.returning != nil {
			attrs = append(attrs, slog.String("flush_keys", w.returning.table.qualified()+" from RETURNING"))
		}
	}
	l.LogAttrs(ctx, slog.LevelDebug, "cachedsql: plan", attrs...)
}

func (pl *planner) build(query string) *plan {
	st := parser.Parse(query, pl.dialect)
	p := &plan{stmt: st, write: pl.planWrite(query, st)}
	if st.Kind != parser.Lookup {
		p.reason = st.Kind.String()
		if st.Reason != "" {
			p.reason += ": " + st.Reason
		}
		return p
	}
	lk := st.Lookup
	t, ok := pl.cat.table(lk.Schema, lk.Table)
	switch {
	case !ok:
		p.reason = fmt.Sprintf("table %s has no rule", qualifiedName(lk.Schema, lk.Table))
		return p
	case t.rls:
		p.reason = fmt.Sprintf("table %s has row-level security", t.qualified())
		return p
	case t.rule.mode() != ModeCache:
		p.reason = fmt.Sprintf("table %s is flush_only", t.qualified())
		return p
	}
	for i := range t.keys {
		if lp, ok := matchKey(t, i, lk); ok {
			lp.shape = shapeOf(query)
			p.lookup = lp
			return p
		}
	}
	p.reason = fmt.Sprintf("WHERE pins no whole key of %s", t.qualified())
	return p
}

// matchKey reports whether lk pins every column of t.keys[key] by an
// equality whose result is decided by the key's canonical values (plus the
// raw values it lists).
func matchKey(t *tableInfo, key int, lk *parser.LookupInfo) (*lookupPlan, bool) {
	k := t.keys[key]
	lp := &lookupPlan{table: t, key: key, args: make([]keyArg, len(k.cols)),
		rule: fmt.Sprintf("%s(%s)", t.qualified(), k.name)}
	used := make([]bool, len(lk.Pinned))
	for i, col := range k.cols {
		j := slices.IndexFunc(lk.Pinned, func(eq parser.Equality) bool {
			return eq.Column == col.name && (eq.Table == "" || eq.Table == lk.Table || eq.Table == lk.Alias)
		})
		if j < 0 {
			return nil, false
		}
		eq := lk.Pinned[j]
		raw, ok := comparesCanonically(col, eq)
		if !ok {
			return nil, false
		}
		switch eq.Value.Source {
		case parser.SourceParam:
			lp.args[i] = keyArg{param: eq.Value.Param}
			if raw {
				lp.rawParams = append(lp.rawParams, eq.Value.Param)
			}
		case parser.SourceLiteral:
			if eq.Value.Literal == parser.LitNull {
				return nil, false // "= NULL" matches nothing; nothing to key
			}
			// A literal is part of the statement text, so of the shape.
			lp.args[i] = keyArg{literal: eq.Value.Text}
		default:
			return nil, false
		}
		used[j] = true
	}
	extra := slices.Clone(lk.ExtraParams)
	for j, eq := range lk.Pinned {
		if !used[j] {
			extra = append(extra, eq.Value.Params...)
			if eq.Value.Source == parser.SourceParam {
				extra = append(extra, eq.Value.Param)
			}
		}
	}
	slices.Sort(extra)
	lp.extra = slices.Compact(extra)
	return lp, true
}

// comparesCanonically reports whether the equality eq on key column col
// finds the row its canonical value names. raw is set when it does only for
// the value as given (the row is found for one spelling of a
// case-insensitive key), so the value must also key the shape.
func comparesCanonically(col keyCol, eq parser.Equality) (raw, ok bool) {
	lowerValue := false
	for _, w := range eq.Value.Wrap {
		switch {
		case w == "lower" && col.lower:
			lowerValue = true
		case castKeepsValue(col.kind, w):
		default:
			return false, false
		}
	}
	switch {
	case len(eq.ColumnWrap) == 0:
		// The column's own equality: exact, or case-insensitive natively.
		return col.lower && !col.nativeLower, true
	case len(eq.ColumnWrap) == 1 && eq.ColumnWrap[0] == "lower" && col.lower:
		// lower(col) = lower($1) finds one row for every spelling of $1;
		// lower(col) = $1 only for the lower-case one.
		return !lowerValue, true
	}
	return false, false
}

// castKeepsValue reports whether a cast applied to a key value leaves the
// value the key compares unchanged (or fails in the database): $1::bigint on
// an integer key, $1::text on a text key.
func castKeepsValue(kind colKind, cast string) bool {
	switch kind {
	case kindInt:
		switch cast {
		case "::int", "::integer", "::int2", "::int4", "::int8", "::smallint", "::bigint":
			return true
		}
	case kindText:
		switch cast {
		case "::text", "::varchar", "::citext":
			return true
		}
	case kindUUID:
		return cast == "::uuid"
	}
	return false
}

// shapeOf identifies a statement text compactly: entries store one result
// per shape, and texts can be long.
func shapeOf(query string) string {
	sum := sha256.Sum256([]byte(query))
	return base64.RawURLEncoding.EncodeToString(sum[:15])
}

func qualifiedName(schema, table string) string {
	if schema == "" {
		return table
	}
	return schema + "." + table
}
