package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cachedsql/cachedsql"
	sqlparser "github.com/cachedsql/cachedsql/parser"
)

const checkUsage = `usage: cachedsql check -rules rules.yaml [-dialect postgres|mysql|sqlite] [-json] FILE...

Reports what cachedsql does with every statement of the files, without a
database: CACHED (table, key), PASS-THROUGH (why) or WRITE (what a
committed write flushes: keys from RETURNING, old keys by pre-read, or whole
tables, and why).

FILE is a .sql file (sqlc query files with "-- name:" headers, or plain
statements separated by ';') or a .go file (string literals passed to
Query/QueryRow/Exec/Prepare[Context], sqlx's Get/Select/NamedExec...,
and sqlc's generated query constants).

Without a database the rules alone describe the tables: key column types
are unknown, so a cast on a key value ($1::bigint) is not known to keep it
and the lookup is reported as PASS-THROUGH although the driver, which reads
the catalog, may cache it.

Exit status: 0; 1 when a statement flushes a cached table table-wide (gate
CI on it); 2 for usage errors and unreadable files.

flags:
`

// checkedStmt is one statement of one file, with its result.
type checkedStmt struct {
	File string `json:"file"`
	Line int    `json:"line"`
	cachedsql.CheckResult
}

// MarshalJSON spells the result's fields in lower case.
func (s checkedStmt) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		File      string   `json:"file"`
		Line      int      `json:"line"`
		Name      string   `json:"name,omitempty"`
		Kind      string   `json:"kind"`
		Table     string   `json:"table,omitempty"`
		Key       string   `json:"key,omitempty"`
		Reason    string   `json:"reason,omitempty"`
		Flush     []string `json:"flush,omitempty"`
		TableWide bool     `json:"table_wide,omitempty"`
		SQL       string   `json:"sql"`
	}{s.File, s.Line, s.Name, s.Kind, s.Table, s.Key, s.Reason, s.Flush, s.TableWide, s.SQL})
}

func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, checkUsage)
		fs.PrintDefaults()
	}
	rulesPath := fs.String("rules", "", "rules file (required)")
	dialect := fs.String("dialect", "postgres", "SQL dialect: postgres, mysql or sqlite")
	asJSON := fs.Bool("json", false, "print a JSON array instead of one line per statement")
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if *rulesPath == "" {
		fs.Usage()
		return usageError(errors.New("check: -rules is required"))
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError(errors.New("check: no files given"))
	}
	rules, err := cachedsql.LoadRules(*rulesPath)
	if err != nil {
		return usageError(fmt.Errorf("check: %w", err))
	}
	checker, err := cachedsql.NewChecker(rules, *dialect)
	if err != nil {
		return usageError(fmt.Errorf("check: -dialect: %w", err))
	}
	var all []checkedStmt
	for _, file := range fs.Args() {
		stmts, err := checkFile(checker, file)
		if err != nil {
			return usageError(fmt.Errorf("check: %w", err))
		}
		all = append(all, stmts...)
	}
	if *asJSON {
		if all == nil {
			all = []checkedStmt{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(all); err != nil {
			return err
		}
	} else {
		for _, s := range all {
			fmt.Fprintln(stdout, formatChecked(s))
		}
	}
	wide := 0
	for _, s := range all {
		if s.TableWide {
			wide++
		}
	}
	if wide > 0 {
		return exitError{code: 1, err: fmt.Errorf("check: %d statement(s) flush cached tables table-wide", wide)}
	}
	return nil
}

// formatChecked prints one result on one line:
//
//	query.sql:3: GetUser: CACHED users (id)
//	query.sql:9: ListUsers: PASS-THROUGH: no WHERE clause
//	query.sql:12: UpdateEmail: WRITE users: keys (id), (email) of users from RETURNING; ...
//	query.sql:15: DeleteOrg: WRITE TABLE-WIDE: table users (users cascades from orgs)
func formatChecked(s checkedStmt) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: ", s.File, s.Line)
	if s.Name != "" {
		b.WriteString(s.Name + ": ")
	}
	switch s.Kind {
	case cachedsql.CheckCached:
		fmt.Fprintf(&b, "CACHED %s (%s)", s.Table, s.Key)
	case cachedsql.CheckPassThrough:
		fmt.Fprintf(&b, "PASS-THROUGH: %s", s.Reason)
	case cachedsql.CheckWrite:
		b.WriteString("WRITE")
		if s.TableWide {
			b.WriteString(" TABLE-WIDE")
		}
		b.WriteString(": ")
		if len(s.Flush) == 0 {
			b.WriteString("flushes nothing (" + s.Reason + ")")
			break
		}
		b.WriteString(strings.Join(s.Flush, "; "))
		if s.TableWide && s.Reason != "" {
			b.WriteString(" (" + s.Reason + ")")
		}
	}
	return b.String()
}

