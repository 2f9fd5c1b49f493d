package cachedsql

// The rules file: YAML decoding with line numbers for every error.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// LoadRules reads and validates a rules file. Errors name the file and the
// line. The format (every field optional except keys; the Go fields
// document the defaults):
//
//	ttl: 10m              # Rules.TTL: default TTL of every table
//	miss_ttl: 1m          # Rules.MissTTL
//	tables:
//	  users:
//	    keys: [[id], [email], [org_id, slug]]   # primary key first, then natural keys
//	    normalize: {email: lower}               # citext, unique lower(email) index
//	    ttl: 5m
//	    miss_ttl: 30s
//	    cache_misses: true                      # false: TableRule.DisableMissCache
//	    mode: cache                             # or flush_only
//	    flush_with: [orgs]                      # orgs rows cascade into users
//	  billing.invoices:
//	    keys: [[id]]
//	functions:                                  # called from SELECT, and they write
//	  create_user: [users]
//
// Durations are Go durations (90s, 10m, 1h30m). Unknown fields are errors,
// at every level, so a typo cannot silently disable a rule. Anchors and
// aliases work; merge keys (<<) do not.
func LoadRules(path string) (Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Rules{}, fmt.Errorf("cachedsql: rules: %w", err)
	}
	r, err := ParseRules(data)
	var re *RulesError
	if errors.As(err, &re) {
		re.File = path
	}
	return r, err
}

// ParseRules parses and validates rules in YAML, in the format LoadRules
// describes. An empty document is valid and caches
// nothing. Errors name the line.
func ParseRules(data []byte) (Rules, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return Rules{}, yamlError(err)
	}
	// A second document would be silently ignored: say so instead.
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return Rules{}, yamlError(err)
		}
		return Rules{}, &RulesError{Line: extra.Line, Msg: "more than one YAML document"}
	}
	var p rulesReader
	if len(doc.Content) == 0 {
		return Rules{}, nil // empty, or only comments
	}
	top := resolve(doc.Content[0])
	if isNull(top) {
		return Rules{}, nil
	}
	r, err := p.rules(top)
	if err != nil {
		return Rules{}, err
	}
	if err := r.validate(&p.lines); err != nil {
		return Rules{}, err
	}
	return r, nil
}

// yamlError turns the YAML library's syntax errors ("yaml: line 3: did not
// find expected key") into RulesErrors with the line split out.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, after
			}
		}
	}
	return &RulesError{Line: line, Msg: "invalid YAML: " + msg}
}

// rulesReader turns the YAML tree into Rules, recording lines as it goes. It
// checks only shape (fields, types, durations); validate does the rest.
type rulesReader struct {
	lines ruleLines
}

func resolve(n *yaml.Node) *yaml.Node {
	// Anchors and aliases are plain YAML; follow them. The parser rejects
	// an alias to a node that contains it, so this terminates.
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// entries walks a mapping's key/value pairs, rejecting non-string and
// duplicate keys.
func entries(n *yaml.Node, where string, f func(k, v *yaml.Node) error) error {
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || isNull(k) {
			return &RulesError{Line: k.Line, Msg: fmt.Sprintf("%s: want a name as key, got %s", where, kindName(k))}
		}
		if k.Tag == "!!merge" {
			return &RulesError{Line: k.Line, Msg: fmt.Sprintf("%s: merge keys (<<) are not supported", where)}
		}
		if seen[k.Value] {
			return &RulesError{Line: k.Line, Msg: fmt.Sprintf("%s: %q appears twice", where, k.Value)}
		}
		seen[k.Value] = true
		if err := f(k, v); err != nil {
			return err
		}
	}
	return nil
}

func unknownField(k *yaml.Node, where string, known ...string) error {
	return &RulesError{Line: k.Line, Where: where, Msg: fmt.Sprintf("unknown field %q (want one of %s)", k.Value, strings.Join(known, ", "))}
}

func (p *rulesReader) rules(top *yaml.Node) (Rules, error) {
	if top.Kind != yaml.MappingNode {
		return Rules{}, &RulesError{Line: top.Line, Msg: fmt.Sprintf("want a mapping with ttl, miss_ttl, tables, functions at top level, got %s", kindName(top))}
	}
	var r Rules
	err := entries(top, "rules", func(k, v *yaml.Node) (err error) {
		switch k.Value {
		case "ttl":
			p.lines.ttl = v.Line
			r.TTL, err = duration(v, "", "ttl")
		case "miss_ttl":
			p.lines.missTTL = v.Line
			r.MissTTL, err = duration(v, "", "miss_ttl")
		case "tables":
			r.Tables, err = p.tables(v)
		case "functions":
			r.Functions, err = p.functions(v)
		default:
			err = unknownField(k, "", "ttl", "miss_ttl", "tables", "functions")
		}
		return err
	})
	return r, err
}

func (p *rulesReader) tables(n *yaml.Node) (map[string]TableRule, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, &RulesError{Line: n.Line, Msg: "tables: want a mapping of table names to rules, got " + kindName(n)}
	}
	tables := make(map[string]TableRule, len(n.Content)/2)
	p.lines.tables = make(map[string]*tableLines, len(n.Content)/2)
	err := entries(n, "tables", func(k, v *yaml.Node) error {
		tl := &tableLines{name: k.Line}
		p.lines.tableOrder = append(p.lines.tableOrder, k.Value)
		p.lines.tables[k.Value] = tl
		t, err := p.table(v, tl, "table "+strconv.Quote(k.Value))
		tables[k.Value] = t
		return err
	})
	return tables, err
}

