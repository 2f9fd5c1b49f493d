package parser

import "strings"

// exprScan is what scanExpr learns about an expression: the first thing
// that keeps it out of the cache.
type exprScan struct {
	reason string
	pos    int
}

func (s *exprScan) fail(reason string, pos int) {
	if s.reason == "" {
		s.reason, s.pos = reason, pos
	}
}

// scanExpr walks the tokens [lo, hi) of expressions, records every
// function called in st.Functions and every parameter in *params (if not
// nil), and notes in sc the first function, operator, cast, subquery or
// session-dependent keyword that is not on the immutable allowlist.
func (p *parser) scanExpr(st *Statement, lo, hi int, sc *exprScan, params *[]int) {
	for i := lo; i < hi; i++ {
		t := p.toks[i]
		switch t.Kind {
		case Param:
			if t.Param == 0 { // MySQL @variable
				sc.fail("uses session variable "+t.Text, t.Pos)
			} else if params != nil {
				*params = append(*params, t.Param)
			}
		case Punct:
			if t.Text != "(" {
				continue
			}
			if n := p.tok(i+1, hi); n.is("select") || n.is("with") || n.is("values") || n.is("table") {
				sc.fail("subquery", n.Pos)
			}
		case Op:
			if t.Text == "::" {
				i = p.scanCast(i, hi, sc)
				continue
			}
			if t.Text == ":=" {
				sc.fail("assigns a session variable", t.Pos)
				continue
			}
			if allowedOps[t.Text]&(1<<p.d) == 0 {
				if t.Text == "||" {
					sc.fail("uses ||, which is STABLE for non-text values", t.Pos)
				} else {
					sc.fail("uses operator "+t.Text+", which is not on the immutable allowlist", t.Pos)
				}
			}
		case Ident, QuotedIdent:
			i = p.scanIdent(st, i, hi, sc)
		}
	}
}

// scanIdent handles a name in an expression: a function call (quoted or
// schema-qualified too), a session keyword, a typed literal, OVER, or a
// column. It returns the index of the last token it consumed.
func (p *parser) scanIdent(st *Statement, i, hi int, sc *exprScan) int {
	t := p.toks[i]
	prev := p.tok(i-1, hi)
	if prev.isPunct(".") {
		return i
	}
	// Qualified name: schema.func(...) or table.column.
	j := i
	for p.tok(j+1, hi).isPunct(".") && isName(p.tok(j+2, hi)) {
		j += 2
	}
	next := p.tok(j+1, hi)
	if next.isPunct("(") {
		if j == i && t.Kind == Ident && lookupFold(notCalls, t.Text) {
			return i
		}
		// "AS x(a, b)" is an alias with a column list. Without AS ("t x(a)")
		// it is taken for a call: a wrong guess costs a cache miss, while
		// taking "AT TIME ZONE current_setting(...)" for an alias would
		// cache a session-dependent row.
		if prev.is("as") {
			return j
		}
		if j == i && t.is("cast") {
			return p.scanCastCall(i, hi, sc)
		}
		name := p.funcName(i, j)
		p.addFunc(st, name)
		switch n := p.tok(p.match(j+1, hi)+1, hi); {
		case n.is("over"):
			sc.fail("window function "+name+"()", t.Pos)
		case n.is("filter") || n.is("within"):
			sc.fail("aggregate "+name+"()", t.Pos)
		case prev.is("tablesample"):
			sc.fail("TABLESAMPLE", prev.Pos)
		}
		p.classifyCall(name, t.Pos, sc)
		return j
	}
	if j > i || t.Kind == QuotedIdent {
		return j
	}
	switch {
	case t.is("at") && next.is("local"):
		sc.fail("AT LOCAL depends on the session's TimeZone", t.Pos)
	case t.is("over"):
		sc.fail("window function", t.Pos)
	case lookupFold(sessionKeywords, t.Text)&(1<<p.d) != 0:
		sc.fail("uses "+foldASCII(t.Text)+", which depends on the session", t.Pos)
	case next.Kind == String && lookupFold(castTypes, t.Text) != 0:
		// Typed literal: date '2024-01-01', interval '1 day'.
		p.checkCast(foldASCII(t.Text), true, t.Pos, sc)
	}
	return i
}

