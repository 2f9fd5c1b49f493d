package parser

// otherWrite classifies TRUNCATE, COPY, CALL, DO, LOAD DATA and DDL.
func (p *parser) otherWrite(st *Statement, lo, hi int) {
	st.Kind = Write
	kw := foldASCII(p.toks[lo].Text)
	add := func(op WriteOp, schema, table string) {
		st.Targets = append(st.Targets, Target{Op: op, Schema: schema, Table: table, ReturningAt: -1})
	}
	switch kw {
	case "truncate":
		i := p.skipWords(lo+1, hi, "table", "only")
		for i < hi {
			schema, table, next, ok := p.tableName(i, hi)
			if !ok {
				break
			}
			add(OpTruncate, schema, table)
			i = next
			if p.tok(i, hi).isPunct("*") {
				i++
			}
			if !p.tok(i, hi).isPunct(",") {
				break
			}
			i = p.skipWords(i+1, hi, "only")
		}
		if len(st.Targets) == 0 {
			add(OpTruncate, "", "")
		}
		if p.find(lo, hi, "cascade") < hi {
			add(OpTruncate, "", "") // referencing tables, unknown here
		}
	case "copy":
		if p.find(lo, hi, "from") == hi || p.tok(lo+1, hi).isPunct("(") {
			var sc exprScan
			p.scanExpr(st, lo+1, hi, &sc, nil)
			p.otherRead(st, "COPY TO", p.toks[lo].Pos)
			return
		}
		schema, table, _, _ := p.tableName(lo+1, hi)
		add(OpCopy, schema, table)
	case "load":
		// MySQL LOAD DATA ... INTO TABLE t; LOAD 'library' (PostgreSQL).
		if k := p.find(lo, hi, "table"); k < hi {
			schema, table, _, _ := p.tableName(k+1, hi)
			add(OpCopy, schema, table)
			return
		}
		st.Kind = Session
		st.Session = &SessionInfo{Op: SessionUtility, Variable: "load"}
	case "call":
		var sc exprScan
		p.scanExpr(st, lo+1, hi, &sc, nil)
		add(OpCall, "", "")
	case "do":
		add(OpCall, "", "")
	default:
		p.ddl(st, lo, hi)
	}
}

// ddl names the table a DDL statement changes when it is a table, view or
// index on a table; every other DDL gets a target with no table.
func (p *parser) ddl(st *Statement, lo, hi int) {
	add := func(schema, table string) {
		st.Targets = append(st.Targets, Target{Op: OpDDL, Schema: schema, Table: table, ReturningAt: -1})
	}
	kw := foldASCII(p.toks[lo].Text)
	i := p.skipWords(lo+1, hi, "or", "replace", "temp", "temporary", "unlogged", "global", "local", "unique", "materialized", "recursive")
	obj := p.tok(i, hi)
	switch {
	case kw == "comment" && obj.is("on"):
		if p.tok(i+1, hi).is("table") {
			schema, table, _, _ := p.tableName(i+2, hi)
			add(schema, table)
			return
		}
	case kw == "refresh" && obj.is("view"):
		schema, table, _, ok := p.tableName(p.skipWords(i+1, hi, "concurrently"), hi)
		if ok {
			add(schema, table)
			return
		}
	case (kw == "create" || kw == "alter" || kw == "drop") && (obj.is("table") || obj.is("view")):
		j := p.skipWords(i+1, hi, "if", "not", "exists", "only")
		for j < hi {
			schema, table, next, ok := p.tableName(j, hi)
			if !ok {
				break
			}
			add(schema, table)
			if kw != "drop" || !p.tok(next, hi).isPunct(",") {
				break
			}
			j = next + 1
		}
		if len(st.Targets) > 0 && (kw != "drop" || p.find(lo, hi, "cascade") == hi) {
			return
		}
	case (kw == "create" || kw == "alter") && (obj.is("index") || obj.is("policy") || obj.is("trigger") || obj.is("rule")):
		if on := p.find(i, hi, "on"); on < hi {
			schema, table, _, ok := p.tableName(p.skipWords(on+1, hi, "only"), hi)
			if ok {
				add(schema, table)
				return
			}
		}
	}
	add("", "")
}

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
