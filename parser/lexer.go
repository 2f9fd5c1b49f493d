package parser

import "strings"

// Lex splits sql into tokens, including whitespace and comments, so that
// concatenating their Text gives back sql exactly. It never fails: bytes
// that cannot start a token, and unterminated strings or comments, become
// Invalid tokens.
func Lex(sql string, d Dialect) []Token {
	l := lexer{src: sql, d: d}
	toks := make([]Token, 0, len(sql)/4+1)
	for {
		t, ok := l.next()
		if !ok {
			return toks
		}
		toks = append(toks, t)
	}
}

// lexer is a synchronous scanner in the style of go/scanner: one switch on
// the first byte of each token, no goroutines, no allocation per token.
type lexer struct {
	src     string
	pos     int
	d       Dialect
	ordinal int // count of ? placeholders seen, for MySQL/SQLite numbering
}

// next returns the token at l.pos and advances past it.
func (l *lexer) next() (Token, bool) {
	if l.pos >= len(l.src) {
		return Token{}, false
	}
	start := l.pos
	kind, param := l.scan()
	if l.pos <= start { // defensive: every branch must consume a byte
		l.pos = start + 1
	}
	return Token{Kind: kind, Text: l.src[start:l.pos], Pos: start, Param: param}, true
}

func (l *lexer) peek(off int) byte {
	if l.pos+off < len(l.src) {
		return l.src[l.pos+off]
	}
	return 0
}

func (l *lexer) scan() (TokenKind, int) {
	c := l.src[l.pos]
	switch {
	case isSpace(c):
		for l.pos < len(l.src) && isSpace(l.src[l.pos]) {
			l.pos++
		}
		return Space, 0
	case c == '-' && l.peek(1) == '-' && (l.d != MySQL || isMySQLDashCommentEnd(l.peek(2))):
		return l.lineComment(), 0
	case c == '#' && l.d == MySQL:
		return l.lineComment(), 0
	case c == '/' && l.peek(1) == '*':
		return l.blockComment(), 0
	case c == '\'':
		return l.quoted('\'', l.d == MySQL), 0
	case c == '"':
		if l.d == MySQL { // "..." is a string unless ANSI_QUOTES is set
			return l.quoted('"', true), 0
		}
		if l.quoted('"', false) == Invalid {
			return Invalid, 0
		}
		return QuotedIdent, 0
	case c == '`' && l.d != Postgres:
		if l.quoted('`', false) == Invalid {
			return Invalid, 0
		}
		return QuotedIdent, 0
	case c == '[' && l.d == SQLite:
		if i := strings.IndexByte(l.src[l.pos+1:], ']'); i >= 0 {
			l.pos += i + 2
			return QuotedIdent, 0
		}
		l.pos = len(l.src)
		return Invalid, 0
	case isDigit(c) || (c == '.' && isDigit(l.peek(1))):
		l.number()
		return Number, 0
	case c == '$':
		return l.dollar()
	case c == '?' && l.d != Postgres:
		return l.question()
	case (c == ':' || c == '@') && l.d != Postgres && isIdentStart(l.peek(1)):
		// Named parameter (:name, @name) or MySQL user variable (@name).
		l.pos++
		l.identRest()
		return Param, 0
	case c == '@' && l.d == MySQL && l.peek(1) == '@' && isIdentStart(l.peek(2)):
		// MySQL system variable @@name or @@session.name.
		l.pos += 2 // identRest skips the name's first byte
		l.identRest()
		return Param, 0
	case isIdentStart(c):
		return l.identOrPrefixed(), 0
	case c == ':':
		if l.peek(1) == ':' || l.peek(1) == '=' {
			l.pos += 2
		} else {
			l.pos++
		}
		return Op, 0
	case c == '(' || c == ')' || c == '[' || c == ']' || c == ',' || c == ';' || c == '.':
		l.pos++
		return Punct, 0
	case isOpChar(c, l.d):
		l.operator()
		return Op, 0
	}
	l.pos++
	return Invalid, 0
}

