package oracle

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cachedsql/cachedsql/parser"
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// node is a libpg_query JSON parse tree node.
type node = map[string]any

// tally counts what the oracle saw, for the test log.
type tally struct {
	total, parsed, rejected int
	kinds                   map[parser.Kind]int
	lookupsRejected         int // we said Lookup, PostgreSQL says syntax error
}

func TestGoldenAgainstPostgres(t *testing.T) {
	files, err := filepath.Glob("../testdata/golden/postgres/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	var sqls []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sql, _, _ := strings.Cut(string(data), "\n==== want\n")
		sqls = append(sqls, sql)
	}
	run(t, "golden", sqls)
}

var (
	genCount = flag.Int("n", 5000, "number of generated statements")
	genSeed  = flag.Uint64("seed", 1, "seed of the statement generator")
)

func TestGeneratedAgainstPostgres(t *testing.T) {
	run(t, "generated", generate(*genCount, *genSeed))
}

func run(t *testing.T, name string, sqls []string) {
	c := tally{kinds: map[parser.Kind]int{}}
	var unknowns []string
	for _, sql := range sqls {
		c.total++
		st := parser.Parse(sql, parser.Postgres)
		c.kinds[st.Kind]++
		res, err := pg_query.ParseToJSON(sql)
		if err != nil {
			c.rejected++
			if st.Kind == parser.Lookup {
				c.lookupsRejected++
			}
			continue
		}
		c.parsed++
		if st.Kind == parser.Unknown && len(unknowns) < 10 {
			unknowns = append(unknowns, fmt.Sprintf("%q: %s", sql, st.Reason))
		}
		var tree struct {
			Stmts []struct {
				Stmt node `json:"stmt"`
			} `json:"stmts"`
		}
		if err := json.Unmarshal([]byte(res), &tree); err != nil {
			t.Fatal(err)
		}
		parts := []*parser.Statement{st}
		if st.Kind == parser.Multi {
			parts = parts[:0]
			for i := range st.Parts {
				parts = append(parts, &st.Parts[i])
			}
		}
		if len(tree.Stmts) == 0 && st.Kind == parser.Unknown {
			continue // empty input: nothing to run
		}
		if len(parts) != len(tree.Stmts) {
			t.Errorf("%q: we see %d statements, PostgreSQL %d", sql, len(parts), len(tree.Stmts))
			continue
		}
		for i, p := range parts {
			if err := compare(p, tree.Stmts[i].Stmt); err != nil {
				t.Errorf("%q: we say %v: %v", sql, p.Kind, err)
			}
		}
	}
	for _, u := range unknowns {
		t.Logf("Unknown although PostgreSQL parses it: %s", u)
	}
	t.Logf("%s: %d statements, %d parsed by PostgreSQL, %d rejected (of which we called %d Lookup); kinds %v",
		name, c.total, c.parsed, c.rejected, c.lookupsRejected, fmtKinds(c.kinds))
}

func fmtKinds(m map[parser.Kind]int) string {
	var s []string
	for k := parser.Unknown; k <= parser.Multi; k++ {
		if m[k] > 0 {
			s = append(s, fmt.Sprintf("%v=%d", k, m[k]))
		}
	}
	return strings.Join(s, " ")
}

