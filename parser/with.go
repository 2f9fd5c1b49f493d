package parser

// withStmt classifies WITH [RECURSIVE] name AS (...), ... main. Every
// data-modifying WITH query is a write target, as is a data-modifying main
// statement; a WITH of reads only is an OtherRead.
func (p *parser) withStmt(st *Statement, lo, hi, depth int) {
	i := lo + 1
	if p.tok(i, hi).is("recursive") {
		i++
	}
	for i < hi {
		// name [(cols)] AS [NOT] [MATERIALIZED] (body)
		i++
		if p.tok(i, hi).isPunct("(") {
			i = p.match(i, hi) + 1
		}
		if !p.tok(i, hi).is("as") {
			p.unknown(st, "cannot read WITH query", p.tok(i, hi).Pos)
			return
		}
		i = p.skipWords(i+1, hi, "not", "materialized")
		if !p.tok(i, hi).isPunct("(") {
			p.unknown(st, "cannot read WITH query", p.tok(i, hi).Pos)
			return
		}
		end := p.match(i, hi)
		if end >= hi || end == i+1 {
			p.unknown(st, "cannot read WITH query", p.tok(i, hi).Pos)
			return
		}
		if pos := p.nestedDML(i+1, end); pos >= 0 {
			p.unknown(st, "data-modifying statement inside parentheses", pos)
			return
		}
		if isWriteStart(p.tok(i+1, end)) {
			var sub Statement
			p.writeStmt(&sub, i+1, end, true)
			if sub.Kind != Write {
				p.unknown(st, sub.Reason, sub.ReasonPos)
				return
			}
			st.Targets = append(st.Targets, sub.Targets...)
			for _, f := range sub.Functions {
				p.addFunc(st, f)
			}
		} else {
			var sc exprScan
			p.scanExpr(st, i+1, end, &sc, nil)
			st.CTEReads = true
		}
		i = end + 1
		// SEARCH / CYCLE clauses of recursive queries.
		for i < hi && !p.toks[i].isPunct(",") && !p.toks[i].is("select") && !isWriteStart(p.toks[i]) && !p.toks[i].isPunct("(") && !p.toks[i].is("values") && !p.toks[i].is("table") {
			i++
		}
		if !p.tok(i, hi).isPunct(",") {
			break
		}
		i++
	}
	if i >= hi {
		p.unknown(st, "WITH without a main statement", p.endPos(hi))
		return
	}
	targets, reads := st.Targets, st.CTEReads
	st.Targets = nil
	p.dispatch(st, i, hi, depth+1)
	if st.Kind == Unknown {
		return
	}
	if st.Kind == Write {
		st.Targets = append(targets, st.Targets...)
		st.CTEReads = st.CTEReads || reads
		return
	}
	if len(targets) > 0 {
		st.Kind, st.Targets, st.Lookup, st.CTEReads = Write, targets, nil, true
		st.Reason, st.ReasonPos = "", -1
		return
	}
	if st.Kind == Lookup || st.Kind == OtherRead {
		p.otherRead(st, "uses a WITH query", p.toks[lo].Pos)
		st.CTEReads = false
		return
	}
	p.unknown(st, "WITH before a statement that is not a query", p.toks[i].Pos)
}

func isWriteStart(t Token) bool {
	return t.is("insert") || t.is("update") || t.is("delete") || t.is("merge")
}
