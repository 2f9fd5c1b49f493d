package parser

import (
	"strings"
	"testing"
	"time"
)

// TestMalformed: malformed input is Unknown with a reason and a position,
// never a panic or a stack overflow.
func TestMalformed(t *testing.T) {
	mb := 1 << 20
	tests := []struct {
		name, sql string
		reason    string
	}{
		{"unterminated string", "SELECT 'abc", "unterminated"},
		{"unbalanced open", "SELECT (1", "unbalanced"},
		{"unbalanced close", "SELECT 1)", "unbalanced"},
		{"binary garbage", "\x00\x01\x02\xff\xfe SELECT", "unexpected byte"},
		{"1 MB of (", strings.Repeat("(", mb), "nested deeper"},
		{"1 MB of balanced ()", "SELECT " + strings.Repeat("(", mb/2) + strings.Repeat(")", mb/2), "nested deeper"},
		{"nesting in WHERE", "SELECT * FROM t WHERE " + strings.Repeat("(", mb/2) + "id = $1" + strings.Repeat(")", mb/2), "nested deeper"},
		{"1 MB of /*", strings.Repeat("/*", mb/2), "unterminated /* comment"},
		{"1 MB of $1::int", "SELECT " + strings.Repeat("$1::", mb/4) + "int", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := Parse(tt.sql, Postgres)
			if tt.reason == "" {
				return // must only finish
			}
			if st.Kind != Unknown || !strings.Contains(st.Reason, tt.reason) || st.ReasonPos < 0 || st.ReasonPos > len(tt.sql) {
				t.Errorf("got %v %q @%d; want Unknown %q with a position", st.Kind, st.Reason, st.ReasonPos, tt.reason)
			}
		})
	}
}