// compare checks one of our statements against PostgreSQL's tree for it.
func compare(st *parser.Statement, stmt node) error {
	dml := writes(stmt)
	switch st.Kind {
	case parser.Lookup:
		if err := checkLookup(st, stmt); err != nil {
			return err
		}
		fallthrough
	case parser.OtherRead, parser.TxControl:
		if len(dml) > 0 {
			return fmt.Errorf("tree writes %v", dml)
		}
	case parser.Session:
		if op := st.Session.Op; op != parser.SessionExplain && op != parser.SessionPrepare && len(dml) > 0 {
			return fmt.Errorf("tree writes %v", dml)
		}
	case parser.Write:
		var ours []string
		for _, tg := range st.Targets {
			switch tg.Op {
			case parser.OpDDL, parser.OpCall, parser.OpUnknown:
				// Only SELECT INTO among DDL has a DML-like tree target.
				if _, ok := stmt["SelectStmt"]; !ok {
					continue
				}
			}
			if tg.Table != "" {
				ours = append(ours, qual(tg.Schema, tg.Table))
			}
		}
		slices.Sort(ours)
		ours = slices.Compact(ours)
		if !slices.Equal(ours, dml) && !(isDDL(stmt) && len(dml) == 0) {
			return fmt.Errorf("targets %v, tree writes %v", ours, dml)
		}
	}
	return checkFunctions(st, stmt)
}

func isDDL(stmt node) bool {
	for k := range stmt {
		switch k {
		case "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "TruncateStmt", "CopyStmt", "SelectStmt", "ExplainStmt":
			return false
		}
	}
	return true
}

func qual(schema, table string) string {
	if schema != "" {
		return schema + "." + table
	}
	return table
}

// writes lists the tables the tree writes: DML targets anywhere (WITH
// queries included), TRUNCATE, COPY FROM, SELECT INTO, EXPLAIN ANALYZE.
func writes(stmt node) []string {
	var out []string
	add := func(rv any) {
		if m, ok := rv.(node); ok {
			if r, ok := m["RangeVar"].(node); ok {
				m = r
			}
			s, _ := m["schemaname"].(string)
			r, _ := m["relname"].(string)
			out = append(out, qual(s, r))
		}
	}
	if ex, ok := stmt["ExplainStmt"].(node); ok && !explainAnalyze(ex) {
		return nil
	}
	walk(stmt, func(key string, n node) {
		switch key {
		case "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt":
			add(n["relation"])
		case "TruncateStmt":
			for _, r := range list(n["relations"]) {
				add(r)
			}
		case "CopyStmt":
			if n["is_from"] == true {
				add(n["relation"])
			}
		case "SelectStmt":
			if into, ok := n["intoClause"].(node); ok {
				add(into["rel"])
			}
		}
	})
	slices.Sort(out)
	return slices.Compact(out)
}

func explainAnalyze(ex node) bool {
	for _, o := range list(ex["options"]) {
		d, _ := o.(node)["DefElem"].(node)
		if d["defname"] == "analyze" {
			arg, _ := d["arg"].(node)
			if arg == nil {
				return true
			}
			b, _ := json.Marshal(arg)
			s := strings.ToLower(string(b))
			return !strings.Contains(s, "false") && !strings.Contains(s, `"off"`)
		}
	}
	return false
}

func list(v any) []any { l, _ := v.([]any); return l }

// walk calls f for every node object in the tree, with its type name.
func walk(v any, f func(key string, n node)) {
	switch x := v.(type) {
	case node:
		for k, c := range x {
			if n, ok := c.(node); ok && k != "" && k[0] >= 'A' && k[0] <= 'Z' {
				f(k, n)
			}
			walk(c, f)
		}
	case []any:
		for _, c := range x {
			walk(c, f)
		}
	}
}

