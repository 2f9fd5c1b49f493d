package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// runCmd runs the command line and returns stdout, stderr and the exit
// status main would use.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	code = exitCode(err, &errb)
	return out.String(), errb.String(), code
}

// The sqlc example, as an application would check it in CI: the query
// file and the Go code sqlc generated from it.
func TestCheckGoldenExample(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "sqlc")
	files := []string{filepath.Join(dir, "query.sql"), filepath.Join(dir, "db", "query.sql.go")}
	for _, f := range append(files, filepath.Join(dir, "rules.yaml")) {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("the sqlc example is not there yet: %v", err)
		}
	}
	out, stderr, code := runCmd(t, append([]string{"check", "-rules", filepath.Join(dir, "rules.yaml")}, files...)...)
	if code > 1 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	golden(t, "check.golden", strings.ReplaceAll(out, filepath.ToSlash(dir)+"/", "examples/sqlc/"))
}

// The fixture: sqlc shapes plus the cases splitting and Go extraction
// must get right.
func TestCheckGoldenFixture(t *testing.T) {
	out, stderr, code := runCmd(t, "check", "-rules", "testdata/check/rules.yaml",
		"testdata/check/query.sql", "testdata/check/query.sql.go")
	if code != 1 {
		t.Errorf("exit status %d, want 1 (the fixture flushes tables table-wide): %s", code, stderr)
	}
	golden(t, "check_fixture.golden", out)

	jout, _, _ := runCmd(t, "check", "-json", "-rules", "testdata/check/rules.yaml", "testdata/check/query.sql")
	if !strings.Contains(jout, `"kind": "CACHED"`) || !strings.Contains(jout, `"table_wide": true`) {
		t.Errorf("-json output lacks fields:\n%s", jout)
	}
}

// The exit status gates CI on table-wide flushes: 0 when every write
// flushes exact keys, 1 as soon as one flushes a table.
func TestCheckExitStatusGatesTableWideFlush(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("rules.yaml", "tables:\n  users:\n    keys: [[id], [email]]\n")
	exact := write("exact.sql", "SELECT * FROM users WHERE id = $1;\nUPDATE users SET name = $2 WHERE id = $1;\nDELETE FROM users WHERE email = $1;\n")
	wide := write("wide.sql", "UPDATE users SET name = $2 WHERE id = $1;\nUPDATE users u SET name = o.name FROM orgs o WHERE o.id = u.org_id;\n")
	other := write("other.sql", "TRUNCATE audit_log;\n")

	if out, stderr, code := runCmd(t, "check", "-rules", rules, exact); code != 0 {
		t.Errorf("exact flushes: exit status %d, want 0\n%s%s", code, out, stderr)
	}
	out, stderr, code := runCmd(t, "check", "-rules", rules, wide)
	if code != 1 || !strings.Contains(out, "WRITE TABLE-WIDE: table users") || !strings.Contains(stderr, "1 statement(s)") {
		t.Errorf("table-wide flush: exit status %d, want 1\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runCmd(t, "check", "-rules", rules, other); code != 0 {
		t.Errorf("a write of an uncached table: exit status %d, want 0\n%s%s", code, out, stderr)
	}
}

func TestCheckUsageErrors(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rules, []byte("tables:\n  users:\n    keys: [[id]]\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("tables:\n  users:\n    kyes: [[id]]\n"), 0o644)
	sql := filepath.Join(dir, "q.sql")
	os.WriteFile(sql, []byte("SELECT 1"), 0o644)
	goBad := filepath.Join(dir, "bad.go")
	os.WriteFile(goBad, []byte("package x\nfunc {"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check", sql}, "-rules is required"},
		{[]string{"check", "-rules", rules}, "no files given"},
		{[]string{"check", "-rules", rules, "-dialect", "oracle", sql}, `unknown dialect "oracle"`},
		{[]string{"check", "-rules", filepath.Join(dir, "nope.yaml"), sql}, "no such file"},
		{[]string{"check", "-rules", bad, sql}, "line 3"},
		{[]string{"check", "-rules", rules, filepath.Join(dir, "missing.sql")}, "no such file"},
		{[]string{"check", "-rules", rules, goBad}, "bad.go:2"},
		{[]string{"check", "-bogus"}, "flag provided but not defined"},
	} {
		_, stderr, code := runCmd(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit status %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	_, _, code := runCmd(t, "check", "-h")
	if err := run(context.Background(), []string{"check", "-h"}, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) || code != 2 {
		t.Errorf("check -h: %v, exit %d", err, code)
	}
}
