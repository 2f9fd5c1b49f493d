package cachedsql

import (
	"slices"
	"strconv"
	"strings"
	"time"
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
