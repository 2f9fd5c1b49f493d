package cachedsql

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Rules says which tables are cached and by which keys. It is loaded from a
// YAML file (LoadRules, ParseRules) or written as a Go literal for
// Config.Rules; either way the same checks apply (Validate). The zero value
// caches nothing.
//
// Names of tables, schemas, columns and functions follow SQL identifier
// syntax, as PostgreSQL reads it: an unquoted name is folded to lower case
// (Users and users are one table), a double-quoted one keeps its case and may
// hold any character ("Users", in YAML '"Users"'; "" inside quotes is one
// quote). A table name is "table" or "schema.table". Only ASCII letters are
// folded, as PostgreSQL does in UTF-8 databases.
//
// A Rules value must not be modified once it has been handed to cachedsql:
// the driver keeps its own deep copy, taken when the Config is validated.
type Rules struct {
	// TTL is how long a cached row lives, for every table that sets no TTL
	// of its own. 0 (the default): the Config's TTL (10m). At most MaxTTL.
	// memcached has one-second resolution: TTLs are rounded up to seconds.
	TTL time.Duration
	// MissTTL is how long a cached "no such row" lives, for every table
	// that sets no MissTTL of its own. 0 (the default): the Config's MissTTL
	// (1m). At most MaxTTL. It may exceed TTL.
	MissTTL time.Duration
	// Tables maps a table name, as written ("users", "billing.invoices",
	// `"Users"`), to its rule. Names that fold to the same table are an
	// error. nil or empty (the default): nothing is cached.
	Tables map[string]TableRule
	// Functions lists the functions that queries call from SELECT and that
	// write: function name ("create_user" or "auth.create_user") -> the
	// tables it writes, flushed table-wide whenever the function is called.
	// Each list must be non-empty. nil (the default): no such functions.
	Functions map[string][]string
}

// TableRule is how one table is cached.
type TableRule struct {
	// Keys are the unique keys a lookup may pin: Keys[0] is the primary key,
	// then natural keys; each is one column or more. Required: at least one
	// key, none empty, no column twice in a key, no two keys with the same
	// columns in any order. Every write flushes every key of every row it
	// touches, so list only keys that lookups use.
	Keys [][]string
	// Normalize maps a key column to the normalisation the database applies
	// to it for uniqueness, so that lookups differing only in that way share
	// one entry and one flush: "lower" (citext, unique lower(col) indexes) is
	// the only one so far. The column must be in a key. nil (the default):
	// values are compared as the column's type compares them.
	Normalize map[string]string
	// TTL is how long a cached row of this table lives. 0 (the default): the
	// Rules' TTL. At most MaxTTL.
	TTL time.Duration
	// MissTTL is how long a cached "no such row" lives. 0 (the default): the
	// Rules' MissTTL. At most MaxTTL; must be 0 if DisableMissCache is set.
	MissTTL time.Duration
	// DisableMissCache stops lookups that find no row from being cached
	// (YAML: cache_misses: false). false (the default): misses are cached.
	DisableMissCache bool
	// Mode is ModeCache ("" is the same, the default) or ModeFlushOnly.
	Mode Mode
	// FlushWith names parent tables whose rows this table's rows depend on
	// through foreign keys with ON DELETE/UPDATE CASCADE (or SET NULL):
	// deleting or re-keying a parent row flushes this whole table, since the
	// database changed its rows without a statement cachedsql saw. Parents
	// need no rule of their own; a table cannot name itself. nil (the
	// default): none.
	FlushWith []string
}

// Mode says what cachedsql does with a table.
type Mode string

const (
	// ModeCache serves key lookups from the cache and flushes on writes.
	ModeCache Mode = "cache"
	// ModeFlushOnly serves nothing from the cache but still flushes on
	// writes: for a table another process caches, or to stop serving a
	// table without losing invalidation. TTL, MissTTL and DisableMissCache
	// are ignored then, so switching modes needs no other edit.
	ModeFlushOnly Mode = "flush_only"
)

// normalizeLower is the only normalisation so far: lower(value).
const normalizeLower = "lower"

// RulesError reports invalid rules. ParseRules, LoadRules and Validate
// return it unwrapped, so callers can find the line with errors.As; it
// matches ErrConfig with errors.Is.
type RulesError struct {
	File  string // the file LoadRules read; "" otherwise
	Line  int    // 1-based line of the offending YAML node; 0 for Validate
	Where string // what is concerned: `table "users"`, `function "f"` or ""
	Msg   string // what is wrong
}