func isMySQLDashCommentEnd(c byte) bool {
	// MySQL needs whitespace or a control character after "--".
	return c == 0 || c <= ' '
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentCont(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

// isOpChar reports whether c may appear in an operator. In MySQL # starts
// a comment instead.
func isOpChar(c byte, d Dialect) bool {
	switch c {
	case '+', '-', '*', '/', '<', '>', '=', '~', '!', '@', '%', '^', '&', '|', '`', '?':
		return true
	case '#':
		return d != MySQL
	}
	return false
}

func (l *lexer) lineComment() TokenKind {
	for l.pos < len(l.src) && l.src[l.pos] != '\n' && l.src[l.pos] != '\r' {
		l.pos++
	}
	return Comment
}

// blockComment scans /* ... */; PostgreSQL nests them, MySQL and SQLite
// do not.
func (l *lexer) blockComment() TokenKind {
	depth := 0
	for l.pos < len(l.src) {
		switch {
		case l.src[l.pos] == '/' && l.peek(1) == '*' && (depth == 0 || l.d == Postgres):
			depth++
			l.pos += 2
		case l.src[l.pos] == '*' && l.peek(1) == '/':
			depth--
			l.pos += 2
			if depth == 0 {
				return Comment
			}
		default:
			l.pos++
		}
	}
	return Invalid
}

// quoted scans a q-quoted sequence starting at l.pos, where a doubled q
// stands for one q and, if backslash is set, a backslash escapes the next
// byte. It returns String, or Invalid when the quote is not closed.
func (l *lexer) quoted(q byte, backslash bool) TokenKind {
	l.pos++
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case backslash && c == '\\':
			l.pos += 2
		case c == q:
			if l.peek(1) == q {
				l.pos += 2
				continue
			}
			l.pos++
			return String
		default:
			l.pos++
		}
	}
	l.pos = len(l.src)
	return Invalid
}

// identOrPrefixed scans an identifier, or a string with a letter prefix:
// E'x', B'1', X'1f', N'x', U&'x' and U&"x" (PostgreSQL), X'1f' (all dialects).
func (l *lexer) identOrPrefixed() TokenKind {
	c := l.src[l.pos] | 0x20
	switch {
	case c == 'u' && l.peek(1) == '&' && (l.peek(2) == '\'' || l.peek(2) == '"') && l.d == Postgres:
		q := l.peek(2)
		l.pos += 2
		k := l.quoted(q, false)
		if q == '"' && k == String {
			return QuotedIdent
		}
		return k
	case l.peek(1) == '\'' && (c == 'x' || c == 'b' || c == 'n' || (c == 'e' && l.d == Postgres)):
		l.pos++
		return l.quoted('\'', c == 'e' || l.d == MySQL)
	}
	l.identRest()
	return Ident
}

func (l *lexer) identRest() {
	l.pos++
	for l.pos < len(l.src) && isIdentCont(l.src[l.pos]) {
		l.pos++
	}
}

// number scans decimal, hexadecimal, octal and binary integers, decimals
// and exponents, with PostgreSQL 16's underscores between digits. Trailing
// junk such as 123abc is left for the next token, as older servers did.
func (l *lexer) number() {
	s := l.src
	if s[l.pos] == '0' && l.pos+2 < len(s) {
		switch s[l.pos+1] | 0x20 {
		case 'x', 'o', 'b':
			if isHexDigit(s[l.pos+2]) {
				l.pos += 2
				for l.pos < len(s) && (isHexDigit(s[l.pos]) || s[l.pos] == '_') {
					l.pos++
				}
				return
			}
		}
	}
	digits := func() {
		for l.pos < len(s) && (isDigit(s[l.pos]) || s[l.pos] == '_' && l.pos+1 < len(s) && isDigit(s[l.pos+1])) {
			l.pos++
		}
	}
	digits()
	if l.pos < len(s) && s[l.pos] == '.' && !(l.pos+1 < len(s) && s[l.pos+1] == '.') {
		l.pos++
		digits()
	}
	if l.pos < len(s) && s[l.pos]|0x20 == 'e' {
		j := l.pos + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			l.pos = j
			digits()
		}
	}
}

func isHexDigit(c byte) bool {
	return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f'
}

