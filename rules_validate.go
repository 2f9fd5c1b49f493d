package cachedsql

// Validation of rules, shared by ParseRules (which knows YAML lines) and
// Rules.Validate (which does not).

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ruleLines records where ParseRules found each value, so that the checks
// Validate runs on Go values can name YAML lines. A nil *ruleLines (rules
// built in Go) yields line 0 everywhere.
type ruleLines struct {
	ttl, missTTL int
	tableOrder   []string // table names as written, in file order
	tables       map[string]*tableLines
	funcOrder    []string
	funcs        map[string]*funcLines
}

type tableLines struct {
	name               int
	keys               []int
	cols               [][]int
	normalize          map[string]int // column as written -> its entry
	normalizeValue     map[string]int
	ttl, missTTL, mode int
	cacheMisses        int
	flushWith          []int
}

type funcLines struct {
	name   int
	tables []int
}

// at is s[i], or 0 when the line was not recorded.
func at(s []int, i int) int {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func (l *ruleLines) table(name string) *tableLines {
	if l != nil {
		if t := l.tables[name]; t != nil {
			return t
		}
	}
	return &tableLines{}
}

func (l *ruleLines) fn(name string) *funcLines {
	if l != nil {
		if f := l.funcs[name]; f != nil {
			return f
		}
	}
	return &funcLines{}
}

func (r Rules) validate(lines *ruleLines) error {
	if err := checkRuleTTL(r.TTL, "ttl", lines.ttlLine()); err != nil {
		return err
	}
	if err := checkRuleTTL(r.MissTTL, "miss_ttl", lines.missTTLLine()); err != nil {
		return err
	}
	// File order, so the first error is the first in the file; sorted for Go
	// maps, so it is at least the same error every time.
	var order []string
	if lines != nil {
		order = lines.tableOrder
	} else {
		order = sortedKeys(r.Tables)
	}
	seen := make(map[string]string, len(order)) // canonical -> as written
	for _, name := range order {
		tl := lines.table(name)
		id, err := parseIdent(name, 2)
		if err != nil {
			return &RulesError{Line: tl.name, Where: "table " + strconv.Quote(name), Msg: err.Error()}
		}
		if prev, dup := seen[id.String()]; dup {
			return &RulesError{Line: tl.name, Where: "table " + strconv.Quote(name),
				Msg: fmt.Sprintf("same table as %q", prev)}
		}
		seen[id.String()] = name
		if err := validateTable(id, r.Tables[name], tl); err != nil {
			err.Where = "table " + strconv.Quote(name)
			return err
		}
	}
	var forder []string
	if lines != nil {
		forder = lines.funcOrder
	} else {
		forder = sortedKeys(r.Functions)
	}
	seenFn := make(map[string]string, len(forder))
	for _, name := range forder {
		fl := lines.fn(name)
		fail := func(line int, format string, args ...any) error {
			return &RulesError{Line: line, Where: "function " + strconv.Quote(name), Msg: fmt.Sprintf(format, args...)}
		}
		id, err := parseIdent(name, 2)
		if err != nil {
			return fail(fl.name, "%v", err)
		}
		if prev, dup := seenFn[id.String()]; dup {
			return fail(fl.name, "same function as %q", prev)
		}
		seenFn[id.String()] = name
		tables := r.Functions[name]
		if len(tables) == 0 {
			return fail(fl.name, "lists no tables (list the tables it writes, or remove it)")
		}
		if err := checkNames(tables, fl.tables, "table"); err != nil {
			return fail(err.Line, "%s", err.Msg)
		}
	}
	return nil
}

func (l *ruleLines) ttlLine() int {
	if l == nil {
		return 0
	}
	return l.ttl
}

func (l *ruleLines) missTTLLine() int {
	if l == nil {
		return 0
	}
	return l.missTTL
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func checkRuleTTL(d time.Duration, field string, line int) *RulesError {
	switch {
	case d < 0:
		return &RulesError{Line: line, Msg: fmt.Sprintf("%s %v is negative", field, d)}
	case d > MaxTTL:
		// memcached reads an expiration over 30 days as a Unix time, which
		// would expire the item at once (in 1970).
		return &RulesError{Line: line, Msg: fmt.Sprintf("%s %v is over 30 days (720h), the most memcached accepts", field, d)}
	}
	return nil
}

func validateTable(self ident, t TableRule, tl *tableLines) *RulesError {
	if err := checkRuleTTL(t.TTL, "ttl", tl.ttl); err != nil {
		return err
	}
	if err := checkRuleTTL(t.MissTTL, "miss_ttl", tl.missTTL); err != nil {
		return err
	}
	if t.DisableMissCache && t.MissTTL != 0 {
		line := tl.missTTL
		if line == 0 {
			line = tl.cacheMisses
		}
		return &RulesError{Line: line, Msg: "miss_ttl is set but cache_misses is false"}
	}
	switch t.Mode {
	case "", ModeCache, ModeFlushOnly:
	default:
		return &RulesError{Line: tl.mode, Msg: fmt.Sprintf("unknown mode %q (want %q or %q)", t.Mode, ModeCache, ModeFlushOnly)}
	}
	if len(t.Keys) == 0 {
		return &RulesError{Line: tl.name, Msg: "no keys (keys: [[id]] at least)"}
	}
	inKey := make(map[string]bool)
	seenKeys := make(map[string]int) // sorted canonical columns -> key number
	for i, key := range t.Keys {
		n := i + 1
		line := at(tl.keys, i)
		if len(key) == 0 {
			return &RulesError{Line: line, Msg: fmt.Sprintf("key %d is empty", n)}
		}
		cols := make([]string, 0, len(key))
		for j, c := range key {
			cline := at(at2(tl.cols, i), j)
			if cline == 0 {
				cline = line
			}
			id, err := parseIdent(c, 1)
			if err != nil {
				return &RulesError{Line: cline, Msg: fmt.Sprintf("key %d: column %q: %v", n, c, err)}
			}
			canon := id.String()
			if slices.Contains(cols, canon) {
				return &RulesError{Line: cline, Msg: fmt.Sprintf("key %d: column %q is repeated", n, c)}
			}
			cols = append(cols, canon)
			inKey[canon] = true
		}
		// A key's identity is its set of columns: [a, b] and [b, a] find
		// the same rows. Quoting makes the join unambiguous.
		slices.Sort(cols)
		set := strings.Join(cols, ",")
		if prev, dup := seenKeys[set]; dup {
			return &RulesError{Line: line, Msg: fmt.Sprintf("key %d has the same columns as key %d", n, prev)}
		}
		seenKeys[set] = n
	}
	normSeen := make(map[string]string)
	for _, col := range sortedKeys(t.Normalize) {
		line := tl.normalize[col]
		id, err := parseIdent(col, 1)
		if err != nil {
			return &RulesError{Line: line, Msg: fmt.Sprintf("normalize: column %q: %v", col, err)}
		}
		if prev, dup := normSeen[id.String()]; dup {
			return &RulesError{Line: line, Msg: fmt.Sprintf("normalize: column %q is the same column as %q", col, prev)}
		}
		normSeen[id.String()] = col
		if !inKey[id.String()] {
			return &RulesError{Line: line, Msg: fmt.Sprintf("normalize: column %q is in no key", col)}
		}
		if n := t.Normalize[col]; n != normalizeLower {
			vline := tl.normalizeValue[col]
			if vline == 0 {
				vline = line
			}
			return &RulesError{Line: vline, Msg: fmt.Sprintf("normalize: column %q: unknown normalisation %q (want %q)", col, n, normalizeLower)}
		}
	}
	if err := checkNames(t.FlushWith, tl.flushWith, "flush_with: table"); err != nil {
		return err
	}
	for i, p := range t.FlushWith {
		if id, _ := parseIdent(p, 2); id.equal(self) {
			return &RulesError{Line: at(tl.flushWith, i), Msg: fmt.Sprintf("flush_with: table %q is the table itself", p)}
		}
	}
	return nil
}

func at2(s [][]int, i int) []int {
	if i < len(s) {
		return s[i]
	}
	return nil
}

// checkNames checks a list of table names: valid, none listed twice.
func checkNames(names []string, lines []int, what string) *RulesError {
	seen := make(map[string]string, len(names))
	for i, n := range names {
		id, err := parseIdent(n, 2)
		if err != nil {
			return &RulesError{Line: at(lines, i), Msg: fmt.Sprintf("%s %q: %v", what, n, err)}
		}
		if prev, dup := seen[id.String()]; dup {
			return &RulesError{Line: at(lines, i), Msg: fmt.Sprintf("%s %q is listed twice (as %q)", what, n, prev)}
		}
		seen[id.String()] = n
	}
	return nil
}
