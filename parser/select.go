package parser

import (
	"slices"
	"strings"
)

// selectClauses are the keywords that end one SELECT clause and start the
// next. All are reserved in PostgreSQL, so they cannot be column names.
var selectClauses = []string{"from", "where", "group", "having", "window", "order",
	"limit", "offset", "fetch", "for", "union", "intersect", "except", "into", "lock"}

// selectStmt classifies SELECT [lo, hi): a Lookup if it is a single-row key
// lookup, otherwise an OtherRead with the first reason it is not.
func (p *parser) selectStmt(st *Statement, lo, hi int) {
	var sc exprScan
	p.scanExpr(st, lo+1, hi, &sc, nil)
	// Clause boundaries.
	var at [cLock + 1]int
	for k := range at {
		at[k] = -1
	}
	i := lo + 1
	if t := p.tok(i, hi); t.is("all") {
		i++
	} else if t.is("distinct") {
		if p.tok(i+1, hi).is("on") {
			p.otherRead(st, "DISTINCT ON", t.Pos)
			return
		}
		i++
	}
	projLo := i
	depth, first := 0, hi
	for j := i; j < hi; j++ {
		t := p.toks[j]
		switch {
		case t.isPunct("(") || t.isPunct("["):
			depth++
		case t.isPunct(")") || t.isPunct("]"):
			depth--
		case depth == 0 && t.Kind == Ident:
			for k, kw := range selectClauses {
				if t.is(kw) && at[k] < 0 && (k != cLock || p.d == MySQL) {
					at[k] = j
					if j < first {
						first = j
					}
				}
			}
		}
	}
	end := func(k int) int { // end of clause k: the next clause start after it
		e := hi
		for _, x := range at {
			if x > at[k] && x < e {
				e = x
			}
		}
		return e
	}
	if k := at[cInto]; k >= 0 {
		p.selectInto(st, k, hi)
		return
	}
	for _, k := range []int{cUnion, cIntersect, cExcept} {
		if at[k] >= 0 {
			p.otherRead(st, "combines queries with "+strings.ToUpper(p.toks[at[k]].Text), p.toks[at[k]].Pos)
			return
		}
	}
	if sc.reason != "" {
		p.otherRead(st, sc.reason, sc.pos)
		return
	}
	if at[cFrom] < 0 {
		p.otherRead(st, "reads no table", p.toks[lo].Pos)
		return
	}
	lk := &LookupInfo{}
	if reason, pos := p.singleTable(lk, at[cFrom]+1, end(cFrom)); reason != "" {
		p.otherRead(st, reason, pos)
		return
	}
	for _, k := range []int{cGroup, cHaving, cWindow, cOffset, cFor, cLock} {
		if at[k] >= 0 {
			t := p.toks[at[k]]
			reason := strings.ToUpper(t.Text)
			switch k {
			case cGroup:
				reason = "GROUP BY"
			case cFor, cLock:
				reason = "locking clause " + strings.ToUpper(strings.Join(strings.Fields(p.text(at[k], end(k))), " "))
			}
			p.otherRead(st, reason, t.Pos)
			return
		}
	}
	if k := at[cLimit]; k >= 0 {
		if e := end(cLimit); e != k+2 || p.toks[k+1].Text != "1" {
			p.otherRead(st, "LIMIT other than 1", p.toks[k].Pos)
			return
		}
		lk.Limit1 = true
	}
	if k := at[cFetch]; k >= 0 {
		// FETCH {FIRST|NEXT} [1] {ROW|ROWS} ONLY
		e, j := end(cFetch), k+2
		if p.tok(j, e).Text == "1" {
			j++
		}
		if j+2 != e || !p.toks[e-1].is("only") {
			p.otherRead(st, "FETCH other than 1 row", p.toks[k].Pos)
			return
		}
		lk.Limit1 = true
	}
	if at[cOrder] >= 0 {
		if !lk.Limit1 {
			p.otherRead(st, "ORDER BY without LIMIT 1", p.toks[at[cOrder]].Pos)
			return
		}
		lk.OrderBy = true
	}
	if at[cWhere] < 0 {
		p.otherRead(st, "no WHERE clause", p.toks[lo].Pos)
		return
	}
	wlo, whi := at[cWhere]+1, end(cWhere)
	w := p.where(wlo, whi)
	switch {
	case w.malformed || wlo >= whi:
		p.otherRead(st, "WHERE is malformed", p.toks[at[cWhere]].Pos)
		return
	case w.twice != "":
		p.otherRead(st, "column "+w.twice+" is pinned twice", w.twiceP)
		return
	case len(w.pinned) == 0 && w.in != "":
		p.otherRead(st, w.in+" is not a single-row equality", w.inPos)
		return
	case len(w.pinned) == 0:
		p.otherRead(st, "WHERE is not an equality conjunction", p.toks[at[cWhere]].Pos)
		return
	}
	for _, e := range w.pinned {
		if e.Table != "" && e.Table != lk.Table && e.Table != lk.Alias {
			p.otherRead(st, "refers to table "+e.Table+", which is not in FROM", e.Pos)
			return
		}
	}
	lk.Pinned = w.pinned
	lk.Columns = p.columns(projLo, first)
	for _, r := range w.extra {
		lk.Extra = append(lk.Extra, Span{Start: p.toks[r[0]].Pos, End: p.toks[r[1]-1].End(), Text: p.text(r[0], r[1]), Params: p.params(r[0], r[1])})
	}
	// ExtraParams: every parameter minus one occurrence per pinned one.
	lk.ExtraParams = p.extraParams(lo, hi, w.pinned)
	st.Kind, st.Lookup = Lookup, lk
}

