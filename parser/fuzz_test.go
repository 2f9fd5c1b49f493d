package parser

import (
	"strings"
	"testing"
	"time"
)

// seeds is the fuzz corpus, organised by lexical class, as in pgx's
// sanitize fuzz test.
var seeds = map[string][]string{
	"placeholders": {"select $1", "$0", "$", "$$", "$abc", "$1$2", "$99999999999999999999",
		"?", "??", "?1 ?", "?99999999999", ":name @v $v", "@@session.x", "@@"},
	"strings": {"'a''b'", "''''", "'unterminated", "'ends with backslash\\", "E'\\''", "e'\\\\'",
		"E'unterminated\\", "U&'d\\0061t\\+000061'", "U&'\\'", "B'101' X'1f' N'x'", "'a'\n'b'",
		`"MySQL string \" here"`, "'mysql \\' escape'"},
	"identifiers": {`"Quoted""Ident"`, `""`, `"unterminated`, "U&\"d\\0061ta\"", "`back``tick`",
		"[bracket]", "[unterminated", "naïve café", "\xc0\xc0", "\xff", "ABC_def$1"},
	"dollar quotes": {"$$x$$", "$t$x$t$", "$a$ $b$ $a$", "$t$ unterminated", "$1$t$", "$_$$_$"},
	"comments": {"-- c", "--c\nx", "/* a /* b */ c */", "/* unterminated", "/**/", "# mysql",
		"/*! executable */", "1--1", "a-- b", "/*/", "-- name: GetX :one\nSELECT 1"},
	"numbers": {"1", "1.5", ".5", "5.", "1e10", "1e", "1.e+5", "0x1F", "0o17", "0b101", "1_000", "1__0",
		"123abc", "1..2"},
	"operators": {"a::int", "a=-1", "a<>b", "a!=b", "a||b", "a->>'k'", "@>", "?|", "<=>", ":=", "=>",
		"+-*/%^", "a*/b", "!~~*"},
	"statements": {
		"SELECT * FROM t WHERE id = $1",
		"SELECT * FROM t WHERE id = $1 AND id = $2",
		"SELECT * FROM t WHERE id = 1 OR 1=1",
		"UPDATE t SET a = $1 WHERE id = $2 RETURNING *",
		"WITH x AS (DELETE FROM t WHERE id = $1 RETURNING *) SELECT * FROM x",
		"SELECT * FROM (DELETE FROM t RETURNING *) x",
		"SELECT (update) FROM t WHERE id = $1",
		"INSERT INTO t VALUES ($1), ($2) ON CONFLICT (id) DO UPDATE SET a = excluded.a",
		"BEGIN ISOLATION LEVEL SERIALIZABLE; COMMIT",
		"CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; END; SELECT 1",
		"SET LOCAL search_path = a; RESET ALL",
		"EXPLAIN ANALYZE DELETE FROM t",
		"((((((((((", "))))", "SELECT ((((id)))) FROM t WHERE ((id = $1))",
	},
}

func addSeeds(f *testing.F) {
	for _, class := range seeds {
		for _, s := range class {
			for d := range 3 {
				f.Add(s, uint8(d))
			}
		}
	}
	for d := range 3 {
		for _, s := range goldenSQL(f, Dialect(d)) {
			f.Add(s, uint8(d))
		}
	}
}

// FuzzLex: the lexer never panics, consumes every byte once, and its
// tokens concatenate back to the input.
func FuzzLex(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, sql string, d uint8) {
		toks := Lex(sql, Dialect(d%3))
		var b strings.Builder
		pos := 0
		for _, tk := range toks {
			if tk.Pos != pos || tk.Text == "" {
				t.Fatalf("token %+v at %d: not contiguous or empty", tk, pos)
			}
			if tk.Param < 0 || tk.Param > MaxParam+1 {
				t.Fatalf("token %+v: parameter index out of range", tk)
			}
			pos += len(tk.Text)
			b.WriteString(tk.Text)
		}
		if b.String() != sql {
			t.Fatalf("tokens concatenate to %q, want %q", b.String(), sql)
		}
	})
}

// FuzzParse: Parse never panics and finishes quickly; every parameter a
// result names exists in its statement; offsets are inside the input; and
// no Lookup, OtherRead or Session statement contains a data-modifying
// statement (plain EXPLAIN and PREPARE run nothing and are exempt).
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, sql string, d uint8) {
		dialect := Dialect(d % 3)
		start := time.Now()
		st := Parse(sql, dialect)
		if el := time.Since(start); el > 2*time.Second && len(sql) < 1<<16 {
			// A loaded machine can stall one run; a quadratic input is
			// slow every time.
			start = time.Now()
			Parse(sql, dialect)
			if el2 := time.Since(start); el2 > 2*time.Second {
				t.Fatalf("Parse took %v and %v on %d bytes", el, el2, len(sql))
			}
		}
		check(t, sql, dialect, st)
		for i := range st.Parts {
			check(t, sql, dialect, &st.Parts[i])
		}
	})
}