func (e *RulesError) Error() string {
	var b strings.Builder
	b.WriteString("cachedsql: rules")
	if e.File != "" {
		b.WriteString(" ")
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		b.WriteString(" line ")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Where != "" {
		b.WriteString(e.Where)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes errors.Is(err, ErrConfig) true for rules errors, as for every
// other configuration error.
func (e *RulesError) Is(target error) bool { return target == ErrConfig }

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

// Validate checks rules built in Go with the same checks ParseRules applies
// (no line numbers then: errors name the table).
func (r Rules) Validate() error {
	return r.validate(nil)
}

// KeyName is the name of a key, as cache keys and FlushKey spell it: its
// columns in canonical form (folded; quoted only if needed) joined with ",",
// so [][]string{{"org_id", "slug"}} is "org_id,slug" and {"Email"} is
// "email". A column that is not a valid identifier is used as written.
func KeyName(cols []string) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		if id, err := parseIdent(c, 1); err == nil {
			b.WriteString(id.String())
		} else {
			b.WriteString(c)
		}
	}
	return b.String()
}

// Lookup finds the rule of a table. name uses the same syntax as rule names
// (unquoted parts fold to lower case), and should be schema-qualified as the
// session resolves it (search_path is applied at connect, not here).
//
// Resolution: a rule naming the same schema and table wins; otherwise a
// rule with no schema ("users") matches the table in any schema
// ("public.users", "users"). A bare name ("users") matches only a rule with
// no schema: a qualified rule ("billing.invoices") needs a qualified name.
func (r Rules) Lookup(name string) (TableRule, bool) {
	want, err := parseIdent(name, 2)
	if err != nil {
		return TableRule{}, false
	}
	var bare TableRule
	found := false
	for written, t := range r.Tables {
		got, err := parseIdent(written, 2)
		if err != nil {
			continue
		}
		if got.equal(want) {
			return t, true
		}
		if got.schema() == "" && got.table() == want.table() {
			bare, found = t, true
		}
	}
	return bare, found
}

// ttl is how long a row of t lives: its TTL, else the Rules' TTL, else def
// (the Config's TTL).
func (r Rules) ttl(t TableRule, def time.Duration) time.Duration {
	return firstNonZero(t.TTL, r.TTL, def)
}

// missTTL is how long a miss on t lives, like ttl; ok is false when misses
// of t are not cached. (A zero TTL means "never expires" to the cache, so
// "off" cannot be spelled 0.)
func (r Rules) missTTL(t TableRule, def time.Duration) (d time.Duration, ok bool) {
	if t.DisableMissCache {
		return 0, false
	}
	return firstNonZero(t.MissTTL, r.MissTTL, def), true
}

func firstNonZero(ds ...time.Duration) time.Duration {
	for _, d := range ds {
		if d != 0 {
			return d
		}
	}
	return 0
}

// mode is t's mode with the default applied.
func (t TableRule) mode() Mode {
	if t.Mode == "" {
		return ModeCache
	}
	return t.Mode
}

// keyIndex finds the key FlushKey names (KeyName spelling; spaces after
// commas and unfolded names are accepted) and returns its index in t.Keys.
func (t TableRule) keyIndex(name string) (int, bool) {
	cols, err := splitIdents(name)
	if err != nil {
		return 0, false
	}
	want := KeyName(cols)
	for i, k := range t.Keys {
		if KeyName(k) == want {
			return i, true
		}
	}
	return 0, false
}

// clone returns a deep copy of r: the Config is cloned at NewConnector, and
// neither the caller's later edits nor ours may reach the other copy.
func (r Rules) clone() Rules {
	c := Rules{TTL: r.TTL, MissTTL: r.MissTTL}
	if r.Tables != nil {
		c.Tables = make(map[string]TableRule, len(r.Tables))
		for name, t := range r.Tables {
			c.Tables[name] = t.clone()
		}
	}
	if r.Functions != nil {
		c.Functions = make(map[string][]string, len(r.Functions))
		for name, tables := range r.Functions {
			c.Functions[name] = slices.Clone(tables)
		}
	}
	return c
}

func (t TableRule) clone() TableRule {
	c := t
	if t.Keys != nil {
		c.Keys = make([][]string, len(t.Keys))
		for i, k := range t.Keys {
			c.Keys[i] = slices.Clone(k)
		}
	}
	if t.Normalize != nil {
		c.Normalize = make(map[string]string, len(t.Normalize))
		for col, n := range t.Normalize {
			c.Normalize[col] = n
		}
	}
	c.FlushWith = slices.Clone(t.FlushWith)
	return c
}

// ---- validation, shared by ParseRules and Validate ----

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

// ---- identifiers ----

// ident is a parsed, possibly schema-qualified SQL name; parts hold the
// folded (or quoted-as-written) text, schema first.
type ident struct{ parts []string }

func (id ident) table() string {
	if len(id.parts) == 0 {
		return ""
	}
	return id.parts[len(id.parts)-1]
}

func (id ident) schema() string {
	if len(id.parts) < 2 {
		return ""
	}
	return id.parts[0]
}

func (id ident) equal(o ident) bool { return slices.Equal(id.parts, o.parts) }

// String is the canonical spelling: parts that read back the same unquoted
// stay bare, others are double-quoted, so that the result is unambiguous
// and parses back to id. Cache keys use it.
func (id ident) String() string {
	var b strings.Builder
	for i, p := range id.parts {
		if i > 0 {
			b.WriteByte('.')
		}
		if isBare(p) {
			b.WriteString(p)
		} else {
			b.WriteByte('"')
			b.WriteString(strings.ReplaceAll(p, `"`, `""`))
			b.WriteByte('"')
		}
	}
	return b.String()
}

// isBare reports whether p reads back as itself unquoted.
func isBare(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '$'):
		default:
			return false
		}
	}
	return true
}