// funcName renders the function name made of tokens i, i+2, ..., j
// (names separated by dots) as "name" or "schema.name", folded unless
// quoted.
func (p *parser) funcName(i, j int) string {
	if i == j {
		return p.toks[i].Name()
	}
	var b strings.Builder
	for k := i; k <= j; k += 2 {
		if k > i {
			b.WriteByte('.')
		}
		b.WriteString(p.toks[k].Name())
	}
	return b.String()
}

// classifyCall explains why a call to name keeps a SELECT out of the cache,
// if it does.
func (p *parser) classifyCall(name string, pos int, sc *exprScan) {
	switch {
	case funcAllowed(name, p.d):
	case aggregates[name]:
		sc.fail("aggregate "+name+"()", pos)
	case stableFuncs[name]:
		sc.fail("calls "+name+"(), which depends on the session", pos)
	case volatileFuncs[name]:
		sc.fail("calls "+name+"(), which is volatile", pos)
	default:
		sc.fail("calls "+name+"(), which may write", pos)
	}
}

// scanCast checks the type after the "::" at i and returns the index of
// the type's last token.
func (p *parser) scanCast(i, hi int, sc *exprScan) int {
	prev := p.tok(i-1, hi)
	constant := prev.Kind == Param || prev.Kind == String || prev.Kind == Number
	typ, end := p.typeName(i+1, hi)
	p.checkCast(typ, constant, p.toks[i].Pos, sc)
	return end - 1
}

// scanCastCall checks CAST(x AS type) and returns the index of its ")".
func (p *parser) scanCastCall(i, hi int, sc *exprScan) int {
	end := p.match(i+1, hi)
	as := p.find(i+2, end, "as")
	if as >= end {
		return i
	}
	inner := p.tok(i+2, hi)
	constant := as == i+3 && (inner.Kind == Param || inner.Kind == String || inner.Kind == Number)
	typ, _ := p.typeName(as+1, end)
	p.checkCast(typ, constant, p.toks[i].Pos, sc)
	// Scan the operand for calls of its own; the type is done.
	return i + 1
}

// typeName reads a type name at i: one or more words ("double precision",
// "timestamp with time zone"), a schema qualifier, modifiers "(10,2)" and
// array brackets. It returns the folded name (without modifiers) and the
// index after it.
func (p *parser) typeName(i, hi int) (string, int) {
	t := p.tok(i, hi)
	if t.Kind != Ident && t.Kind != QuotedIdent {
		return "", i
	}
	for p.tok(i+1, hi).isPunct(".") && isName(p.tok(i+2, hi)) { // pg_catalog.int8
		i += 2
	}
	start := i
	i++
	for p.tok(i, hi).Kind == Ident && typeWords[foldASCII(p.toks[i].Text)] {
		i++
	}
	name := p.toks[start].Name()
	if i > start+1 {
		name = strings.Join(strings.Fields(foldASCII(p.text(start, i))), " ")
	}
	if p.tok(i, hi).isPunct("(") {
		i = p.match(i, hi) + 1
	}
	for p.tok(i, hi).isPunct("[") {
		i = p.match(i, hi) + 1
	}
	return name, i
}

func (p *parser) checkCast(typ string, constant bool, pos int, sc *exprScan) {
	switch castTypes[typ] {
	case castOK:
	case castConstOnly:
		if !constant {
			sc.fail("casts a column to "+typ+", which is STABLE for date/time columns", pos)
		}
	case castSession:
		sc.fail("casts to "+typ+", which depends on the session", pos)
	case castCatalog:
		sc.fail("casts to "+typ+", which depends on the catalog and search_path", pos)
	default:
		sc.fail("casts to "+typ+", which is not on the immutable allowlist", pos)
	}
}

func isName(t Token) bool { return t.Kind == Ident || t.Kind == QuotedIdent }

