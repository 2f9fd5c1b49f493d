package parser

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expectations in testdata/golden")

// goldenSep separates a case's SQL from its expected classification.
const goldenSep = "\n==== want\n"

// TestGolden parses every testdata/golden/<dialect>/*.txt case: the SQL,
// then goldenSep, then the expected rendering of the result. With -update
// it rewrites the expectations, which must then be reviewed by hand.
func TestGolden(t *testing.T) {
	for _, d := range []Dialect{Postgres, MySQL, SQLite} {
		files, err := filepath.Glob(filepath.Join("testdata", "golden", d.String(), "*.txt"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			t.Run(d.String()+"/"+filepath.Base(file), func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				sql, want, _ := strings.Cut(string(data), goldenSep)
				got := render(Parse(sql, d))
				if *update {
					if err := os.WriteFile(file, []byte(sql+goldenSep+got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				if got != want {
					t.Errorf("%s\n got:\n%s\nwant:\n%s", sql, got, want)
				}
			})
		}
	}
}

// goldenSQL returns every golden statement of dialect d.
func goldenSQL(t testing.TB, d Dialect) []string {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", d.String(), "*.txt"))
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sql, _, _ := strings.Cut(string(data), goldenSep)
		out = append(out, sql)
	}
	return out
}

// render prints a Statement one fact per line, for review by eye.
func render(st *Statement) string {
	var b strings.Builder
	renderTo(&b, st, "")
	return b.String()
}

func renderTo(b *strings.Builder, st *Statement, in string) {
	p := func(format string, args ...any) { fmt.Fprintf(b, in+format+"\n", args...) }
	p("%s [%d,%d)", st.Kind, st.Start, st.End)
	if st.Reason != "" {
		p("reason: %s @%d", st.Reason, st.ReasonPos)
	}
	if st.Name != "" || st.Cmd != "" {
		p("sqlc: %s %s", st.Name, st.Cmd)
	}
	if st.MaxParam > 0 {
		p("maxparam: %d", st.MaxParam)
	}
	if len(st.Functions) > 0 {
		p("functions: %s", strings.Join(st.Functions, ", "))
	}
	if st.Explained {
		p("explain analyze")
	}
	if lk := st.Lookup; lk != nil {
		p("table: %s", qname(lk.Schema, lk.Table, lk.Alias))
		for _, e := range lk.Pinned {
			p("pinned: %s", eqString(e))
		}
		cols := make([]string, len(lk.Columns))
		for i, c := range lk.Columns {
			cols[i] = colString(c)
		}
		p("columns: %s", strings.Join(cols, " | "))
		for _, x := range lk.Extra {
			p("extra: %s %v", x.Text, x.Params)
		}
		if lk.ExtraParams != nil {
			p("extraparams: %v", lk.ExtraParams)
		}
		if lk.Limit1 || lk.OrderBy {
			p("limit1=%v orderby=%v", lk.Limit1, lk.OrderBy)
		}
	}
	if st.CTEReads {
		p("cte reads")
	}
	for _, tg := range st.Targets {
		p("target: %s %s%s", tg.Op, qname(tg.Schema, tg.Table, tg.Alias), map[bool]string{true: " (in WITH)"}[tg.InCTE])
		if tg.HasWhere {
			p("  where: [%d,%d) %q params=%v pure=%v", tg.Where.Start, tg.Where.End, tg.Where.Text, tg.Where.Params, tg.PureKeyWhere)
		}
		for _, e := range tg.Pinned {
			p("  pinned: %s", eqString(e))
		}
		for _, a := range tg.Set {
			p("  set: %s = %s", a.Column, valString(a.Value))
		}
		if tg.Columns != nil {
			p("  columns: %s", strings.Join(tg.Columns, ", "))
		}
		for _, row := range tg.Rows {
			vs := make([]string, len(row))
			for i, v := range row {
				vs[i] = valString(v)
			}
			p("  row: %s", strings.Join(vs, ", "))
		}
		if tg.Conflict != nil || tg.ConflictConstraint != "" || tg.DoNothing || tg.Replace {
			p("  conflict: %v constraint=%q nothing=%v replace=%v", tg.Conflict, tg.ConflictConstraint, tg.DoNothing, tg.Replace)
		}
		for _, f := range tg.From {
			p("  from: %s", qname(f.Schema, f.Table, f.Alias))
		}
		if tg.Returning != nil {
			cols := make([]string, len(tg.Returning))
			for i, c := range tg.Returning {
				cols[i] = colString(c)
			}
			p("  returning: %s", strings.Join(cols, " | "))
		}
		if tg.ReturningAt >= 0 {
			p("  returning at: %d", tg.ReturningAt)
		}
	}
	if tx := st.Tx; tx != nil {
		p("tx: %s isolation=%q ro=%v rw=%v deferrable=%v notdeferrable=%v chain=%v name=%q mode=%q global=%v",
			tx.Op, tx.Isolation, tx.ReadOnly, tx.ReadWrite, tx.Deferrable, tx.NotDeferrable, tx.Chain, tx.Name, tx.Mode, tx.Global)
	}
	if ss := st.Session; ss != nil {
		p("session: %s var=%q value=%q local=%v affects=%b", ss.Op, ss.Variable, ss.Value, ss.Local, ss.Affects)
	}
	for i := range st.Parts {
		p("part %d:", i)
		renderTo(b, &st.Parts[i], in+"  ")
	}
}

func qname(schema, table, alias string) string {
	s := table
	if schema != "" {
		s = schema + "." + s
	}
	if s == "" {
		s = "<any table>"
	}
	if alias != "" {
		s += " AS " + alias
	}
	return s
}

func eqString(e Equality) string {
	col := e.Column
	if e.Table != "" {
		col = e.Table + "." + col
	}
	for _, w := range e.ColumnWrap {
		col = wrapString(w, col)
	}
	return col + " = " + valString(e.Value)
}

func wrapString(w, s string) string {
	if strings.HasPrefix(w, "::") {
		return "(" + s + ")" + w
	}
	return w + "(" + s + ")"
}

func valString(v Value) string {
	var s string
	switch v.Source {
	case SourceParam:
		s = fmt.Sprintf("$%d", v.Param)
	case SourceLiteral:
		s = fmt.Sprintf("%s %q", v.Literal, v.Text)
	case SourceDefault:
		s = "DEFAULT"
	case SourceExpr:
		s = fmt.Sprintf("expr %q params=%v", v.Text, v.Params)
	default:
		s = "?"
	}
	for _, w := range v.Wrap {
		s = wrapString(w, s)
	}
	return s
}

func colString(c Column) string {
	s := c.Expr
	if c.Name != "" {
		s = "col " + c.Name
		if c.Table != "" {
			s = "col " + c.Table + "." + c.Name
		}
	}
	if c.Star {
		s = "star " + c.Expr
	}
	if c.Alias != "" {
		s += " AS " + c.Alias
	}
	return s
}
