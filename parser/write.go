package parser

// writeStmt classifies INSERT, REPLACE, UPDATE, DELETE and MERGE [lo, hi)
// and appends its target to st.Targets. inCTE marks a data-modifying WITH
// query, whose statement cannot take an appended RETURNING.
func (p *parser) writeStmt(st *Statement, lo, hi int, inCTE bool) {
	st.Kind = Write
	tg := Target{InCTE: inCTE, ReturningAt: -1}
	var ok bool
	switch kw := foldASCII(p.toks[lo].Text); kw {
	case "insert", "replace":
		ok = p.insert(st, &tg, lo, hi)
	case "update":
		ok = p.update(st, &tg, lo, hi)
	case "delete":
		ok = p.delete(st, &tg, lo, hi)
	case "merge":
		ok = p.merge(st, &tg, lo, hi)
	}
	if !ok {
		if st.Reason == "" {
			p.unknown(st, "cannot read the target of "+p.toks[lo].Text, p.toks[lo].Pos)
		}
		st.Kind = Unknown
		return
	}
	if tg.ReturningAt >= 0 && (inCTE || p.d == MySQL) {
		tg.ReturningAt = -1
	}
	st.Targets = append(st.Targets, tg)
}

// skipWords skips any of the given keywords at i.
func (p *parser) skipWords(i, hi int, words ...string) int {
	for i < hi {
		found := false
		for _, w := range words {
			if p.toks[i].is(w) {
				found = true
				break
			}
		}
		if !found {
			return i
		}
		i++
	}
	return i
}

// target reads "[ONLY] name [*] [[AS] alias]" at i into tg.
func (p *parser) target(tg *Target, i, hi int) (int, bool) {
	if p.tok(i, hi).is("only") {
		i++
	}
	schema, table, next, ok := p.tableName(i, hi)
	if !ok {
		return i, false
	}
	tg.Schema, tg.Table = schema, table
	if p.tok(next, hi).isPunct("*") {
		next++
	}
	tg.Alias, next = p.alias(next, hi)
	return next, true
}

// returning fills tg's RETURNING list, or where one can be appended.
func (p *parser) returning(st *Statement, tg *Target, k, hi int) {
	if k < hi {
		tg.Returning, tg.ReturningText = p.columns(k+1, hi), p.text(k+1, hi)
		var sc exprScan
		p.scanExpr(st, k+1, hi, &sc, nil)
	}
	tg.ReturningAt = p.endPos(hi)
}

// whereClause analyses WHERE [k, e) of an UPDATE or DELETE.
func (p *parser) whereClause(st *Statement, tg *Target, k, e int) {
	if k >= e {
		return
	}
	tg.HasWhere = true
	lo := k + 1
	tg.Where = Span{Start: p.tok(lo, e).Pos, End: p.endPos(e), Text: p.text(lo, e), Params: p.params(lo, e)}
	var sc exprScan
	p.scanExpr(st, lo, e, &sc, nil)
	if p.tok(lo, e).is("current") && p.tok(lo+1, e).is("of") {
		return
	}
	w := p.where(lo, e)
	tg.PureKeyWhere = len(w.extra) == 0 && w.twice == "" && len(w.pinned) > 0 && !w.malformed
	// Keep only equalities on the target's own columns: with USING or FROM
	// an unqualified column may belong to another table.
	for _, eq := range w.pinned {
		if eq.Table == "" && len(tg.From) == 0 || eq.Table != "" && (eq.Table == tg.Table || eq.Table == tg.Alias) {
			tg.Pinned = append(tg.Pinned, eq)
		} else {
			tg.PureKeyWhere = false
		}
	}
}

// assignments parses "a = x, (b, c) = (y, z)" in [lo, hi).
func (p *parser) assignments(st *Statement, lo, hi int) []Assignment {
	var buf [16][2]int
	items := p.splitTop(lo, hi, buf[:0])
	out := make([]Assignment, 0, len(items))
	for _, r := range items {
		eq := r[0]
		for eq < r[1] && !p.toks[eq].isPunct("=") {
			if p.toks[eq].isPunct("(") || p.toks[eq].isPunct("[") {
				eq = p.match(eq, r[1])
			}
			eq++
		}
		lhsLo, lhsHi, rhsLo, rhsHi := r[0], eq, eq+1, r[1]
		if p.tok(lhsLo, lhsHi).isPunct("(") {
			// (a, b) = (x, y) or (a, b) = ROW(x, y) or (a, b) = (SELECT ...)
			var cb, vb [8][2]int
			cols := p.splitTop(lhsLo+1, lhsHi-1, cb[:0])
			if p.tok(rhsLo, rhsHi).is("row") {
				rhsLo++
			}
			var vals [][2]int
			if p.tok(rhsLo, rhsHi).isPunct("(") && p.match(rhsLo, rhsHi) == rhsHi-1 && !p.tok(rhsLo+1, rhsHi).is("select") {
				vals = p.splitTop(rhsLo+1, rhsHi-1, vb[:0])
			}
			for k, c := range cols {
				a := Assignment{Column: p.assignName(c[0], c[1])}
				if len(vals) == len(cols) {
					a.Value = p.value(st, vals[k][0], vals[k][1])
				} else {
					a.Value = p.value(st, rhsLo, rhsHi)
				}
				out = append(out, a)
			}
			continue
		}
		out = append(out, Assignment{Column: p.assignName(lhsLo, lhsHi), Value: p.value(st, rhsLo, rhsHi)})
	}
	return out
}