// isDML reports whether the tokens at i start a data-modifying statement.
// Keywords that PostgreSQL accepts as column names ("update", "delete")
// only count when followed by what a statement needs next.
func (p *parser) isDML(i, hi int) bool {
	t, n := p.tok(i, hi), p.tok(i+1, hi)
	switch {
	case t.is("insert") || t.is("merge"):
		return n.is("into") || (p.d == MySQL && (n.Kind == Ident || n.Kind == QuotedIdent))
	case t.is("replace"):
		return p.d != Postgres && (n.is("into") || n.Kind == Ident || n.Kind == QuotedIdent)
	case t.is("update"):
		// UPDATE [ONLY] name [*] [[AS] alias] SET: a column named update
		// is followed by an operator or a keyword, never by this.
		return isName(n) && p.followedBy(i+1, hi, "set")
	case t.is("delete"):
		return n.is("from") || p.d == MySQL && isName(n) && p.followedBy(i+1, hi, "from")
	}
	return false
}

// followedBy reports whether keyword kw comes after i within a few tokens
// that are only names, dots, commas or "*", as in a table reference.
func (p *parser) followedBy(i, hi int, kw string) bool {
	for j := i; j < hi && j < i+16; j++ {
		t := p.toks[j]
		switch {
		case t.is(kw):
			return j > i
		case isName(t) && !t.is("in") && !t.is("is") && !t.is("and") && !t.is("or"), // reserved: no table has these names
			t.isPunct("."), t.isPunct(","), t.isPunct("*"):
		default:
			return false
		}
	}
	return false
}

// operand is a parameter, literal or column, possibly wrapped in
// allowlisted one-argument functions and casts.
type operand struct {
	src    Source // SourceParam, SourceLiteral, or 0 for a column
	param  int
	lit    LiteralKind
	text   string // decoded literal, or the column name
	table  string // column qualifier
	wrap   []string
	pos    int
	column bool
}

// maxOperand bounds the tokens of an operand: real ones are a handful
// ("lower(trim($1::text))" is 9), and the bound keeps the recursive
// unwrapping linear on hostile input.
const maxOperand = 64

// operand parses [lo, hi) as an operand; ok is false for anything else.
func (p *parser) operand(lo, hi, depth int) (o operand, ok bool) {
	if lo >= hi || hi-lo > maxOperand || depth > maxDepth {
		return o, false
	}
	t := p.toks[lo]
	o.pos = t.Pos
	// (x)
	if t.isPunct("(") && p.match(lo, hi) == hi-1 {
		return p.operand(lo+1, hi-1, depth+1)
	}
	// x::type
	if cc := p.lastTop(lo, hi, "::"); cc > lo {
		typ, end := p.typeName(cc+1, hi)
		if end != hi || castTypes[typ] == 0 {
			return o, false
		}
		if o, ok = p.operand(lo, cc, depth+1); ok {
			o.wrap = append(o.wrap, p.castText(cc, end))
		}
		return o, ok
	}
	// f(x) and CAST(x AS type)
	if t.Kind == Ident && p.tok(lo+1, hi).isPunct("(") && p.match(lo+1, hi) == hi-1 {
		name := foldASCII(t.Text)
		if name == "cast" {
			as := p.find(lo+2, hi-1, "as")
			typ, end := p.typeName(as+1, hi-1)
			if as >= hi-1 || end != hi-1 || castTypes[typ] == 0 {
				return o, false
			}
			if o, ok = p.operand(lo+2, as, depth+1); ok {
				o.wrap = append(o.wrap, p.castText(as, hi-1))
			}
			return o, ok
		}
		if !funcAllowed(name, p.d) || p.find(lo+2, hi-1, "from", "for", "in") < hi-1 || p.hasTopComma(lo+2, hi-1) {
			return o, false
		}
		if o, ok = p.operand(lo+2, hi-1, depth+1); ok {
			o.wrap = append(o.wrap, name)
		}
		return o, ok
	}
	switch hi - lo {
	case 1:
		switch t.Kind {
		case Param:
			o.src, o.param = SourceParam, t.Param
			return o, t.Param > 0
		case String:
			v, ok := stringValue(t.Text, p.d)
			o.src, o.lit, o.text = SourceLiteral, LitString, v
			return o, ok
		case Number:
			o.src, o.lit, o.text = SourceLiteral, LitNumber, t.Text
			return o, true
		case QuotedIdent:
			if p.d == MySQL && t.Text[0] == '"' {
				return o, false
			}
			o.column, o.text = true, t.Name()
			return o, o.text != "" // "" is not a valid identifier
		case Ident:
			switch {
			case t.is("true") || t.is("false"):
				o.src, o.lit, o.text = SourceLiteral, LitBool, foldASCII(t.Text)
			case t.is("null"):
				o.src, o.lit = SourceLiteral, LitNull
			case lookupFold(reserved, t.Text) || lookupFold(sessionKeywords, t.Text)&(1<<p.d) != 0:
				return o, false
			default:
				o.column, o.text = true, foldASCII(t.Text)
			}
			return o, true
		}
	case 2:
		if (t.isPunct("-") || t.isPunct("+")) && p.toks[lo+1].Kind == Number {
			o.src, o.lit, o.text = SourceLiteral, LitNumber, p.text(lo, hi)
			if t.Text == "+" || p.toks[lo+1].Pos != t.End() {
				o.text = t.Text + p.toks[lo+1].Text
				if t.Text == "+" {
					o.text = p.toks[lo+1].Text
				}
			}
			return o, true
		}
	case 3, 5:
		// t.col or s.t.col
		for k := lo; k < hi; k++ {
			tk := p.toks[k]
			if (k-lo)%2 == 1 && !tk.isPunct(".") || (k-lo)%2 == 0 && tk.Kind != Ident && tk.Kind != QuotedIdent {
				return o, false
			}
		}
		o.column, o.text, o.table = true, p.toks[hi-1].Name(), p.toks[hi-3].Name()
		return o, o.text != "" && o.table != ""
	}
	return o, false
}

