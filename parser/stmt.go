package parser

import "strings"

// tok returns the i-th significant token, or the zero Token (which matches
// no keyword or punctuation) past hi.
func (p *parser) tok(i, hi int) Token {
	if i >= 0 && i < hi {
		return p.toks[i]
	}
	return Token{Pos: p.endPos(hi)}
}

// endPos is the offset just after the last token before hi.
func (p *parser) endPos(hi int) int {
	if hi > 0 && hi <= len(p.toks) {
		return p.toks[hi-1].End()
	}
	return 0
}

// text returns the input covering tokens [lo, hi).
func (p *parser) text(lo, hi int) string {
	if lo >= hi {
		return ""
	}
	return p.src[p.toks[lo].Pos:p.toks[hi-1].End()]
}

// match returns the index of the ")" or "]" closing the bracket at i, or hi.
func (p *parser) match(i, hi int) int {
	depth := 0
	for j := i; j < hi; j++ {
		switch t := p.toks[j]; {
		case t.isPunct("(") || t.isPunct("["):
			depth++
		case t.isPunct(")") || t.isPunct("]"):
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return hi
}

// find returns the index of the first top-level token in [i, hi) that is
// one of the keywords kws, or hi.
func (p *parser) find(i, hi int, kws ...string) int {
	depth := 0
	for j := i; j < hi; j++ {
		t := p.toks[j]
		switch {
		case t.isPunct("(") || t.isPunct("["):
			depth++
		case t.isPunct(")") || t.isPunct("]"):
			depth--
		case depth == 0 && t.Kind == Ident:
			for _, kw := range kws {
				if t.is(kw) {
					return j
				}
			}
		}
	}
	return hi
}

// stmt classifies the statement made of tokens [lo, hi).
func (p *parser) stmt(st *Statement, lo, hi int) {
	st.Start, st.End = p.toks[lo].Pos, p.toks[hi-1].End()
	p.sqlcName(st, lo)
	bad, badPos := "", 0
	for i := lo; i < hi; i++ {
		t := p.toks[i]
		if t.Kind != Param {
			continue
		}
		st.MaxParam = max(st.MaxParam, t.Param)
		switch {
		case bad != "":
		case t.Param > MaxParam:
			bad, badPos = "parameter index "+clip(t.Text)+" exceeds 65535", t.Pos
		case t.Param == 0 && p.d == MySQL && t.Text[0] == '@':
			// a MySQL user or system variable, not a parameter
		case t.Param == 0 && t.Text[0] == '$' && p.d == Postgres:
			bad, badPos = "parameter $0: indices start at 1", t.Pos
		case t.Param == 0:
			bad, badPos = "named parameter "+t.Text+" (the driver binds by position)", t.Pos
		}
	}
	if bad != "" {
		p.unknown(st, bad, badPos)
		return
	}
	p.dispatch(st, lo, hi, 0)
}

// nestedDML returns the position of the first data-modifying statement
// inside parentheses in [lo, hi), or -1. PostgreSQL rejects those outside
// the bodies of a top-level WITH (which withStmt reads itself), but the
// recognizer must never mistake one for a read, nor miss a target.
func (p *parser) nestedDML(lo, hi int) int {
	for i := lo; i < hi; i++ {
		if p.toks[i].isPunct("(") && p.isDML(i+1, hi) {
			return p.toks[i+1].Pos
		}
	}
	return -1
}

func (p *parser) unknown(st *Statement, reason string, pos int) {
	st.Kind, st.Reason, st.ReasonPos = Unknown, reason, pos
	st.Lookup, st.Targets, st.Tx, st.Session, st.CTEReads = nil, nil, nil, nil, false
}

func (p *parser) otherRead(st *Statement, reason string, pos int) {
	st.Kind, st.Reason, st.ReasonPos = OtherRead, reason, pos
	st.Lookup = nil
}

// sqlcName reads a sqlc "-- name: GetAuthor :one" comment among the
// comments just before the statement's first token.
func (p *parser) sqlcName(st *Statement, lo int) {
	from := 0
	if lo > 0 {
		from = p.toks[lo-1].End()
	}
	pre := p.src[from:p.toks[lo].Pos]
	for pre != "" {
		i := strings.Index(pre, "--")
		if i < 0 {
			return
		}
		line := pre[i+2:]
		if j := strings.IndexAny(line, "\r\n"); j >= 0 {
			pre, line = line[j:], line[:j]
		} else {
			pre = ""
		}
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "name:")
		if !ok {
			continue
		}
		name, cmd, _ := strings.Cut(strings.TrimSpace(rest), " ")
		st.Name = name
		if cmd = strings.TrimSpace(cmd); strings.HasPrefix(cmd, ":") {
			st.Cmd, _, _ = strings.Cut(cmd, " ")
		}
		return
	}
}

// dispatch classifies [lo, hi) by its first keyword. depth counts the
// nesting of EXPLAIN and WITH bodies.
func (p *parser) dispatch(st *Statement, lo, hi, depth int) {
	if lo >= hi {
		p.unknown(st, "missing statement", p.endPos(hi))
		return
	}
	if depth > maxDepth {
		p.unknown(st, "statement nested too deeply", p.toks[lo].Pos)
		return
	}
	t := p.toks[lo]
	// WITH bodies are checked one by one in withStmt; EXPLAIN and PREPARE
	// dispatch their statement; DDL bodies (rules, functions) run later
	// and their targets are unknown anyway.
	if !t.is("with") && !t.is("explain") && !t.is("prepare") && !t.is("create") && !t.is("alter") && !t.is("comment") && !t.is("do") {
		if pos := p.nestedDML(lo, hi); pos >= 0 {
			p.unknown(st, "data-modifying statement inside parentheses", pos)
			return
		}
	}
	if t.isPunct("(") {
		p.parenQuery(st, lo, hi)
		return
	}
	if t.Kind != Ident {
		p.unknown(st, "statement starts with "+t.Kind.String()+" "+clip(t.Text), t.Pos)
		return
	}
	switch kw := foldASCII(t.Text); kw {
	case "select":
		p.selectStmt(st, lo, hi)
	case "with":
		p.withStmt(st, lo, hi, depth)
	case "values", "table":
		p.parenQuery(st, lo, hi)
	case "insert", "update", "delete", "merge":
		p.writeStmt(st, lo, hi, false)
	case "replace":
		if p.d == Postgres {
			p.unknown(st, "REPLACE is not a PostgreSQL statement", t.Pos)
			return
		}
		p.writeStmt(st, lo, hi, false)
	case "truncate", "copy", "call", "do", "create", "alter", "drop", "comment",
		"grant", "revoke", "refresh", "reindex", "security", "import", "reassign",
		"rename", "load", "optimize", "repair":
		p.otherWrite(st, lo, hi)
	case "begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release":
		p.txStmt(st, lo, hi)
	case "prepare":
		if p.tok(lo+1, hi).is("transaction") {
			p.txStmt(st, lo, hi)
			return
		}
		p.sessionStmt(st, lo, hi)
	case "set":
		p.setStmt(st, lo, hi)
	case "explain":
		p.explain(st, lo, hi, depth)
	case "reset", "show", "discard", "listen", "unlisten", "notify", "deallocate",
		"vacuum", "analyze", "analyse", "checkpoint", "lock", "pragma", "use",
		"describe", "desc", "attach", "detach", "cluster", "flush", "unlock":
		p.sessionStmt(st, lo, hi)
	case "execute", "exec":
		p.unknown(st, "EXECUTE runs a prepared statement the parser cannot see", t.Pos)
	default:
		p.unknown(st, "statement "+strings.ToUpper(kw)+" is not recognised", t.Pos)
	}
}

// clip shortens text quoted in a reason.
func clip(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

// parenQuery handles VALUES, TABLE and parenthesised queries: reads of
// several rows at best.
func (p *parser) parenQuery(st *Statement, lo, hi int) {
	var sc exprScan
	p.scanExpr(st, lo, hi, &sc, nil)
	t := p.toks[lo]
	reason := "parenthesised query"
	switch {
	case t.is("values"):
		reason = "VALUES list reads no table"
	case t.is("table"):
		reason = "TABLE reads every row"
	}
	p.otherRead(st, reason, t.Pos)
}

// explain: plain EXPLAIN runs nothing (Session); EXPLAIN ANALYZE runs the
// statement, so it is classified as that statement.
func (p *parser) explain(st *Statement, lo, hi, depth int) {
	i, analyze := lo+1, false
	if p.tok(i, hi).isPunct("(") {
		end := p.match(i, hi)
		for j := i + 1; j < end; j++ {
			if p.toks[j].is("analyze") || p.toks[j].is("analyse") {
				v := p.tok(j+1, hi)
				analyze = !(v.is("false") || v.is("off") || v.Text == "0")
			}
		}
		i = end + 1
	}
	for ; i < hi; i++ {
		t := p.toks[i]
		switch {
		case t.is("analyze") || t.is("analyse"):
			analyze = true
		case t.is("verbose") || t.is("extended") || t.is("partitions") || t.is("query") || t.is("plan"):
		case t.is("format") && p.tok(i+1, hi).isPunct("="):
			i += 2
		default:
			goto body
		}
	}
body:
	if i >= hi {
		st.Kind = Session
		st.Session = &SessionInfo{Op: SessionExplain}
		return
	}
	if !analyze || p.d == SQLite {
		st.Kind = Session
		st.Session = &SessionInfo{Op: SessionExplain, Value: p.text(i, hi)}
		return
	}
	p.dispatch(st, i, hi, depth+1)
	st.Explained = true
	if st.Kind == Lookup {
		p.otherRead(st, "EXPLAIN ANALYZE returns a plan, not rows", p.toks[lo].Pos)
	}
}

// addFunc records a function name once. Past a few names it keeps a set,
// so a statement calling thousands of functions stays linear.
func (p *parser) addFunc(st *Statement, name string) {
	if len(st.Functions) < 32 {
		st.Functions = appendUnique(st.Functions, name)
		return
	}
	if p.fst != st {
		p.fst, p.fseen = st, make(map[string]bool, 64)
		for _, f := range st.Functions {
			p.fseen[f] = true
		}
	}
	if !p.fseen[name] {
		p.fseen[name] = true
		st.Functions = append(st.Functions, name)
	}
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