// checkFile classifies every statement of one .sql or .go file.
func checkFile(c *cachedsql.Checker, file string) ([]checkedStmt, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	name := filepath.ToSlash(file)
	if strings.HasSuffix(file, ".go") {
		return checkGo(c, name, src)
	}
	text := string(src)
	var out []checkedStmt
	for _, r := range c.Script(text) {
		if q, ok := sqlcParams(r.SQL); ok {
			// Classify the statement as sqlc sends it.
			name, offset := r.Name, r.Offset
			r = c.Query(q)
			r.Name, r.Offset = name, offset
		}
		out = append(out, checkedStmt{File: name, Line: 1 + strings.Count(text[:r.Offset], "\n"), CheckResult: r})
	}
	return out, nil
}

// queryMethods are the methods whose string arguments are SQL: database/sql,
// sqlx and pgx-style names. The first argument that is a constant string
// is the query.
var queryMethods = map[string]bool{
	"Query": true, "QueryContext": true, "QueryRow": true, "QueryRowContext": true,
	"Exec": true, "ExecContext": true, "Prepare": true, "PrepareContext": true,
	// sqlx
	"Get": true, "GetContext": true, "Select": true, "SelectContext": true,
	"Queryx": true, "QueryxContext": true, "QueryRowx": true, "QueryRowxContext": true,
	"MustExec": true, "MustExecContext": true, "Preparex": true, "PreparexContext": true,
	"NamedExec": true, "NamedExecContext": true, "NamedQuery": true, "NamedQueryContext": true,
	"PrepareNamed": true, "PrepareNamedContext": true,
}

// goQuery is one SQL string found in a Go file.
type goQuery struct {
	pos   token.Pos
	sql   string
	named bool // passed to sqlx's Named*: :name placeholders
}

// checkGo finds the SQL strings of a Go file (with go/parser, not text
// matching) and classifies each, as the driver receives it.
func checkGo(c *cachedsql.Checker, name string, src []byte) ([]checkedStmt, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	// String constants, by name: sqlc generates `const getUser = "-- name: ..."`.
	consts := map[string]*goQuery{}
	ast.Inspect(f, func(n ast.Node) bool {
		gd, ok := n.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			return true
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if i < len(vs.Values) {
					if s, ok := constString(vs.Values[i], nil); ok {
						consts[id.Name] = &goQuery{pos: vs.Values[i].Pos(), sql: s}
					}
				}
			}
		}
		return true
	})
	var found []*goQuery
	seen := map[*goQuery]bool{}
	add := func(q *goQuery) {
		if !seen[q] {
			seen[q] = true
			found = append(found, q)
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !queryMethods[sel.Sel.Name] {
			return true
		}
		for _, arg := range call.Args {
			if id, ok := arg.(*ast.Ident); ok && consts[id.Name] != nil {
				q := consts[id.Name]
				q.named = q.named || strings.HasPrefix(sel.Sel.Name, "Named") || strings.HasPrefix(sel.Sel.Name, "PrepareNamed")
				add(q)
				break
			}
			if s, ok := constString(arg, consts); ok {
				add(&goQuery{pos: arg.Pos(), sql: s, named: strings.HasPrefix(sel.Sel.Name, "Named") || strings.HasPrefix(sel.Sel.Name, "PrepareNamed")})
				break
			}
		}
		return true
	})
	// sqlc's query constants, even where the call is elsewhere.
	for _, q := range consts {
		if strings.HasPrefix(strings.TrimSpace(q.sql), "-- name:") {
			add(q)
		}
	}
	sortByPos(found)
	out := make([]checkedStmt, 0, len(found))
	for _, q := range found {
		query := q.sql
		if q.named {
			query = bindNamed(query)
		}
		r := c.Query(query)
		out = append(out, checkedStmt{File: name, Line: fset.Position(q.pos).Line, CheckResult: r})
	}
	return out, nil
}