// castText renders the cast [cc, end) as "::type" with its modifiers,
// "::numeric(10,2)", folded and without spaces. It reuses the input when
// it is written that way already, so the common "$1::bigint" costs nothing.
func (p *parser) castText(cc, end int) string {
	s := p.src[p.toks[cc].Pos:p.toks[end-1].End()]
	if foldASCII(s) == s && !strings.ContainsAny(s, " \t\r\n\f\v\"") {
		return s
	}
	var b strings.Builder
	b.WriteString("::")
	for i := cc + 1; i < end; i++ {
		if i > cc+1 && p.toks[i].Kind == Ident && p.toks[i-1].Kind == Ident {
			b.WriteByte(' ')
		}
		b.WriteString(p.toks[i].Name())
	}
	return b.String()
}

// lastTop returns the index of the last top-level op token in [lo, hi),
// or -1.
func (p *parser) lastTop(lo, hi int, op string) int {
	depth, at := 0, -1
	for j := lo; j < hi; j++ {
		t := p.toks[j]
		switch {
		case t.isPunct("(") || t.isPunct("["):
			depth++
		case t.isPunct(")") || t.isPunct("]"):
			depth--
		case depth == 0 && t.Kind == Op && t.Text == op:
			at = j
		}
	}
	return at
}

func (p *parser) hasTopComma(lo, hi int) bool {
	depth := 0
	for j := lo; j < hi; j++ {
		t := p.toks[j]
		switch {
		case t.isPunct("(") || t.isPunct("["):
			depth++
		case t.isPunct(")") || t.isPunct("]"):
			depth--
		case depth == 0 && t.isPunct(","):
			return true
		}
	}
	return false
}

// splitTop cuts [lo, hi) at top-level commas.
func (p *parser) splitTop(lo, hi int, out [][2]int) [][2]int {
	depth, start := 0, lo
	for j := lo; j < hi; j++ {
		t := p.toks[j]
		switch {
		case t.isPunct("(") || t.isPunct("["):
			depth++
		case t.isPunct(")") || t.isPunct("]"):
			depth--
		case depth == 0 && t.isPunct(","):
			out = append(out, [2]int{start, j})
			start = j + 1
		}
	}
	if start < hi {
		out = append(out, [2]int{start, hi})
	}
	return out
}