// dollar scans $N placeholders and $tag$ dollar quotes (PostgreSQL), or
// $name parameters (SQLite). Anything else is a lone $ operator.
func (l *lexer) dollar() (TokenKind, int) {
	s := l.src
	start := l.pos
	if isDigit(l.peek(1)) {
		if l.d != Postgres {
			l.pos++
			for l.pos < len(s) && isDigit(s[l.pos]) {
				l.pos++
			}
			return Invalid, 0
		}
		n := 0
		l.pos++
		for l.pos < len(s) && isDigit(s[l.pos]) {
			if n <= MaxParam { // clamp instead of overflowing
				n = n*10 + int(s[l.pos]-'0')
			}
			l.pos++
		}
		if n > MaxParam {
			n = MaxParam + 1
		}
		return Param, n
	}
	if l.d == SQLite && isIdentStart(l.peek(1)) {
		l.identRest()
		return Param, 0
	}
	if l.d != Postgres {
		l.pos++
		return Invalid, 0
	}
	// Dollar quote: $$ or $tag$ where tag is an identifier without $.
	j := start + 1
	if j < len(s) && isIdentStart(s[j]) {
		j++
		for j < len(s) && (isIdentStart(s[j]) || isDigit(s[j])) {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		l.pos++
		return Op, 0
	}
	delim := s[start : j+1]
	if end := strings.Index(s[j+1:], delim); end >= 0 {
		l.pos = j + 1 + end + len(delim)
		return String, 0
	}
	l.pos = len(s)
	return Invalid, 0
}

// question scans ? (numbered in order of appearance) and SQLite's ?NNN.
func (l *lexer) question() (TokenKind, int) {
	l.pos++
	if l.d == SQLite && l.pos < len(l.src) && isDigit(l.src[l.pos]) {
		n := 0
		for l.pos < len(l.src) && isDigit(l.src[l.pos]) {
			if n <= MaxParam {
				n = n*10 + int(l.src[l.pos]-'0')
			}
			l.pos++
		}
		if n > MaxParam {
			n = MaxParam + 1
		}
		// A following bare ? takes the next index after the largest so far,
		// as SQLite numbers them.
		if n > l.ordinal {
			l.ordinal = n
		}
		return Param, n
	}
	if l.ordinal <= MaxParam {
		l.ordinal++
	}
	return Param, l.ordinal
}

// operator scans a run of operator characters, stopping before a comment
// start. As in PostgreSQL, a multi-character operator cannot end in + or -
// unless it contains one of ~ ! @ # % ^ & | ` ?, so "a=-1" lexes as "=" "-".
func (l *lexer) operator() {
	s := l.src
	start := l.pos
	if l.d != Postgres {
		// MySQL and SQLite have a fixed operator set; take the longest one.
		// Look no further than it: scanning the whole run of operator bytes
		// for each one-byte operator made "~~~..." quadratic.
		l.pos = start + fixedOpLen(s[start:min(start+3, len(s))])
		return
	}
	// Operator names are at most 63 bytes (NAMEDATALEN); the bound also
	// keeps "+-+-+-...", which is cut back to "+", from making lexing
	// quadratic.
	for l.pos < len(s) && l.pos-start < 63 && isOpChar(s[l.pos], l.d) {
		if l.pos > start && (s[l.pos] == '-' && l.peek(1) == '-' || s[l.pos] == '/' && l.peek(1) == '*') {
			break
		}
		l.pos++
	}
	op := s[start:l.pos]
	if len(op) > 1 && !strings.ContainsAny(op, "~!@#%^&|`?") {
		for len(op) > 1 && (op[len(op)-1] == '+' || op[len(op)-1] == '-') {
			op = op[:len(op)-1]
		}
		l.pos = start + len(op)
	}
}

var fixedOps = []string{"<=>", "->>", "<<", ">>", "<=", ">=", "<>", "!=", "==", "||", "&&", "->"}

func fixedOpLen(run string) int {
	for _, op := range fixedOps {
		if strings.HasPrefix(run, op) {
			return len(op)
		}
	}
	return 1
}