var errTooManyDots = errors.New("more than one dot (want table or schema.table)")

// parseIdent parses a name of at most maxParts dot-separated parts, each
// unquoted (letters, digits, _ and $, not starting with a digit or $;
// folded to lower case) or double-quoted (case kept, "" for a quote).
// Whitespace is not allowed outside quotes: it is almost always a typo in a
// rules file.
func parseIdent(s string, maxParts int) (ident, error) {
	if s == "" {
		return ident{}, errors.New("empty name")
	}
	var parts []string
	i := 0
	for {
		part, n, err := scanPart(s[i:])
		if err != nil {
			return ident{}, err
		}
		parts = append(parts, part)
		i += n
		if i == len(s) {
			break
		}
		if s[i] != '.' {
			return ident{}, fmt.Errorf("invalid character %q in name", s[i])
		}
		i++
		if len(parts) == maxParts {
			if maxParts == 1 {
				return ident{}, errors.New("a column name cannot contain a dot (quote it)")
			}
			return ident{}, errTooManyDots
		}
	}
	return ident{parts: parts}, nil
}

// scanPart scans one name part at the start of s and returns it, and how
// many bytes it took.
func scanPart(s string) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("empty name part")
	}
	if s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; {
			case c == 0:
				return "", 0, errors.New("NUL in name")
			case c != '"':
				b.WriteByte(c)
			case i+1 < len(s) && s[i+1] == '"':
				b.WriteByte('"')
				i++
			default:
				if b.Len() == 0 {
					return "", 0, errors.New(`empty quoted name ""`)
				}
				return b.String(), i + 1, nil
			}
		}
		return "", 0, errors.New("unterminated quoted name")
	}
	var b strings.Builder
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z', c == '_', c >= 0x80:
			b.WriteByte(c)
		case i > 0 && (c >= '0' && c <= '9' || c == '$'):
			b.WriteByte(c)
		default:
			if i == 0 {
				if c == '.' {
					return "", 0, errors.New("empty name part")
				}
				return "", 0, fmt.Errorf("invalid character %q in name", c)
			}
			return b.String(), i, nil
		}
	}
	return b.String(), i, nil
}

// splitIdents splits a comma-separated list of column names (spaces after
// commas allowed, commas inside quotes kept), as a key name.
func splitIdents(s string) ([]string, error) {
	var cols []string
	for {
		s = strings.TrimLeft(s, " ")
		_, n, err := scanPart(s)
		if err != nil {
			return nil, err
		}
		cols = append(cols, s[:n])
		s = strings.TrimLeft(s[n:], " ")
		if s == "" {
			return cols, nil
		}
		if s[0] != ',' {
			return nil, fmt.Errorf("invalid character %q in key name", s[0])
		}
		s = s[1:]
	}
}

// ---- YAML decoding ----

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