// assignName names the target of an assignment: "col", "col.field" or
// "col[]"; a "t." qualifier (MySQL, SQLite upserts) is dropped.
func (p *parser) assignName(lo, hi int) string {
	if lo >= hi {
		return ""
	}
	if hi-lo == 3 && p.toks[lo+1].isPunct(".") && p.d != Postgres {
		return p.toks[lo+2].Name()
	}
	name := p.toks[lo].Name()
	switch n := p.tok(lo+1, hi); {
	case n.isPunct("."):
		return name + "." + p.tok(lo+2, hi).Name()
	case n.isPunct("["):
		return name + "[]"
	}
	return name
}

func (p *parser) update(st *Statement, tg *Target, lo, hi int) bool {
	tg.Op = OpUpdate
	i := p.skipWords(lo+1, hi, "low_priority", "ignore")
	if p.tok(i, hi).is("or") { // SQLite UPDATE OR REPLACE
		i += 2
	}
	i, ok := p.target(tg, i, hi)
	if !ok {
		return false
	}
	if !p.tok(i, hi).is("set") {
		p.unknown(st, "multi-table UPDATE", p.tok(i, hi).Pos)
		return false
	}
	set := i
	from := p.find(set, hi, "from")
	where := p.find(set, hi, "where")
	ret := p.find(set, hi, "returning")
	tail := p.find(set, hi, "order", "limit") // MySQL, SQLite
	setEnd := min(from, where, ret, tail)
	tg.Set = p.assignments(st, set+1, setEnd)
	if from < hi {
		tg.From = p.tableRefs(from+1, min(where, ret, tail))
		var sc exprScan
		p.scanExpr(st, from+1, min(where, ret, tail), &sc, nil)
	}
	p.whereClause(st, tg, where, min(ret, tail))
	if tail < hi && ret == hi {
		var sc exprScan
		p.scanExpr(st, tail, hi, &sc, nil)
	}
	p.returning(st, tg, ret, hi)
	return true
}

func (p *parser) delete(st *Statement, tg *Target, lo, hi int) bool {
	tg.Op = OpDelete
	i := p.skipWords(lo+1, hi, "low_priority", "quick", "ignore")
	if !p.tok(i, hi).is("from") {
		p.unknown(st, "multi-table DELETE", p.tok(i, hi).Pos)
		return false
	}
	i, ok := p.target(tg, i+1, hi)
	if !ok {
		return false
	}
	if n := p.tok(i, hi); n.isPunct(",") || n.is("join") {
		p.unknown(st, "multi-table DELETE", n.Pos)
		return false
	}
	using := p.find(i, hi, "using")
	where := p.find(i, hi, "where")
	ret := p.find(i, hi, "returning")
	tail := p.find(i, hi, "order", "limit")
	if using < hi {
		tg.From = p.tableRefs(using+1, min(where, ret, tail))
		var sc exprScan
		p.scanExpr(st, using+1, min(where, ret, tail), &sc, nil)
	}
	p.whereClause(st, tg, where, min(ret, tail))
	p.returning(st, tg, ret, hi)
	return true
}

func (p *parser) merge(st *Statement, tg *Target, lo, hi int) bool {
	tg.Op = OpMerge
	i := lo + 1
	if p.tok(i, hi).is("into") {
		i++
	}
	i, ok := p.target(tg, i, hi)
	if !ok {
		return false
	}
	if p.tok(i, hi).is("using") {
		on := p.find(i, hi, "on")
		tg.From = p.tableRefs(i+1, on)
	}
	var sc exprScan
	p.scanExpr(st, i, hi, &sc, nil)
	ret := p.find(i, hi, "returning")
	p.returning(st, tg, ret, hi)
	return true
}

// tableRefs lists the plain tables named in a FROM or USING list (joins
// included); subqueries and functions are skipped.
func (p *parser) tableRefs(lo, hi int) []TableRef {
	var out []TableRef
	expect := true
	for i := lo; i < hi; i++ {
		t := p.toks[i]
		switch {
		case t.isPunct("("):
			i = p.match(i, hi)
			expect = false
		case t.isPunct(",") || t.is("join"):
			expect = true
		case t.is("on") || t.is("using"):
			expect = false
		case expect && !t.is("only") && !t.is("lateral"):
			schema, table, next, ok := p.tableName(i, hi)
			if !ok {
				expect = false
				continue
			}
			if p.tok(next, hi).isPunct("(") { // a function
				expect = false
				continue
			}
			alias, n2 := p.alias(next, hi)
			out = append(out, TableRef{Schema: schema, Table: table, Alias: alias})
			i, expect = n2-1, false
		}
	}
	return out
}

