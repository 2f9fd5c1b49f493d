package cachedsql

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadRulesFull(t *testing.T) {
	got, err := LoadRules("testdata/rules/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Rules{
		TTL:     10 * time.Minute,
		MissTTL: time.Minute,
		Tables: map[string]TableRule{
			"users": {
				Keys:      [][]string{{"id"}, {"email"}, {"org_id", "slug"}},
				Normalize: map[string]string{"email": "lower"},
				TTL:       5 * time.Minute,
				Mode:      ModeCache,
				FlushWith: []string{"orgs"},
			},
			"billing.invoices": {
				Keys:    [][]string{{"id"}},
				MissTTL: 2 * time.Minute,
			},
			`"AuditLog"`: {
				Keys: [][]string{{"Id"}},
				Mode: ModeFlushOnly,
			},
			"sessions": {
				Keys:             [][]string{{"token"}},
				DisableMissCache: true,
				TTL:              MaxTTL,
			},
		},
		Functions: map[string][]string{
			"create_user":           {"users"},
			"billing.issue_invoice": {"billing.invoices", `"AuditLog"`},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadRules(full.yaml) =\n%#v\nwant\n%#v", got, want)
	}
	// What the file says is what Go says: the literal passes Validate too.
	if err := want.Validate(); err != nil {
		t.Errorf("Validate(literal of full.yaml) = %v", err)
	}
}

func TestLoadRulesValidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/rules/*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("testdata/rules: %v files, err %v", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, err := LoadRules(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Validate(); err != nil {
				t.Errorf("Validate after LoadRules: %v", err)
			}
		})
	}
}

func TestLoadRulesNoRules(t *testing.T) {
	for _, f := range []string{"empty.yaml", "comments-only.yaml", "no-tables.yaml"} {
		r, err := LoadRules(filepath.Join("testdata/rules", f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(r.Tables) != 0 || len(r.Functions) != 0 {
			t.Errorf("%s: got %d tables, %d functions; want none", f, len(r.Tables), len(r.Functions))
		}
	}
}

func TestLoadRulesAnchors(t *testing.T) {
	r, err := LoadRules("testdata/rules/anchors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := r.Tables["archived_users"]
	if !reflect.DeepEqual(a.Keys, [][]string{{"id"}, {"email"}}) || a.TTL != 30*time.Second {
		t.Errorf("archived_users = %+v; want the users keys and TTL 30s", a)
	}
}

func TestLoadRulesErrorNamesFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("tables:\n  users:\n    keys: [[id], []]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadRules(path)
	want := "cachedsql: rules " + path + ` line 3: table "users": key 2 is empty`
	if err == nil || err.Error() != want {
		t.Fatalf("LoadRules error = %v; want %s", err, want)
	}
	var re *RulesError
	if !errors.As(err, &re) || re.File != path || re.Line != 3 {
		t.Errorf("RulesError = %+v; want File %s, Line 3", re, path)
	}
	if !errors.Is(err, ErrConfig) {
		t.Errorf("errors.Is(%v, ErrConfig) = false", err)
	}

	_, err = LoadRules(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "cachedsql: ") {
		t.Errorf("LoadRules(missing) = %v; want a cachedsql: error wrapping ErrNotExist", err)
	}
}

// TestParseRulesErrors has one case per rejected input: the line it must
// name and a fragment of the message after "cachedsql: rules line N: ".
func TestParseRulesErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
		msg  string
	}{
		// Shape.
		{"garbage", "tables: [\n  {{{\n", 2, "invalid YAML: "},
		{"tab indentation", "tables:\n\tusers: {}\n", 2, "invalid YAML: "},
		{"top level list", "- users\n- orgs\n", 1, "want a mapping with ttl, miss_ttl, tables, functions at top level, got a list"},
		{"top level scalar", "users\n", 1, `want a mapping with ttl, miss_ttl, tables, functions at top level, got "users"`},
		{"two documents", "tables: {}\n---\ntables: {}\n", 2, "more than one YAML document"},
		{"unknown top field", "ttl: 1m\ntable:\n  users: {keys: [[id]]}\n", 2, `unknown field "table" (want one of ttl, miss_ttl, tables, functions)`},
		{"unknown table field", "tables:\n  users:\n    keys: [[id]]\n    kyes: [[email]]\n", 4, `table "users": unknown field "kyes"`},
		{"duplicate field", "tables:\n  users:\n    keys: [[id]]\n    keys: [[email]]\n", 4, `table "users": "keys" appears twice`},
		{"merge key", "tables:\n  users:\n    <<: {ttl: 1m}\n    keys: [[id]]\n", 3, "merge keys (<<) are not supported"},
		{"tables not mapping", "tables: [users]\n", 1, "tables: want a mapping of table names to rules, got a list"},
		{"table not mapping", "tables:\n  users: [[id]]\n", 2, `table "users": want a mapping with keys`},
		{"keys flat", "tables:\n  users:\n    keys: [id, email]\n", 3, `table "users": key 1: want a list of columns, e.g. [id]; got "id"`},
		{"keys scalar", "tables:\n  users:\n    keys: id\n", 3, `table "users": keys: want a list of keys`},
		{"column not string", "tables:\n  users:\n    keys: [[{a: b}]]\n", 3, `table "users": key 1: want a string, got a mapping`},
		{"column null", "tables:\n  users:\n    keys: [[id, ~]]\n", 3, `table "users": key 1: want a string, got null`},
		{"cache_misses not bool", "tables:\n  users:\n    keys: [[id]]\n    cache_misses: yes\n", 4, `cache_misses: want true or false, got "yes"`},
		{"functions not mapping", "functions: [f]\n", 1, "functions: want a mapping"},
		{"function tables scalar", "functions:\n  f: users\n", 2, `function "f": tables: want a list of names, got "users"`},
		{"normalize not mapping", "tables:\n  users:\n    keys: [[email]]\n    normalize: [email]\n", 4, "normalize: want a mapping of column to normalisation"},
		{"duplicate table", "tables:\n  users: {keys: [[id]]}\n  users: {keys: [[id]]}\n", 3, `tables: "users" appears twice`},

		// Durations.
		{"malformed duration", "ttl: 10 minutes\n", 1, `ttl: malformed duration "10 minutes"`},
		{"duration without unit", "miss_ttl: 600\n", 1, `miss_ttl: malformed duration "600"`},
		{"duration in days", "tables:\n  users:\n    keys: [[id]]\n    ttl: 1d\n", 4, `table "users": ttl: malformed duration "1d"`},
		{"duration list", "ttl: [1m]\n", 1, "ttl: want a duration such as 10m, got a list"},
		{"negative ttl", "ttl: -1m\n", 1, "ttl -1m0s is negative"},
		{"ttl over 30 days", "ttl: 721h\n", 1, "ttl 721h0m0s is over 30 days"},
		{"negative miss_ttl", "miss_ttl: -1s\n", 1, "miss_ttl -1s is negative"},
		{"table ttl over 30 days", "tables:\n  users:\n    keys: [[id]]\n    ttl: 999h\n", 4, `table "users": ttl 999h0m0s is over 30 days`},
		{"table miss_ttl over 30 days", "tables:\n  users:\n    keys: [[id]]\n    miss_ttl: 800h\n", 4, `table "users": miss_ttl 800h0m0s is over 30 days`},
		{"miss_ttl with misses off", "tables:\n  users:\n    keys: [[id]]\n    cache_misses: false\n    miss_ttl: 1m\n", 5, `table "users": miss_ttl is set but cache_misses is false`},

		// Keys.
		{"no keys", "tables:\n  users:\n    ttl: 1m\n", 2, `table "users": no keys`},
		{"null table", "tables:\n  users:\n", 2, `table "users": no keys`},
		{"empty keys", "tables:\n  users:\n    keys: []\n", 2, `table "users": no keys`},
		{"empty key", "tables:\n  users:\n    keys:\n      - [id]\n      - []\n", 5, `table "users": key 2 is empty`},
		{"null key", "tables:\n  users:\n    keys:\n      - [id]\n      - ~\n", 5, `table "users": key 2 is empty`},
		{"duplicate key", "tables:\n  users:\n    keys:\n      - [id]\n      - [id]\n", 5, `table "users": key 2 has the same columns as key 1`},
		{"duplicate key other order", "tables:\n  users:\n    keys:\n      - [id]\n      - [org_id, slug]\n      - [slug, org_id]\n", 6, `table "users": key 3 has the same columns as key 2`},
		{"duplicate key after folding", "tables:\n  users:\n    keys: [[ID], [id]]\n", 3, `table "users": key 2 has the same columns as key 1`},
		{"column repeated", "tables:\n  users:\n    keys:\n      - [id]\n      - [org_id,\n         org_id]\n", 6, `table "users": key 2: column "org_id" is repeated`},
		{"column repeated after folding", "tables:\n  users:\n    keys: [[Id, '\"id\"']]\n", 3, `table "users": key 1: column "\"id\"" is repeated`},
		{"column with dot", "tables:\n  users:\n    keys: [[users.id]]\n", 3, `table "users": key 1: column "users.id": a column name cannot contain a dot`},
		{"column with space", "tables:\n  users:\n    keys: [[user id]]\n", 3, `table "users": key 1: column "user id": invalid character ' ' in name`},
		{"column empty quoted", "tables:\n  users:\n    keys: [['\"\"']]\n", 3, `empty quoted name`},

		// Normalize.
		{"normalize column in no key", "tables:\n  users:\n    keys: [[id]]\n    normalize:\n      email: lower\n", 5, `table "users": normalize: column "email" is in no key`},
		{"unknown normalisation", "tables:\n  users:\n    keys: [[email]]\n    normalize:\n      email:\n        upper\n", 6, `table "users": normalize: column "email": unknown normalisation "upper" (want "lower")`},
		{"normalize same column twice", "tables:\n  users:\n    keys: [[email]]\n    normalize: {email: lower, EMAIL: lower}\n", 4, `normalize: column "email" is the same column as "EMAIL"`},
		{"normalize null", "tables:\n  users:\n    keys: [[email]]\n    normalize: {email: ~}\n", 4, `normalize: column "email": want a string, got null`},

		// Mode.
		{"unknown mode", "tables:\n  users:\n    keys: [[id]]\n    mode: readonly\n", 4, `table "users": unknown mode "readonly" (want "cache" or "flush_only")`},
		{"mode case", "tables:\n  users:\n    keys: [[id]]\n    mode: Cache\n", 4, `unknown mode "Cache"`},

		// Table names.
		{"empty table name", "tables:\n  '': {keys: [[id]]}\n", 2, `table "": empty name`},
		{"two dots", "tables:\n  db.billing.invoices: {keys: [[id]]}\n", 2, `table "db.billing.invoices": more than one dot`},
		{"trailing dot", "tables:\n  billing.: {keys: [[id]]}\n", 2, `table "billing.": empty name part`},
		{"leading dot", "tables:\n  .users: {keys: [[id]]}\n", 2, `table ".users": empty name part`},
		{"unterminated quote", "tables:\n  '\"Users': {keys: [[id]]}\n", 2, `unterminated quoted name`},
		{"name starts with digit", "tables:\n  1users: {keys: [[id]]}\n", 2, `table "1users": invalid character '1' in name`},
		{"same table after folding", "tables:\n  users: {keys: [[id]]}\n  Users: {keys: [[id]]}\n", 3, `table "Users": same table as "users"`},
		{"same table quoted", "tables:\n  Users: {keys: [[id]]}\n  '\"users\"': {keys: [[id]]}\n", 3, `table "\"users\"": same table as "Users"`},
		{"same schema table folded", "tables:\n  billing.invoices: {keys: [[id]]}\n  Billing.Invoices: {keys: [[id]]}\n", 3, `same table as "billing.invoices"`},

		// flush_with.
		{"flush_with itself", "tables:\n  users:\n    keys: [[id]]\n    flush_with:\n      - orgs\n      - USERS\n", 6, `table "users": flush_with: table "USERS" is the table itself`},
		{"flush_with twice", "tables:\n  users:\n    keys: [[id]]\n    flush_with: [orgs, Orgs]\n", 4, `flush_with: table "Orgs" is listed twice (as "orgs")`},
		{"flush_with bad name", "tables:\n  users:\n    keys: [[id]]\n    flush_with: [a.b.c]\n", 4, `flush_with: table "a.b.c": more than one dot`},
		{"flush_with scalar", "tables:\n  users:\n    keys: [[id]]\n    flush_with: orgs\n", 4, `flush_with: want a list of names, got "orgs"`},

		// functions.
		{"function empty list", "functions:\n  create_user: []\n", 2, `function "create_user": lists no tables`},
		{"function null list", "functions:\n  create_user:\n", 2, `function "create_user": lists no tables`},
		{"function bad name", "functions:\n  a.b.c: [users]\n", 2, `function "a.b.c": more than one dot`},
		{"function same after folding", "functions:\n  f: [users]\n  F: [users]\n", 3, `function "F": same function as "f"`},
		{"function bad table", "functions:\n  f:\n    - users\n    - 'two words'\n", 4, `function "f": table "two words": invalid character ' ' in name`},
	}
	seen := make(map[string]bool)
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("duplicate case name %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRules([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("ParseRules(%q) = %+v, nil; want an error", tt.yaml, r)
			}
			var re *RulesError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T) is not a *RulesError", err, err)
			}
			if re.Line != tt.line {
				t.Errorf("error %q: got line %d; want %d", err, re.Line, tt.line)
			}
			prefix := "cachedsql: rules line " + itoa(tt.line) + ": "
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.msg) {
				t.Errorf("error = %s\nwant prefix %q and %q", msg, prefix, tt.msg)
			}
			if !reflect.DeepEqual(r, Rules{}) {
				t.Errorf("ParseRules returned %+v with an error; want the zero Rules", r)
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestParseRulesFirstErrorInFileOrder: with several errors, the one
// reported is the first in the file, whatever Go's map order is.
func TestParseRulesFirstErrorInFileOrder(t *testing.T) {
	var b strings.Builder
	b.WriteString("tables:\n")
	for _, n := range []string{"z", "y", "x", "w", "v", "u"} {
		b.WriteString("  " + n + ": {keys: [[id]]}\n")
	}
	b.WriteString("  a: {}\n  b: {}\n")
	for range 20 {
		_, err := ParseRules([]byte(b.String()))
		var re *RulesError
		if !errors.As(err, &re) || re.Line != 8 || re.Where != `table "a"` {
			t.Fatalf("error = %v; want line 8, table a", err)
		}
	}
}

func TestParseRulesValid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want Rules
	}{
		{"empty", "", Rules{}},
		{"null document", "~\n", Rules{}},
		{"whitespace", "\n\n   \n", Rules{}},
		{"empty tables", "tables: {}\n", Rules{Tables: map[string]TableRule{}}},
		{"null tables and functions", "tables:\nfunctions:\n", Rules{}},
		{"zero durations", "ttl: 0s\nmiss_ttl: 0\n", Rules{}},
		{"exactly 30 days", "ttl: 720h\nmiss_ttl: 43200m\n", Rules{TTL: MaxTTL, MissTTL: MaxTTL}},
		{"miss_ttl over ttl", "ttl: 1m\nmiss_ttl: 1h\n", Rules{TTL: time.Minute, MissTTL: time.Hour}},
		{"flush_with unknown table", "tables:\n  users:\n    keys: [[id]]\n    flush_with: [orgs]\n",
			Rules{Tables: map[string]TableRule{"users": {Keys: [][]string{{"id"}}, FlushWith: []string{"orgs"}}}}},
		{"quoted names", "tables:\n  '\"Billing\".\"Invoice.Lines\"':\n    keys: [['\"Id\"', 'x$1']]\n    normalize: {'\"Id\"': lower}\n",
			Rules{Tables: map[string]TableRule{`"Billing"."Invoice.Lines"`: {
				Keys:      [][]string{{`"Id"`, "x$1"}},
				Normalize: map[string]string{`"Id"`: "lower"},
			}}}},
		{"normalize folded column", "tables:\n  users:\n    keys: [[Email]]\n    normalize: {EMAIL: lower}\n",
			Rules{Tables: map[string]TableRule{"users": {Keys: [][]string{{"Email"}}, Normalize: map[string]string{"EMAIL": "lower"}}}}},
		{"same table in two schemas", "tables:\n  users: {keys: [[id]]}\n  auth.users: {keys: [[id]]}\n",
			Rules{Tables: map[string]TableRule{"users": {Keys: [][]string{{"id"}}}, "auth.users": {Keys: [][]string{{"id"}}}}}},
		{"flush_only with ttl", "tables:\n  users: {keys: [[id]], mode: flush_only, ttl: 1m, cache_misses: false}\n",
			Rules{Tables: map[string]TableRule{"users": {Keys: [][]string{{"id"}}, Mode: ModeFlushOnly, TTL: time.Minute, DisableMissCache: true}}}},
		{"cache_misses true", "tables:\n  users: {keys: [[id]], cache_misses: true, miss_ttl: 5s}\n",
			Rules{Tables: map[string]TableRule{"users": {Keys: [][]string{{"id"}}, MissTTL: 5 * time.Second}}}},
		{"non-ASCII name", "tables:\n  Ünits: {keys: [[ïd]]}\n",
			Rules{Tables: map[string]TableRule{"Ünits": {Keys: [][]string{{"ïd"}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRules([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRules(%q) =\n%#v\nwant\n%#v", tt.yaml, got, tt.want)
			}
		})
	}
}

// TestValidate runs the checks on Go literals: same messages, no line,
// naming the table.
func TestValidate(t *testing.T) {
	id := [][]string{{"id"}}
	tests := []struct {
		name  string
		rules Rules
		want  string // "" for valid
	}{
		{"zero", Rules{}, ""},
		{"valid", Rules{TTL: time.Hour, Tables: map[string]TableRule{"users": {Keys: id, Mode: ModeCache}}}, ""},
		{"negative ttl", Rules{TTL: -time.Second}, "cachedsql: rules: ttl -1s is negative"},
		{"miss ttl over 30 days", Rules{MissTTL: MaxTTL + time.Second}, "cachedsql: rules: miss_ttl 720h0m1s is over 30 days"},
		{"no keys", Rules{Tables: map[string]TableRule{"users": {}}}, `cachedsql: rules: table "users": no keys`},
		{"empty key", Rules{Tables: map[string]TableRule{"users": {Keys: [][]string{{"id"}, nil}}}}, `cachedsql: rules: table "users": key 2 is empty`},
		{"duplicate key", Rules{Tables: map[string]TableRule{"users": {Keys: [][]string{{"a", "b"}, {"B", "A"}}}}}, `table "users": key 2 has the same columns as key 1`},
		{"repeated column", Rules{Tables: map[string]TableRule{"users": {Keys: [][]string{{"a", "a"}}}}}, `table "users": key 1: column "a" is repeated`},
		{"normalize not in key", Rules{Tables: map[string]TableRule{"users": {Keys: id, Normalize: map[string]string{"email": "lower"}}}}, `normalize: column "email" is in no key`},
		{"unknown normalisation", Rules{Tables: map[string]TableRule{"users": {Keys: id, Normalize: map[string]string{"id": "trim"}}}}, `unknown normalisation "trim"`},
		{"unknown mode", Rules{Tables: map[string]TableRule{"users": {Keys: id, Mode: "off"}}}, `unknown mode "off"`},
		{"table ttl", Rules{Tables: map[string]TableRule{"users": {Keys: id, TTL: -1}}}, `table "users": ttl -1ns is negative`},
		{"miss ttl with misses off", Rules{Tables: map[string]TableRule{"users": {Keys: id, MissTTL: time.Second, DisableMissCache: true}}}, "miss_ttl is set but cache_misses is false"},
		{"empty name", Rules{Tables: map[string]TableRule{"": {Keys: id}}}, `table "": empty name`},
		{"two dots", Rules{Tables: map[string]TableRule{"a.b.c": {Keys: id}}}, "more than one dot"},
		{"same after folding", Rules{Tables: map[string]TableRule{"Users": {Keys: id}, "users": {Keys: id}}}, `cachedsql: rules: table "users": same table as "Users"`},
		{"flush_with itself", Rules{Tables: map[string]TableRule{"billing.invoices": {Keys: id, FlushWith: []string{`"billing".invoices`}}}}, "is the table itself"},
		{"function no tables", Rules{Functions: map[string][]string{"f": {}}}, `cachedsql: rules: function "f": lists no tables`},
		{"function nil tables", Rules{Functions: map[string][]string{"f": nil}}, `function "f": lists no tables`},
		{"function ok", Rules{Functions: map[string][]string{"f": {"users"}}}, ""},
		{"NUL in quoted name", Rules{Tables: map[string]TableRule{"\"a\x00\"": {Keys: id}}}, "NUL in name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rules.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v; want nil", err)
			case tt.want == "":
				return
			case err == nil:
				t.Fatalf("Validate() = nil; want %q", tt.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "cachedsql: rules: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("Validate() = %s\nwant it to contain %q", msg, tt.want)
			}
			var re *RulesError
			if !errors.As(err, &re) || re.Line != 0 {
				t.Errorf("Validate() = %#v; want a RulesError with no line", err)
			}
		})
	}
}

func TestRulesCloneIndependent(t *testing.T) {
	orig, err := LoadRules("testdata/rules/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	snapshot, _ := LoadRules("testdata/rules/full.yaml")
	c := orig.clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("clone differs:\n%#v\n%#v", c, orig)
	}
	// Write through every reference the clone holds; the original must not
	// change.
	u := c.Tables["users"]
	u.Keys[0][0] = "changed"
	u.Keys[2] = append(u.Keys[2][:1], "changed")
	u.Normalize["email"] = "changed"
	u.FlushWith[0] = "changed"
	c.Tables["users"] = u
	c.Tables["new"] = TableRule{}
	c.Functions["billing.issue_invoice"][0] = "changed"
	c.Functions["new"] = nil
	if !reflect.DeepEqual(orig, snapshot) {
		t.Errorf("writing the clone changed the original:\n%#v", orig)
	}
	// And the other way round.
	c2 := snapshot.clone()
	snapshot.Tables["users"].Keys[1][0] = "changed"
	if c2.Tables["users"].Keys[1][0] != "email" {
		t.Errorf("writing the original changed the clone")
	}
	// nil stays nil, so a zero Rules round-trips.
	if z := (Rules{}).clone(); !reflect.DeepEqual(z, Rules{}) {
		t.Errorf("Rules{}.clone() = %#v", z)
	}
	if z := (TableRule{Keys: [][]string{nil}}).clone(); z.Keys[0] != nil || z.Normalize != nil || z.FlushWith != nil {
		t.Errorf("TableRule.clone turned nil into non-nil: %#v", z)
	}
}

func TestKeyName(t *testing.T) {
	tests := []struct {
		cols []string
		want string
	}{
		{[]string{"id"}, "id"},
		{[]string{"org_id", "slug"}, "org_id,slug"},
		{[]string{"Email"}, "email"},
		{[]string{`"Email"`}, `"Email"`},
		{[]string{`"email"`}, "email"},
		{[]string{`"a,b"`, "c"}, `"a,b",c`},
		{[]string{`"say ""hi"""`}, `"say ""hi"""`},
		{[]string{"1bad"}, "1bad"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := KeyName(tt.cols); got != tt.want {
			t.Errorf("KeyName(%q) = %q; want %q", tt.cols, got, tt.want)
		}
	}
}

func TestKeyIndex(t *testing.T) {
	tr := TableRule{Keys: [][]string{{"id"}, {"Email"}, {"org_id", "slug"}, {`"a,b"`}}}
	tests := []struct {
		name string
		want int
		ok   bool
	}{
		{"id", 0, true},
		{"email", 1, true},
		{"EMAIL", 1, true},
		{`"Email"`, 0, false},
		{"org_id,slug", 2, true},
		{"org_id, slug", 2, true},
		{"slug,org_id", 0, false}, // the order is the order of FlushKey's values
		{`"a,b"`, 3, true},
		{"", 0, false},
		{"id,", 0, false},
		{"nope", 0, false},
	}
	for _, tt := range tests {
		got, ok := tr.keyIndex(tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("keyIndex(%q) = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLookup(t *testing.T) {
	r := Rules{Tables: map[string]TableRule{
		"users":            {TTL: 1},
		"auth.users":       {TTL: 2},
		"billing.invoices": {TTL: 3},
		`"Orgs"`:           {TTL: 4},
	}}
	tests := []struct {
		name string
		ttl  time.Duration // 0: not found
	}{
		{"users", 1},
		{"USERS", 1},
		{"public.users", 1}, // a rule without schema matches any schema
		{"auth.users", 2},   // unless one names the schema
		{"Auth.Users", 2},
		{`"auth"."users"`, 2},
		{"billing.invoices", 3},
		{"invoices", 0}, // a qualified rule needs a qualified name
		{"other.invoices", 0},
		{`"Orgs"`, 4},
		{"orgs", 0},
		{"public.\"Orgs\"", 4},
		{"a.b.c", 0},
		{"", 0},
	}
	for _, tt := range tests {
		got, ok := r.Lookup(tt.name)
		if ok != (tt.ttl != 0) || got.TTL != tt.ttl {
			t.Errorf("Lookup(%q) = %v, %v; want TTL %v", tt.name, got.TTL, ok, tt.ttl)
		}
	}
}

func TestEffectiveTTLs(t *testing.T) {
	const def, defMiss = 10 * time.Minute, time.Minute
	tests := []struct {
		name         string
		rules        Rules
		table        TableRule
		ttl, missTTL time.Duration
		missesCached bool
	}{
		{"config defaults", Rules{}, TableRule{}, def, defMiss, true},
		{"rules defaults", Rules{TTL: time.Hour, MissTTL: 5 * time.Second}, TableRule{}, time.Hour, 5 * time.Second, true},
		{"table wins", Rules{TTL: time.Hour, MissTTL: 5 * time.Second}, TableRule{TTL: 2 * time.Second, MissTTL: 3 * time.Second}, 2 * time.Second, 3 * time.Second, true},
		{"misses off", Rules{MissTTL: 5 * time.Second}, TableRule{DisableMissCache: true}, def, 0, false},
	}
	for _, tt := range tests {
		if got := tt.rules.ttl(tt.table, def); got != tt.ttl {
			t.Errorf("%s: ttl = %v; want %v", tt.name, got, tt.ttl)
		}
		got, ok := tt.rules.missTTL(tt.table, defMiss)
		if got != tt.missTTL || ok != tt.missesCached {
			t.Errorf("%s: missTTL = %v, %v; want %v, %v", tt.name, got, ok, tt.missTTL, tt.missesCached)
		}
	}
	if m := (TableRule{}).mode(); m != ModeCache {
		t.Errorf("zero TableRule mode = %q; want %q", m, ModeCache)
	}
}

func TestIdentCanonicalRoundTrip(t *testing.T) {
	for _, s := range []string{"users", "Users", `"Users"`, `"a.b"."c""d"`, "s.t", `"with space"`, "x$1", "_x", "Ünits", `"1x"`} {
		id, err := parseIdent(s, 2)
		if err != nil {
			t.Fatalf("parseIdent(%q): %v", s, err)
		}
		back, err := parseIdent(id.String(), 2)
		if err != nil || !back.equal(id) || back.String() != id.String() {
			t.Errorf("parseIdent(%q).String() = %q, which parses to %v (%v)", s, id.String(), back, err)
		}
	}
}

// FuzzParseRules: no input panics; every error is a cachedsql: error with
// a line that exists; whatever parses also validates and clones equal.
func FuzzParseRules(f *testing.F) {
	files, _ := filepath.Glob("testdata/rules/*.yaml")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"", "~", "[]", "{}", "---\n---\n", "tables: {users: {keys: [[id]]}}",
		"tables:\n  users:\n    keys: [[id], [email]]\n    normalize: {email: lower}\n",
		"a: &a [*a]", "x: &x {y: *x}", "tables: {users: &u {keys: [[id]], flush_with: *u}}",
		"tables:\n  '\"\"\"\"': {keys: [['\"a\"\"b\"']]}\n", "ttl: 9223372036854775807ns\n",
		"ttl: 1e400h", "\t", "%YAML 1.2\n---\nttl: 1m\n", "!!binary aGVsbG8=", "tables: !!set {a}",
		"functions: {f: [a, b, A]}", "keys: [[[[[[[[[[]]]]]]]]]]", "\xff\xfe", "\r\r0", "tables:\n  u:\n    keys: [[id]]\n    <<: *x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRules(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "cachedsql: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			var re *RulesError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *RulesError", err)
			}
			if lines := maxLines(data); re.Line < 0 || re.Line > lines {
				t.Fatalf("error %v names line %d of an input of at most %d lines", err, re.Line, lines)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseRules accepted rules Validate rejects: %v", err)
		}
		if c := r.clone(); !reflect.DeepEqual(c, r) {
			t.Fatalf("clone differs")
		}
		for name := range r.Tables {
			if _, ok := r.Lookup(name); !ok {
				t.Fatalf("Lookup(%q) of a valid table failed", name)
			}
		}
	})
}

// maxLines bounds the lines of a YAML input: libyaml breaks lines at \n,
// \r, NEL, LS and PS, and may report the line after the last.
func maxLines(data []byte) int {
	s := string(data)
	return 2 + strings.Count(s, "\n") + strings.Count(s, "\r") +
		strings.Count(s, "\u0085") + strings.Count(s, "\u2028") + strings.Count(s, "\u2029")
}