func sortByPos(qs []*goQuery) {
	for i := 1; i < len(qs); i++ {
		for j := i; j > 0 && qs[j].pos < qs[j-1].pos; j-- {
			qs[j], qs[j-1] = qs[j-1], qs[j]
		}
	}
}

// constString evaluates a constant string expression: a literal, a
// constant's name, or a + of those.
func constString(e ast.Expr, consts map[string]*goQuery) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.ParenExpr:
		return constString(e.X, consts)
	case *ast.Ident:
		if q := consts[e.Name]; q != nil {
			return q.sql, true
		}
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok1 := constString(e.X, consts)
		y, ok2 := constString(e.Y, consts)
		return x + y, ok1 && ok2
	}
	return "", false
}

// bindNamed turns sqlx's :name placeholders into $1, $2, ... as sqlx does
// (one per occurrence) before the query reaches the driver, using the
// parser's lexer so that ':' in strings, comments and '::' casts stay.
func bindNamed(query string) string {
	toks := sqlparser.Lex(query, sqlparser.Postgres)
	var b strings.Builder
	n := 0
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.Kind == sqlparser.Op && t.Text == ":" && i+1 < len(toks) && toks[i+1].Kind == sqlparser.Ident {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			i++
			continue
		}
		b.WriteString(t.Text)
	}
	return b.String()
}

// sqlcParams rewrites sqlc's named parameters (sqlc.arg(name),
// sqlc.narg(name), @name) to the $N placeholders sqlc generates, numbered
// after the statement's own $N in order of first appearance, with the
// parser's lexer. ok is false when there are none.
func sqlcParams(query string) (string, bool) {
	toks := sqlparser.Lex(query, sqlparser.Postgres)
	maxN := 0
	for _, t := range toks {
		if t.Kind == sqlparser.Param && t.Param > maxN {
			maxN = t.Param
		}
	}
	sig := func(i int) int { // next significant token at or after i
		for i < len(toks) && toks[i].Trivia() {
			i++
		}
		return i
	}
	var names []string
	number := func(name string) string {
		i := slices.Index(names, name)
		if i < 0 {
			names = append(names, name)
			i = len(names) - 1
		}
		return "$" + strconv.Itoa(maxN+1+i)
	}
	var b strings.Builder
	found := false
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.Kind == sqlparser.Ident && strings.EqualFold(t.Text, "sqlc") {
			dot, fn := sig(i+1), sig(sig(i+1)+1)
			open := sig(fn + 1)
			arg := sig(open + 1)
			cl := sig(arg + 1)
			if cl < len(toks) && toks[dot].Text == "." && toks[fn].Kind == sqlparser.Ident &&
				(strings.EqualFold(toks[fn].Text, "arg") || strings.EqualFold(toks[fn].Text, "narg")) &&
				toks[open].Text == "(" && toks[cl].Text == ")" &&
				(toks[arg].Kind == sqlparser.Ident || toks[arg].Kind == sqlparser.QuotedIdent || toks[arg].Kind == sqlparser.String) {
				b.WriteString(number(strings.Trim(toks[arg].Name(), "'")))
				i, found = cl, true
				continue
			}
		}
		if t.Kind == sqlparser.Op && t.Text == "@" && i+1 < len(toks) && toks[i+1].Kind == sqlparser.Ident {
			b.WriteString(number(toks[i+1].Name()))
			i, found = i+1, true
			continue
		}
		b.WriteString(t.Text)
	}
	return b.String(), found
}