func (p *rulesReader) table(n *yaml.Node, tl *tableLines, where string) (TableRule, error) {
	var t TableRule
	if isNull(n) {
		return t, nil // reported as "no keys" by validate
	}
	if n.Kind != yaml.MappingNode {
		return t, &RulesError{Line: n.Line, Where: where, Msg: "want a mapping with keys, normalize, ttl, miss_ttl, cache_misses, mode, flush_with; got " + kindName(n)}
	}
	err := entries(n, where, func(k, v *yaml.Node) (err error) {
		switch k.Value {
		case "keys":
			t.Keys, err = p.keys(v, tl, where)
		case "normalize":
			t.Normalize, err = normalize(v, tl, where)
		case "ttl":
			tl.ttl = v.Line
			t.TTL, err = duration(v, where, "ttl")
		case "miss_ttl":
			tl.missTTL = v.Line
			t.MissTTL, err = duration(v, where, "miss_ttl")
		case "cache_misses":
			tl.cacheMisses = v.Line
			var b bool
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
				return &RulesError{Line: v.Line, Where: where, Msg: "cache_misses: want true or false, got " + kindName(v)}
			}
			t.DisableMissCache = !b
		case "mode":
			tl.mode = v.Line
			var s string
			s, err = str(v, where, "mode")
			t.Mode = Mode(s)
		case "flush_with":
			t.FlushWith, tl.flushWith, err = strList(v, where, "flush_with")
		default:
			err = unknownField(k, where, "keys", "normalize", "ttl", "miss_ttl", "cache_misses", "mode", "flush_with")
		}
		return err
	})
	return t, err
}

func (p *rulesReader) keys(n *yaml.Node, tl *tableLines, where string) ([][]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, &RulesError{Line: n.Line, Where: where, Msg: "keys: want a list of keys, each a list of columns, e.g. [[id], [org_id, slug]]; got " + kindName(n)}
	}
	keys := make([][]string, 0, len(n.Content))
	for i, kn := range n.Content {
		kn = resolve(kn)
		tl.keys = append(tl.keys, kn.Line)
		if kn.Kind != yaml.SequenceNode && !isNull(kn) {
			return nil, &RulesError{Line: kn.Line, Where: where, Msg: fmt.Sprintf("key %d: want a list of columns, e.g. [%s]; got %s", i+1, kn.Value, kindName(kn))}
		}
		cols, lines, err := strList(kn, where, fmt.Sprintf("key %d", i+1))
		if err != nil {
			return nil, err
		}
		keys = append(keys, cols)
		tl.cols = append(tl.cols, lines)
	}
	return keys, nil
}

func normalize(n *yaml.Node, tl *tableLines, where string) (map[string]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, &RulesError{Line: n.Line, Where: where, Msg: "normalize: want a mapping of column to normalisation, e.g. {email: lower}; got " + kindName(n)}
	}
	m := make(map[string]string, len(n.Content)/2)
	tl.normalize = make(map[string]int, len(n.Content)/2)
	tl.normalizeValue = make(map[string]int, len(n.Content)/2)
	err := entries(n, where+": normalize", func(k, v *yaml.Node) error {
		s, err := str(v, where, "normalize: column "+strconv.Quote(k.Value))
		m[k.Value] = s
		tl.normalize[k.Value] = k.Line
		tl.normalizeValue[k.Value] = v.Line
		return err
	})
	return m, err
}

func (p *rulesReader) functions(n *yaml.Node) (map[string][]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, &RulesError{Line: n.Line, Msg: "functions: want a mapping of function names to the tables they write, got " + kindName(n)}
	}
	fns := make(map[string][]string, len(n.Content)/2)
	p.lines.funcs = make(map[string]*funcLines, len(n.Content)/2)
	err := entries(n, "functions", func(k, v *yaml.Node) error {
		where := "function " + strconv.Quote(k.Value)
		tables, lines, err := strList(v, where, "tables")
		fns[k.Value] = tables
		p.lines.funcOrder = append(p.lines.funcOrder, k.Value)
		p.lines.funcs[k.Value] = &funcLines{name: k.Line, tables: lines}
		return err
	})
	return fns, err
}

// str decodes a scalar string; numbers and booleans are taken as written.
func str(n *yaml.Node, where, field string) (string, error) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return "", &RulesError{Line: n.Line, Where: where, Msg: fmt.Sprintf("%s: want a string, got %s", field, kindName(n))}
	}
	return n.Value, nil
}

// strList decodes a list of strings (null is an empty list) and the line of
// each.
func strList(n *yaml.Node, where, field string) ([]string, []int, error) {
	if isNull(n) {
		return nil, nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, nil, &RulesError{Line: n.Line, Where: where, Msg: fmt.Sprintf("%s: want a list of names, got %s", field, kindName(n))}
	}
	out := make([]string, 0, len(n.Content))
	lines := make([]int, 0, len(n.Content))
	for _, e := range n.Content {
		e = resolve(e)
		s, err := str(e, where, field)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, s)
		lines = append(lines, e.Line)
	}
	return out, lines, nil
}

// duration decodes a Go duration ("90s", "10m", "1h30m"); range checks are
// validate's.
func duration(n *yaml.Node, where, field string) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return 0, &RulesError{Line: n.Line, Where: where, Msg: fmt.Sprintf("%s: want a duration such as 10m, got %s", field, kindName(n))}
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		// time's message repeats the input; ours says what is accepted,
		// including the common "600" (no unit) and "1d" (no such unit).
		return 0, &RulesError{Line: n.Line, Where: where, Msg: fmt.Sprintf("%s: malformed duration %q (want a number with a unit: ms, s, m, h, e.g. 10m or 1h30m)", field, n.Value)}
	}
	return d, nil
}
