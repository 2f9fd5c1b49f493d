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