// TestLargeInputsStayLinear: inputs that a careless recognizer handles in
// quadratic time.
func TestLargeInputsStayLinear(t *testing.T) {
	var many, funcs, params strings.Builder
	many.WriteString("SELECT * FROM t WHERE id = $1")
	funcs.WriteString("SELECT 1")
	params.WriteString("SELECT id")
	for i := range 100000 {
		many.WriteString(" AND c")
		many.WriteString(itoa(i))
		many.WriteString(" = 1")
		funcs.WriteString(" + f")
		funcs.WriteString(itoa(i))
		funcs.WriteString("()")
	}
	for i := range MaxParam {
		params.WriteString(", $")
		params.WriteString(itoa(i + 1))
	}
	params.WriteString(" FROM t WHERE id = $1")
	for _, sql := range []string{many.String(), funcs.String(), params.String()} {
		st := Parse(sql, Postgres)
		if st.Kind == Unknown {
			t.Errorf("%.40s...: Unknown: %s", sql, st.Reason)
		}
	}
	if st := Parse(funcs.String(), Postgres); len(st.Functions) != 100000 {
		t.Errorf("got %d functions, want 100000", len(st.Functions))
	}
	if st := Parse(params.String(), Postgres); st.Kind != Lookup || len(st.Lookup.ExtraParams) != MaxParam {
		t.Errorf("got %v with %d extra params", st.Kind, len(st.Lookup.ExtraParams))
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for ; i > 0; i /= 10 {
		n--
		b[n] = byte('0' + i%10)
	}
	return string(b[n:])
}

// TestLexClasses pins the lexer's classes and folding.
func TestLexClasses(t *testing.T) {
	tests := []struct {
		sql  string
		d    Dialect
		want string // kinds and names of the significant tokens
	}{
		{`SELECT "Ab""c", Abc, U&"\0041"`, Postgres, `Ident:select QuotedIdent:Ab"c Punct:, Ident:abc Punct:, QuotedIdent:A`},
		{"$1 $22 $abc$x$abc$ $$y$$", Postgres, "Param:$1 Param:$22 String:$abc$x$abc$ String:$$y$$"},
		{"? ?3 ?", SQLite, "Param:? Param:?3 Param:?"},
		{"`a``b` [c d]", SQLite, "QuotedIdent:a`b QuotedIdent:c d"},
		{`'a\'b' "c" # x`, MySQL, `String:'a\'b' String:"c"`},
		{"a::int=-1", Postgres, "Ident:a Op::: Ident:int Op:= Op:- Number:1"},
		{"1.5e3 .5 0x1F 1_000", Postgres, "Number:1.5e3 Number:.5 Number:0x1F Number:1_000"},
		{"E'\\'' /* a /* b */ c */ x", Postgres, `String:E'\'' Ident:x`},
		{"1--1", MySQL, "Number:1 Op:- Op:- Number:1"},
		{"1--1", Postgres, "Number:1"},
	}
	for _, tt := range tests {
		var got []string
		params := []int{}
		for _, tk := range Lex(tt.sql, tt.d) {
			if tk.Trivia() {
				continue
			}
			name := tk.Text
			if tk.Kind == Ident || tk.Kind == QuotedIdent {
				name = tk.Name()
			}
			got = append(got, tk.Kind.String()+":"+name)
			if tk.Kind == Param {
				params = append(params, tk.Param)
			}
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("Lex(%q, %v)\n got %s\nwant %s", tt.sql, tt.d, g, tt.want)
		}
		if tt.d == SQLite && tt.sql == "? ?3 ?" && (params[0] != 1 || params[1] != 3 || params[2] != 4) {
			t.Errorf("SQLite ? numbering = %v, want [1 3 4]", params)
		}
	}
}

// TestParamClamp: a huge $N is clamped, not wrapped, and makes the
// statement Unknown.
func TestParamClamp(t *testing.T) {
	toks := Lex("$18446744073709551617", Postgres)
	if toks[0].Param != MaxParam+1 {
		t.Fatalf("Param = %d, want %d", toks[0].Param, MaxParam+1)
	}
	if st := Parse("SELECT * FROM t WHERE id = $18446744073709551617", Postgres); st.Kind != Unknown {
		t.Fatalf("got %v, want Unknown", st.Kind)
	}
}

// TestAllocFreeNames: folding and unquoting allocate only when they must.
func TestAllocFreeNames(t *testing.T) {
	tk := Lex("users", Postgres)[0]
	if n := testing.AllocsPerRun(100, func() { _ = tk.Name() }); n != 0 {
		t.Errorf("Name() of a lower-case identifier allocates %v times", n)
	}
}

// TestStringValues pins the decoding of literal values, which become
// cache keys: a wrong decoding would file one row under another's key.
func TestStringValues(t *testing.T) {
	tests := []struct {
		lit  string
		d    Dialect
		want string
	}{
		{`'it''s'`, Postgres, "it's"},
		{`'a\nb'`, Postgres, `a\nb`}, // standard_conforming_strings
		{`E'a\nb\x41\101\u00e9\''`, Postgres, "a\nbAAé'"},
		{`U&'d\0061t\+000061'`, Postgres, "data"},
		{`$q$it's$q$`, Postgres, "it's"},
		{`N'x'`, Postgres, "x"},
		{`'a\'b\\c'`, MySQL, `a'b\c`},
		{`'\%\_\Z\0'`, MySQL, "\\%\\_\x1a\x00"},
		{`'\x41\101'`, MySQL, "x41101"},
		{`"dq"`, MySQL, "dq"},
		{`'a\nb'`, SQLite, `a\nb`},
	}
	for _, tt := range tests {
		tok := Lex(tt.lit, tt.d)
		if len(tok) != 1 || tok[0].Kind != String {
			t.Errorf("Lex(%s) = %v, want one String", tt.lit, tok)
			continue
		}
		if got, ok := stringValue(tok[0].Text, tt.d); !ok || got != tt.want {
			t.Errorf("value of %s (%v) = %q, want %q", tt.lit, tt.d, got, tt.want)
		}
	}
	for _, bits := range []string{`B'101'`, `X'1F'`} {
		if _, ok := stringValue(bits, Postgres); ok {
			t.Errorf("%s: bit strings are not character literals", bits)
		}
	}
}

// TestLexLinear: 256 KB of any one lexical class lexes and parses in
// linear time in every dialect. The bound is loose (shared, loaded CI
// machines); a quadratic scan, as the fuzzer once found for runs of
// operator bytes in MySQL, takes minutes here.
func TestLexLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("large inputs")
	}
	classes := []string{"(", ")", "~", "<", "-", "+-", "$a", "$a$", "$1", "?", "?1", ":a", "@a", "@@", "'", "''",
		"\"", "`", "[", "/*", "*/", "--\n", "#\n", "a", "1.", "0x", "E'", "U&'", " ", "\xff", "\\", ";"}
	for _, c := range classes {
		for _, d := range []Dialect{Postgres, MySQL, SQLite} {
			s := strings.Repeat(c, (256<<10)/len(c))
			start := time.Now()
			Parse(s, d)
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("%q × %d (%v): %v", c, len(s)/len(c), d, el)
			}
		}
	}
}