// checkLookup: one plain table, no join, subquery, aggregate, window, set
// operation, locking, grouping, offset; LIMIT absent or 1; WHERE an AND
// whose equality conjuncts cover every pinned column we report.
func checkLookup(st *parser.Statement, stmt node) error {
	sel, ok := stmt["SelectStmt"].(node)
	if !ok {
		return fmt.Errorf("tree is not a SELECT")
	}
	for _, k := range []string{"withClause", "groupClause", "havingClause", "windowClause", "lockingClause", "intoClause", "limitOffset", "larg", "valuesLists"} {
		if sel[k] != nil {
			return fmt.Errorf("tree has %s", k)
		}
	}
	if op, _ := sel["op"].(string); op != "" && op != "SETOP_NONE" {
		return fmt.Errorf("tree has set operation %s", op)
	}
	if d := list(sel["distinctClause"]); len(d) > 0 && d[0] != nil && len(d[0].(node)) > 0 {
		return fmt.Errorf("tree has DISTINCT ON")
	}
	if lc, ok := sel["limitCount"].(node); ok {
		c, _ := lc["A_Const"].(node)
		iv, _ := c["ival"].(node)
		if n, _ := iv["ival"].(float64); n != 1 {
			return fmt.Errorf("tree has LIMIT other than 1")
		}
	}
	from := list(sel["fromClause"])
	if len(from) != 1 {
		return fmt.Errorf("tree reads %d FROM items", len(from))
	}
	rv, ok := from[0].(node)["RangeVar"].(node)
	if !ok {
		return fmt.Errorf("tree's FROM item is not a plain table")
	}
	lk := st.Lookup
	s, _ := rv["schemaname"].(string)
	if rv["relname"] != lk.Table || s != lk.Schema {
		return fmt.Errorf("table %s, tree reads %v.%v", qual(lk.Schema, lk.Table), s, rv["relname"])
	}
	var bad string
	walk(sel, func(key string, n node) {
		switch key {
		case "SubLink", "RangeSubselect", "JoinExpr", "WindowDef", "RangeFunction", "GroupingFunc":
			bad = key
		case "FuncCall":
			if n["agg_star"] == true || n["agg_distinct"] == true || n["over"] != nil || n["agg_filter"] != nil {
				bad = "aggregate or window call"
			}
			if aggregates[funcName(n)] {
				bad = "aggregate " + funcName(n)
			}
		case "SQLValueFunction":
			bad = key
		case "TypeCast":
			tn, _ := n["typeName"].(node)
			if names := list(tn["names"]); len(names) > 0 {
				s, _ := names[len(names)-1].(node)["String"].(node)
				if typ, _ := s["sval"].(string); sessionTypes[typ] {
					bad = "cast to " + typ
				}
			}
		}
		if key == "FuncCall" && bad == "" && !immutable[funcName(n)] {
			bad = "call of " + funcName(n) + ", not known to be immutable"
		}
	})
	if bad != "" {
		return fmt.Errorf("tree has %s", bad)
	}
	eqs := map[string]bool{}
	if !conjunctEqualities(sel["whereClause"], eqs) {
		return fmt.Errorf("tree's WHERE is not an AND at the top")
	}
	for _, e := range lk.Pinned {
		if !eqs[e.Column] {
			return fmt.Errorf("pinned %s is not an equality conjunct in the tree (%v)", e.Column, eqs)
		}
	}
	return nil
}

// immutable and sessionTypes are the oracle's own lists, written apart
// from the parser's allowlist: what PostgreSQL's pg_proc marks IMMUTABLE,
// and types whose text form depends on the session or the catalog.
var immutable = map[string]bool{"lower": true, "upper": true, "btrim": true, "ltrim": true, "rtrim": true,
	"abs": true, "length": true, "char_length": true, "octet_length": true, "substring": true, "substr": true,
	"replace": true, "left": true, "right": true, "lpad": true, "rpad": true, "split_part": true, "strpos": true,
	"reverse": true, "repeat": true, "initcap": true, "md5": true, "round": true, "ceil": true, "floor": true,
	"trunc": true, "mod": true, "power": true, "sqrt": true, "sign": true, "ascii": true, "chr": true,
	"starts_with": true, "translate": true, "position": true, "ceiling": true, "bit_length": true,
	"character_length": true, "array_length": true, "cardinality": true, "jsonb_extract_path_text": true,
	"jsonb_extract_path": true, "jsonb_typeof": true, "coalesce": true, "nullif": true, "greatest": true, "least": true,
	"timezone": true}

var sessionTypes = map[string]bool{"timestamptz": true, "timestamp": true, "date": true, "time": true,
	"timetz": true, "interval": true, "regclass": true, "regtype": true, "regproc": true, "regnamespace": true}

