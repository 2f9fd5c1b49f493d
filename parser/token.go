package parser

// TokenKind classifies a token. The kinds follow PostgreSQL's lexical
// classes; the dialect only changes which bytes start which class.
type TokenKind uint8

// Token kinds.
const (
	// Invalid is a byte sequence no dialect accepts: an unterminated string,
	// quoted identifier, dollar quote or block comment (the token then runs
	// to the end of the input), or a stray byte such as NUL or a backslash.
	Invalid TokenKind = iota
	// Space is a run of whitespace.
	Space
	// Comment is a -- line comment (without its newline), a /* */ block
	// comment (nested in PostgreSQL), or a MySQL # comment.
	Comment
	// Ident is an unquoted identifier or keyword; Token.Name folds it.
	Ident
	// QuotedIdent is a "quoted", U&"unicode", `backtick` (MySQL, SQLite) or
	// [bracketed] (SQLite) identifier; Token.Name keeps its case.
	QuotedIdent
	// String is a string constant: '...', E'...', U&'...', B'...', X'...',
	// N'...', $tag$...$tag$, and "..." in MySQL.
	String
	// Number is a numeric constant: 42, 4.2, .5, 1e-3, 0x1F, 1_000.
	Number
	// Param is a placeholder: $N (PostgreSQL), ? and ?NNN (MySQL, SQLite), or
	// a named one (:name, @name, $name in SQLite) whose Token.Param is 0.
	Param
	// Op is an operator: =, <>, ||, ->>, ::, :=, and the rest.
	Op
	// Punct is one of ( ) [ ] , ; .
	Punct
)

var kindNames = [...]string{
	Invalid:     "Invalid",
	Space:       "Space",
	Comment:     "Comment",
	Ident:       "Ident",
	QuotedIdent: "QuotedIdent",
	String:      "String",
	Number:      "Number",
	Param:       "Param",
	Op:          "Op",
	Punct:       "Punct",
}

// String returns the kind name, "Ident" for Ident.
func (k TokenKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "TokenKind(?)"
}

// MaxParam is the highest placeholder index the parser accepts; it is
// PostgreSQL's limit on bind parameters. A larger index is clamped to
// MaxParam+1 by the lexer so it cannot wrap, and makes a statement Unknown.
const MaxParam = 65535

// Token is one lexical token. Text is a substring of the input (no copy),
// and concatenating the Text of every token Lex returns gives back the input.
type Token struct {
	Text  string    // the bytes as written
	Pos   int       // byte offset of Text in the input
	Param int       // 1-based index for Param tokens; 0 for named ones
	Kind  TokenKind // lexical class
}

// End is the byte offset just after the token.
func (t Token) End() int { return t.Pos + len(t.Text) }

// Trivia reports whether the token is whitespace or a comment.
func (t Token) Trivia() bool { return t.Kind == Space || t.Kind == Comment }

// is reports whether t is the unquoted keyword kw (given in lower case).
func (t Token) is(kw string) bool {
	return t.Kind == Ident && len(t.Text) == len(kw) && equalFold(t.Text, kw)
}

// isPunct reports whether t is the punctuation or operator s.
func (t Token) isPunct(s string) bool {
	return (t.Kind == Punct || t.Kind == Op) && t.Text == s
}

// Name returns the identifier the token denotes: unquoted identifiers fold
// ASCII letters to lower case (as PostgreSQL does in UTF-8 databases);
// quoted ones lose their quotes and doubled quotes but keep their case.
// It allocates only when folding or unquoting changes the text.
func (t Token) Name() string {
	switch t.Kind {
	case Ident:
		return foldASCII(t.Text)
	case QuotedIdent:
		return unquoteIdent(t.Text)
	}
	return t.Text
}

func equalFold(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// lookupFold returns m[foldASCII(s)] without allocating: the compiler
// does not copy a []byte converted to string for a map index.
func lookupFold[V any](m map[string]V, s string) V {
	var buf [64]byte
	if len(s) > len(buf) {
		var zero V // no keyword or allowlisted name is this long
		return zero
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return m[string(buf[:len(s)])]
}

// foldASCII lower-cases ASCII letters only; bytes >= 0x80 are kept, as
// PostgreSQL's downcase_identifier does for multibyte encodings.
func foldASCII(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}
