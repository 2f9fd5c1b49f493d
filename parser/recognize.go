package parser

import "strings"

// maxDepth bounds parenthesis nesting and recursion (WITH, EXPLAIN,
// parenthesised conditions), so hostile input cannot exhaust the stack.
const maxDepth = 200

// Parse classifies sql, which may hold several statements. It never fails
// and never panics: SQL it cannot understand is Unknown, with a Reason and
// the byte position it refers to.
func Parse(sql string, d Dialect) *Statement {
	p := &parser{src: sql, d: d}
	return p.parse()
}

// parser holds the significant tokens (no spaces or comments) of one input.
type parser struct {
	src    string
	d      Dialect
	toks   []Token
	badPos int // position of the error split reports

	fst   *Statement      // the statement fseen belongs to
	fseen map[string]bool // st.Functions as a set, once it is long

	// Scratch space, so that common statements allocate only their
	// results: conjuncts of WHERE, and items of a projection or VALUES
	// row (callers of splitTop that do not nest).
	cbuf  [16][2]int
	sbuf  [16][2]int
	parts [4][2]int
}

func (p *parser) parse() *Statement {
	st := &Statement{ReasonPos: -1}
	p.toks = make([]Token, 0, len(p.src)/5+4)
	l := lexer{src: p.src, d: p.d}
	depth := 0
	for {
		t, ok := l.next()
		if !ok {
			break
		}
		switch {
		case t.Kind == Punct && (t.Text == "(" || t.Text == "["):
			// Stop at once on hostile nesting rather than lex a megabyte of it.
			if depth++; depth > maxDepth {
				return p.unknownAt(st, "parentheses nested deeper than 200", t.Pos)
			}
			p.toks = append(p.toks, t)
		case t.Kind == Punct && (t.Text == ")" || t.Text == "]"):
			depth--
			p.toks = append(p.toks, t)
		case t.Kind == Invalid:
			return p.unknownAt(st, invalidReason(t), t.Pos)
		case t.Kind == Comment && p.d == MySQL && strings.HasPrefix(t.Text, "/*!"):
			return p.unknownAt(st, "MySQL executable comment /*! runs hidden SQL", t.Pos)
		case !t.Trivia():
			p.toks = append(p.toks, t)
		}
	}
	parts, bad := p.split()
	if bad != "" {
		return p.unknownAt(st, bad, p.badPos)
	}
	switch len(parts) {
	case 0:
		st.Reason, st.ReasonPos = "empty statement", 0
		st.End = len(p.src)
		return st
	case 1:
		p.stmt(st, parts[0][0], parts[0][1])
		return st
	}
	st.Kind = Multi
	st.Start, st.End = p.toks[parts[0][0]].Pos, p.toks[parts[len(parts)-1][1]-1].End()
	st.Parts = make([]Statement, len(parts))
	for i, r := range parts {
		ps := &st.Parts[i]
		ps.ReasonPos = -1
		p.stmt(ps, r[0], r[1])
		if ps.MaxParam > st.MaxParam {
			st.MaxParam = ps.MaxParam
		}
		for _, f := range ps.Functions {
			p.addFunc(st, f)
		}
	}
	st.Reason = "several statements"
	return st
}

func (p *parser) unknownAt(st *Statement, reason string, pos int) *Statement {
	st.Kind, st.Reason, st.ReasonPos = Unknown, reason, pos
	st.End = len(p.src)
	return st
}

func invalidReason(t Token) string {
	switch {
	case strings.HasPrefix(t.Text, "/*"):
		return "unterminated /* comment"
	case strings.HasPrefix(t.Text, "$"):
		if len(t.Text) > 1 && isDigit(t.Text[1]) {
			return "$N placeholder outside PostgreSQL"
		}
		return "unterminated dollar-quoted string"
	case strings.ContainsAny(t.Text[:1], `'"`), len(t.Text) > 1 && strings.ContainsAny(t.Text[:2], `'"`):
		return "unterminated quoted string or identifier"
	case t.Text[0] == '`' || t.Text[0] == '[':
		return "unterminated quoted identifier"
	}
	return "unexpected byte " + quoteByte(t.Text[0])
}

func quoteByte(c byte) string {
	const hex = "0123456789abcdef"
	if c >= ' ' && c < 0x7f {
		return "'" + string(c) + "'"
	}
	return "0x" + string([]byte{hex[c>>4], hex[c&15]})
}

// split cuts the tokens into statements at top-level semicolons. A ';'
// inside parentheses, or inside a BEGIN ... END body of a CREATE statement
// (PostgreSQL's BEGIN ATOMIC, SQLite triggers, MySQL routines), does not
// end a statement. It reports unbalanced or too deeply nested parentheses.
func (p *parser) split() ([][2]int, string) {
	parts := p.parts[:0]
	depth, block, start := 0, 0, 0
	for i, t := range p.toks {
		switch {
		case t.isPunct("(") || t.isPunct("["):
			depth++
			if depth > maxDepth {
				return nil, p.setBad(t.Pos, "parentheses nested deeper than 200")
			}
		case t.isPunct(")") || t.isPunct("]"):
			depth--
			if depth < 0 {
				return nil, p.setBad(t.Pos, "unbalanced parentheses: unexpected "+t.Text)
			}
		case t.Kind == Ident && i > start && p.toks[start].is("create"):
			// Bodies nest with CASE ... END inside them.
			if t.is("begin") || (block > 0 && t.is("case")) {
				block++
			} else if block > 0 && t.is("end") {
				block--
			}
		case t.isPunct(";") && depth == 0 && block == 0:
			if i > start {
				parts = append(parts, [2]int{start, i})
			}
			start = i + 1
		}
	}
	if depth > 0 {
		return nil, p.setBad(len(p.src), "unbalanced parentheses: missing )")
	}
	if block > 0 {
		return nil, p.setBad(len(p.src), "BEGIN without END")
	}
	if start < len(p.toks) {
		parts = append(parts, [2]int{start, len(p.toks)})
	}
	return parts, ""
}

// badPos carries the position of a split error to Parse.
func (p *parser) setBad(pos int, reason string) string {
	p.badPos = pos
	return reason
}