var aggregates = map[string]bool{"count": true, "sum": true, "avg": true, "min": true, "max": true,
	"array_agg": true, "string_agg": true, "json_agg": true, "jsonb_agg": true, "bool_and": true, "bool_or": true}

func funcName(n node) string {
	parts := list(n["funcname"])
	if len(parts) == 0 {
		return ""
	}
	s, _ := parts[len(parts)-1].(node)["String"].(node)
	name, _ := s["sval"].(string)
	return name
}

// conjunctEqualities collects the columns of "column = param/literal"
// conjuncts of an AND tree (wrappers: one-argument calls and casts). It
// returns false if the top is not an AND of conjuncts.
func conjunctEqualities(v any, out map[string]bool) bool {
	n, ok := v.(node)
	if !ok {
		return false
	}
	if b, ok := n["BoolExpr"].(node); ok {
		if b["boolop"] != "AND_EXPR" {
			return false
		}
		for _, a := range list(b["args"]) {
			conjunctEqualities(a, out)
		}
		return true
	}
	e, ok := n["A_Expr"].(node)
	if !ok || e["kind"] != "AEXPR_OP" {
		return true // another kind of conjunct
	}
	name := list(e["name"])
	if len(name) != 1 || name[0].(node)["String"].(node)["sval"] != "=" {
		return true
	}
	l, r := unwrap(e["lexpr"]), unwrap(e["rexpr"])
	for _, pair := range [][2]node{{l, r}, {r, l}} {
		col, val := pair[0], pair[1]
		if c, ok := col["ColumnRef"].(node); ok && (val["ParamRef"] != nil || val["A_Const"] != nil) {
			f := list(c["fields"])
			s, _ := f[len(f)-1].(node)["String"].(node)
			name, _ := s["sval"].(string)
			out[name] = true
		}
	}
	return true
}

func unwrap(v any) node {
	n, _ := v.(node)
	for range 100 {
		switch {
		case n["TypeCast"] != nil:
			n, _ = n["TypeCast"].(node)["arg"].(node)
		case n["FuncCall"] != nil && len(list(n["FuncCall"].(node)["args"])) == 1:
			n, _ = list(n["FuncCall"].(node)["args"])[0].(node)
		case n["A_Expr"] != nil && n["A_Expr"].(node)["lexpr"] == nil:
			n, _ = n["A_Expr"].(node)["rexpr"].(node) // unary minus
		default:
			return n
		}
	}
	return n
}

// sqlFuncs are calls PostgreSQL's grammar makes of special syntax:
// TRIM(BOTH ...) is btrim, x AT TIME ZONE z is timezone(z, x). Values are
// the names we report, "" for syntax that is not written as a call.
var sqlFuncs = map[string]string{"btrim": "trim", "ltrim": "trim", "rtrim": "trim", "pg_collation_for": "collation",
	"timezone": ""}

// checkFunctions: every function the tree calls is in st.Functions.
func checkFunctions(st *parser.Statement, stmt node) error {
	if st.Kind == parser.Unknown || st.Kind == parser.Session || st.Kind == parser.TxControl {
		return nil
	}
	if isDDL(stmt) {
		return nil // DDL is a write of its table or of any table; its expressions are not calls made now
	}
	have := map[string]bool{}
	for _, f := range st.Functions {
		if i := strings.LastIndexByte(f, '.'); i >= 0 {
			f = f[i+1:]
		}
		have[f] = true
	}
	var missing []string
	walk(stmt, func(key string, n node) {
		if key != "FuncCall" {
			return
		}
		name := funcName(n)
		if alt, ok := sqlFuncs[name]; ok && (alt == "" || have[alt] || have[name]) {
			return
		}
		if !have[name] {
			missing = append(missing, name)
		}
	})
	if len(missing) > 0 {
		return fmt.Errorf("tree calls %v, Functions = %v", missing, st.Functions)
	}
	return nil
}