// conjuncts cuts a condition into its AND-ed parts, looking inside
// parentheses that enclose a whole part. OR binds looser than AND, so a
// top-level OR makes the whole range one part; the AND of "BETWEEN a AND
// b" and ANDs inside CASE ... END are not conjunctions.
func (p *parser) conjuncts(lo, hi, depth int, out [][2]int) [][2]int {
	for lo < hi && p.toks[lo].isPunct("(") && p.match(lo, hi) == hi-1 && depth < maxDepth {
		lo, hi = lo+1, hi-1
		depth++
	}
	d, start, between := 0, lo, false
	var parts [][2]int
	for j := lo; j < hi; j++ {
		t := p.toks[j]
		switch {
		case t.isPunct("(") || t.isPunct("[") || t.is("case"):
			d++
		case t.isPunct(")") || t.isPunct("]") || t.is("end"):
			d--
		case d == 0 && t.is("or"):
			return append(out, [2]int{lo, hi})
		case d == 0 && t.is("between"):
			between = true
		case d == 0 && t.is("and"):
			if between {
				between = false
				continue
			}
			parts = append(parts, [2]int{start, j})
			start = j + 1
		}
	}
	if parts == nil {
		return append(out, [2]int{lo, hi})
	}
	parts = append(parts, [2]int{start, hi})
	for _, r := range parts {
		out = p.conjuncts(r[0], r[1], depth+1, out)
	}
	return out
}

// equality matches "operand = operand" with a column on one side and a
// parameter or literal on the other.
func (p *parser) equality(lo, hi int) (Equality, bool) {
	eq := -1
	depth := 0
	for j := lo; j < hi; j++ {
		t := p.toks[j]
		switch {
		case t.isPunct("(") || t.isPunct("["):
			depth++
		case t.isPunct(")") || t.isPunct("]"):
			depth--
		case depth == 0 && t.Kind == Op && (t.Text == "=" || t.Text == "==" && p.d == SQLite):
			if eq >= 0 {
				return Equality{}, false
			}
			eq = j
		}
	}
	if eq < 0 {
		return Equality{}, false
	}
	l, ok1 := p.operand(lo, eq, 0)
	r, ok2 := p.operand(eq+1, hi, 0)
	if !ok1 || !ok2 {
		return Equality{}, false
	}
	if r.column && !l.column {
		l, r = r, l
	}
	if !l.column || r.column || r.lit == LitNull {
		return Equality{}, false
	}
	return Equality{
		Column: l.text, Table: l.table, ColumnWrap: l.wrap, Pos: p.toks[lo].Pos,
		Value: Value{Source: r.src, Param: r.param, Literal: r.lit, Text: r.text, Wrap: r.wrap, Pos: r.pos},
	}, true
}

// maxPinned bounds the equalities collected from one WHERE.
const maxPinned = 64

// whereInfo is the analysis of a WHERE condition.
type whereInfo struct {
	pinned []Equality
	extra  [][2]int // token ranges of the other conjuncts
	twice  string   // a column pinned twice
	twiceP int
	in     string // "IN (...)" or "= ANY(...)" if a conjunct is one
	inPos  int

	malformed bool // an empty conjunct
}

func (p *parser) where(lo, hi int) whereInfo {
	var w whereInfo
	for _, r := range p.conjuncts(lo, hi, 0, p.cbuf[:0]) {
		if r[0] >= r[1] {
			w.malformed = true // "a = 1 AND", "()": PostgreSQL rejects it
			continue
		}
		e, ok := p.equality(r[0], r[1])
		if !ok {
			w.extra = append(w.extra, r)
			if w.in == "" {
				if k := p.find(r[0], r[1], "in", "any", "some"); k < r[1] {
					w.in, w.inPos = strings.ToUpper(p.toks[k].Text), p.toks[k].Pos
				}
			}
			continue
		}
		if len(w.pinned) >= maxPinned {
			// No key has this many columns; stay linear on hostile input.
			w.extra = append(w.extra, r)
			continue
		}
		for _, x := range w.pinned {
			if x.Column == e.Column && w.twice == "" {
				w.twice, w.twiceP = e.Column, e.Pos
			}
		}
		w.pinned = append(w.pinned, e)
	}
	return w
}