func (p *parser) insert(st *Statement, tg *Target, lo, hi int) bool {
	tg.Op = OpInsert
	i := lo + 1
	if p.toks[lo].is("replace") {
		tg.Op, tg.Replace = OpUpsert, true
	}
	for ; i < hi; i++ {
		t := p.toks[i]
		switch {
		case t.is("low_priority") || t.is("delayed") || t.is("high_priority"):
		case t.is("ignore"):
			tg.DoNothing = true
		case t.is("or") && p.d == SQLite:
			i++
			switch a := p.tok(i, hi); {
			case a.is("replace"):
				tg.Replace = true
			case a.is("ignore"):
				tg.DoNothing = true
			}
		default:
			goto into
		}
	}
into:
	if p.tok(i, hi).is("into") {
		i++
	}
	i, ok := p.target(tg, i, hi)
	if !ok {
		return false
	}
	if p.tok(i, hi).isPunct("(") {
		end := p.match(i, hi)
		var buf [16][2]int
		for _, c := range p.splitTop(i+1, end, buf[:0]) {
			tg.Columns = append(tg.Columns, p.assignName(c[0], c[1]))
		}
		i = end + 1
	}
	if p.tok(i, hi).is("overriding") {
		i += 3
	}
	ret := p.find(i, hi, "returning")
	conflict := hi
	for j := p.find(i, hi, "on"); j < hi; j = p.find(j+1, hi, "on") {
		if n := p.tok(j+1, hi); n.is("conflict") || n.is("duplicate") {
			conflict = j
			break
		}
	}
	body := min(ret, conflict)
	// MySQL: VALUES (...) AS new ON DUPLICATE KEY UPDATE
	if k := p.find(i, body, "as"); k < body && p.d == MySQL && p.tok(i, hi).is("values") {
		body = k
	}
	switch t := p.tok(i, hi); {
	case t.is("default") && p.tok(i+1, hi).is("values"):
		tg.Rows = [][]Value{nil}
	case t.is("values") || t.is("value"):
		for j := i + 1; j < body; j++ {
			if p.toks[j].is("row") {
				continue
			}
			if !p.toks[j].isPunct("(") {
				break
			}
			end := p.match(j, body)
			vals := p.splitTop(j+1, end, p.sbuf[:0])
			row := make([]Value, len(vals))
			for k, v := range vals {
				row[k] = p.value(st, v[0], v[1])
			}
			tg.Rows = append(tg.Rows, row)
			j = end
			if !p.tok(j+1, body).isPunct(",") {
				break
			}
			j++
		}
		if len(tg.Rows) > 1 {
			tg.Op = OpInsertMulti
		}
	case t.is("set") && p.d == MySQL:
		row := []Value{}
		for _, a := range p.assignments(st, i+1, body) {
			tg.Columns = append(tg.Columns, a.Column)
			row = append(row, a.Value)
		}
		tg.Rows = [][]Value{row}
	case t.is("select") || t.is("with") || t.is("table") || t.isPunct("(") || t.is("values"):
		tg.Op = OpInsertSelect
		var sc exprScan
		p.scanExpr(st, i, body, &sc, nil)
	default:
		p.unknown(st, "INSERT without VALUES or SELECT", t.Pos)
		return false
	}
	if conflict < hi {
		p.onConflict(st, tg, conflict, ret)
	}
	if tg.Replace || tg.DoNothing {
		tg.Op = OpUpsert
	}
	p.returning(st, tg, ret, hi)
	return true
}

// onConflict reads ON CONFLICT [(cols) [WHERE ...] | ON CONSTRAINT c]
// DO NOTHING | DO UPDATE SET ... [WHERE ...], and MySQL's ON DUPLICATE KEY
// UPDATE ...
func (p *parser) onConflict(st *Statement, tg *Target, k, hi int) {
	tg.Op = OpUpsert
	i := k + 2
	if p.toks[k+1].is("duplicate") {
		tg.Set = p.assignments(st, p.skipWords(i, hi, "key", "update"), hi)
		return
	}
	if p.tok(i, hi).isPunct("(") {
		end := p.match(i, hi)
		var buf [8][2]int
		for _, c := range p.splitTop(i+1, end, buf[:0]) {
			if c[1]-c[0] == 1 {
				tg.Conflict = append(tg.Conflict, p.toks[c[0]].Name())
			} else {
				tg.Conflict = append(tg.Conflict, p.text(c[0], c[1]))
				var sc exprScan
				p.scanExpr(st, c[0], c[1], &sc, nil)
			}
		}
		i = end + 1
	} else if p.tok(i, hi).is("on") && p.tok(i+1, hi).is("constraint") {
		tg.ConflictConstraint = p.tok(i+2, hi).Name()
		i += 3
	}
	do := p.find(i, hi, "do")
	switch {
	case p.tok(do+1, hi).is("nothing"):
		tg.DoNothing = true
	case p.tok(do+1, hi).is("update"):
		set := do + 3
		where := p.find(set, hi, "where")
		tg.Set = p.assignments(st, set, where)
		if where < hi {
			var sc exprScan
			p.scanExpr(st, where+1, hi, &sc, nil)
		}
	}
}