// extraParams lists, sorted and without duplicates, the parameters of
// [lo, hi) other than the values of pinned equalities. It allocates only
// when there are some.
func (p *parser) extraParams(lo, hi int, pinned []Equality) []int {
	var out []int
next:
	for i := lo; i < hi; i++ {
		t := p.toks[i]
		if t.Kind != Param || t.Param == 0 {
			continue
		}
		for _, e := range pinned {
			if e.Value.Source == SourceParam && e.Value.Pos == t.Pos {
				continue next
			}
		}
		out = append(out, t.Param)
	}
	if out == nil {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Indexes into selectClauses.
const (
	cFrom = iota
	cWhere
	cGroup
	cHaving
	cWindow
	cOrder
	cLimit
	cOffset
	cFetch
	cFor
	cUnion
	cIntersect
	cExcept
	cInto
	cLock
)

// singleTable checks that FROM [lo, hi) names exactly one table and fills
// lk's names; otherwise it returns why not.
func (p *parser) singleTable(lk *LookupInfo, lo, hi int) (string, int) {
	i := lo
	if p.tok(i, hi).is("only") {
		i++
	}
	t := p.tok(i, hi)
	switch {
	case t.isPunct("("):
		return "reads from a subquery or a parenthesised join", t.Pos
	case t.is("lateral"):
		return "LATERAL", t.Pos
	}
	schema, table, next, ok := p.tableName(i, hi)
	if !ok {
		return "FROM is not a single table", t.Pos
	}
	if p.tok(next, hi).isPunct("(") {
		return "reads from function " + table + "()", t.Pos
	}
	if p.tok(next, hi).isPunct("*") {
		next++
	}
	alias, next := p.alias(next, hi)
	if p.tok(next, hi).isPunct("(") { // alias column list
		next = p.match(next, hi) + 1
	}
	if next < hi {
		n := p.toks[next]
		switch {
		case n.isPunct(",") || n.is("join") || n.is("inner") || n.is("left") || n.is("right") ||
			n.is("full") || n.is("cross") || n.is("natural") || n.is("straight_join"):
			return "joins two tables", n.Pos
		case n.is("tablesample"):
			return "TABLESAMPLE", n.Pos
		}
		return "FROM is not a single table", n.Pos
	}
	lk.Schema, lk.Table, lk.Alias = schema, table, alias
	return "", 0
}

// selectInto: SELECT ... INTO creates a table in PostgreSQL; in MySQL it
// assigns variables or writes a file.
func (p *parser) selectInto(st *Statement, k, hi int) {
	if p.d != Postgres {
		p.unknown(st, "SELECT INTO", p.toks[k].Pos)
		return
	}
	i := k + 1
	for p.tok(i, hi).is("temporary") || p.tok(i, hi).is("temp") || p.tok(i, hi).is("unlogged") || p.tok(i, hi).is("table") {
		i++
	}
	schema, table, _, _ := p.tableName(i, hi)
	st.Kind = Write
	st.Reason, st.ReasonPos = "SELECT INTO creates a table", p.toks[k].Pos
	st.Targets = append(st.Targets, Target{Op: OpDDL, Schema: schema, Table: table, ReturningAt: -1})
}