func check(t *testing.T, sql string, d Dialect, st *Statement) {
	t.Helper()
	if st.Start < 0 || st.Start > st.End || st.End > len(sql) {
		t.Fatalf("span [%d,%d) outside input of %d bytes", st.Start, st.End, len(sql))
	}
	if st.Kind == Unknown && st.Reason == "" {
		t.Fatalf("Unknown without a reason")
	}
	if st.ReasonPos < -1 || st.ReasonPos > len(sql) {
		t.Fatalf("reason position %d outside input", st.ReasonPos)
	}
	// Parameters present in the statement, by an independent lexing.
	have := map[int]bool{}
	maxp := 0
	var sig []Token
	for _, tk := range Lex(sql, d) {
		if tk.Pos < st.Start || tk.End() > st.End || tk.Trivia() {
			continue
		}
		sig = append(sig, tk)
		if tk.Kind == Param && tk.Param > 0 {
			have[tk.Param] = true
			maxp = max(maxp, tk.Param)
		}
	}
	if st.Kind != Unknown && st.MaxParam != maxp {
		t.Fatalf("MaxParam = %d, statement uses up to %d", st.MaxParam, maxp)
	}
	need := func(what string, n int) {
		if !have[n] {
			t.Fatalf("%s names parameter %d, which the statement does not use", what, n)
		}
	}
	val := func(what string, v Value) {
		if v.Source == SourceParam {
			need(what, v.Param)
		}
		for _, n := range v.Params {
			need(what, n)
		}
	}
	if lk := st.Lookup; lk != nil {
		if st.Kind != Lookup || lk.Table == "" || len(lk.Pinned) == 0 {
			t.Fatalf("malformed lookup %+v", lk)
		}
		seen := map[string]bool{}
		for _, e := range lk.Pinned {
			if seen[e.Column] {
				t.Fatalf("column %s pinned twice in a Lookup", e.Column)
			}
			seen[e.Column] = true
			val("pinned", e.Value)
		}
		for _, x := range lk.Extra {
			for _, n := range x.Params {
				need("extra", n)
			}
		}
		for _, n := range lk.ExtraParams {
			need("extra params", n)
		}
	}
	for _, tg := range st.Targets {
		if tg.HasWhere && (tg.Where.Start > tg.Where.End || tg.Where.End > len(sql) || sql[tg.Where.Start:tg.Where.End] != tg.Where.Text) {
			t.Fatalf("WHERE span [%d,%d) does not hold %q", tg.Where.Start, tg.Where.End, tg.Where.Text)
		}
		if tg.ReturningAt > len(sql) {
			t.Fatalf("ReturningAt %d outside input", tg.ReturningAt)
		}
		for _, n := range tg.Where.Params {
			need("where", n)
		}
		for _, e := range tg.Pinned {
			val("pinned", e.Value)
		}
		for _, a := range tg.Set {
			val("set", a.Value)
		}
		for _, row := range tg.Rows {
			for _, v := range row {
				val("row", v)
			}
		}
	}
	switch st.Kind {
	case Lookup, OtherRead, Session:
		if st.Session != nil && (st.Session.Op == SessionExplain || st.Session.Op == SessionPrepare) {
			return
		}
		if i := dmlAt(sig, d); i >= 0 {
			t.Fatalf("%s contains a data-modifying statement at %d: %q", st.Kind, sig[i].Pos, sql)
		}
	}
}

// pgReserved are PostgreSQL reserved words that cannot name a table.
var pgReserved = map[string]bool{"set": true, "is": true, "in": true, "and": true, "or": true, "not": true,
	"null": true, "true": true, "false": true, "as": true}

// updateTarget matches "[ONLY] name [. name] [*] [[AS] alias] SET".
func updateTarget(toks []Token) bool {
	i := 0
	word := func(w string) bool {
		if i < len(toks) && toks[i].Kind == Ident && strings.EqualFold(toks[i].Text, w) {
			i++
			return true
		}
		return false
	}
	name := func() bool {
		if i < len(toks) && (toks[i].Kind == QuotedIdent || toks[i].Kind == Ident && !pgReserved[strings.ToLower(toks[i].Text)]) {
			i++
			return true
		}
		return false
	}
	word("only")
	if !name() {
		return false
	}
	for range 2 { // schema.table, db.schema.table
		if i+1 < len(toks) && toks[i].Text == "." {
			i++
			if !name() {
				return false
			}
		}
	}
	if i < len(toks) && toks[i].Text == "*" {
		i++
	}
	if word("as") {
		name()
	} else {
		name()
	}
	return word("set")
}

// dmlAt finds a data-modifying statement at the start of toks or after
// "(", spelled as PostgreSQL's grammar requires it (INSERT INTO, UPDATE
// name, DELETE FROM, MERGE INTO; MySQL and SQLite REPLACE INTO). It is
// written independently of the recognizer's isDML, which is broader.
func dmlAt(toks []Token, d Dialect) int {
	for i := range toks {
		if i > 0 && !toks[i-1].isPunct("(") {
			continue
		}
		if i+1 >= len(toks) {
			break
		}
		kw, next := strings.ToLower(toks[i].Text), toks[i+1]
		if toks[i].Kind != Ident {
			continue
		}
		nextWord := strings.ToLower(next.Text)
		switch {
		case (kw == "insert" || kw == "merge") && nextWord == "into" && next.Kind == Ident,
			kw == "replace" && d != Postgres && nextWord == "into" && next.Kind == Ident,
			kw == "delete" && nextWord == "from" && next.Kind == Ident,
			kw == "update" && updateTarget(toks[i+1:]):
			return i
		}
	}
	return -1
}