// value describes the value expression [lo, hi) of an assignment or a
// VALUES row.
func (p *parser) value(st *Statement, lo, hi int) Value {
	if hi-lo == 1 && p.toks[lo].is("default") {
		return Value{Source: SourceDefault, Pos: p.toks[lo].Pos}
	}
	var sc exprScan
	if o, ok := p.operand(lo, hi, 0); ok && !o.column {
		if o.wrap != nil {
			p.scanExpr(st, lo, hi, &sc, nil) // record lower() and the like
		}
		return Value{Source: o.src, Param: o.param, Literal: o.lit, Text: o.text, Wrap: o.wrap, Pos: o.pos}
	}
	v := Value{Source: SourceExpr, Text: p.text(lo, hi), Pos: p.tok(lo, hi).Pos}
	p.scanExpr(st, lo, hi, &sc, &v.Params)
	return v
}

// params lists the parameters in [lo, hi) in order of appearance.
func (p *parser) params(lo, hi int) []int {
	var ps []int
	for j := lo; j < hi; j++ {
		if t := p.toks[j]; t.Kind == Param && t.Param > 0 {
			ps = append(ps, t.Param)
		}
	}
	return ps
}

// columns parses a projection or RETURNING list.
func (p *parser) columns(lo, hi int) []Column {
	items := p.splitTop(lo, hi, p.sbuf[:0])
	cols := make([]Column, 0, len(items))
	for _, r := range items {
		a, b := r[0], r[1]
		c := Column{Pos: p.toks[a].Pos}
		// Alias: "expr AS x" or "expr x".
		if b-a >= 2 {
			last, prev := p.toks[b-1], p.toks[b-2]
			if (last.Kind == Ident || last.Kind == QuotedIdent) && !lookupFold(reserved, last.Text) || last.Kind == QuotedIdent || prev.is("as") {
				switch {
				case prev.is("as"):
					c.Alias, b = last.Name(), b-2
				case prev.Kind == Ident && !lookupFold(reserved, prev.Text) || prev.Kind == QuotedIdent || prev.isPunct(")") ||
					prev.Kind == Number || prev.Kind == String || prev.Kind == Param || prev.is("end") || prev.is("null") || prev.is("true") || prev.is("false"):
					c.Alias, b = last.Name(), b-1
				}
			}
		}
		c.Expr = p.text(a, b)
		switch {
		case b-a == 1 && p.toks[a].isPunct("*"):
			c.Star = true
		case b-a == 3 && p.toks[b-1].isPunct("*") && p.toks[a+1].isPunct("."):
			c.Star, c.Table = true, p.toks[a].Name()
		default:
			if o, ok := p.operand(a, b, 0); ok && o.column && o.wrap == nil {
				c.Name, c.Table = o.text, o.table
			}
		}
		cols = append(cols, c)
	}
	return cols
}

// tableName reads [schema.]table at i (a third part, db.schema.table, is
// folded into schema). It returns the index after it; ok is false if there
// is no name.
func (p *parser) tableName(i, hi int) (schema, table string, next int, ok bool) {
	t := p.tok(i, hi)
	if t.Kind != QuotedIdent && (t.Kind != Ident || lookupFold(reserved, t.Text)) {
		return "", "", i, false
	}
	if t.Kind == QuotedIdent && p.d == MySQL && t.Text[0] == '"' {
		return "", "", i, false
	}
	table, next = t.Name(), i+1
	for p.tok(next, hi).isPunct(".") {
		n := p.tok(next+1, hi)
		if n.Kind != Ident && n.Kind != QuotedIdent {
			break
		}
		schema, table, next = table, n.Name(), next+2
	}
	return schema, table, next, table != ""
}

// alias reads an optional "[AS] alias" at i.
func (p *parser) alias(i, hi int) (string, int) {
	t := p.tok(i, hi)
	if t.is("as") {
		if n := p.tok(i+1, hi); n.Kind == Ident || n.Kind == QuotedIdent {
			return n.Name(), i + 2
		}
		return "", i
	}
	if t.Kind == QuotedIdent || t.Kind == Ident && !lookupFold(reserved, t.Text) && !lookupFold(clauseWords, t.Text) {
		return t.Name(), i + 1
	}
	return "", i
}

// clauseWords are non-reserved keywords that may follow a table name.
var clauseWords = map[string]bool{
	"set": true, "using": true, "returning": true, "values": true, "value": true,
	"default": true, "overriding": true, "partition": true, "tablesample": true,
	"natural": true, "force": true, "ignore": true, "use": true,
	"restart": true, "continue": true, "cascade": true, "restrict": true,
}
