package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
)

// TestDemoEmbedded runs the README's main command on the embedded default
// and checks the table it prints: the plain run sends every lookup to the
// database, the cachedsql run far fewer (counted below cachedsql).
func TestDemoEmbedded(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"demo", "-rows", "300", "-lookups", "3000", "-conc", "4", "-quiet"}, &out, &errOut)
	if err != nil {
		t.Fatalf("demo: %v\nstderr: %s", err, errOut.String())
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 2 && f[0] == "plain":
			rows["plain"] = f[2:]
		case len(f) > 1 && f[0] == "cachedsql" && f[1] != "Stats:":
			rows["cachedsql"] = f[1:]
		}
	}
	number := func(run string, col int) int {
		t.Helper()
		f, ok := rows[run]
		if !ok || len(f) <= col {
			t.Fatalf("no %q row in the demo's table:\n%s", run, out.String())
		}
		n, err := strconv.Atoi(f[col])
		if err != nil {
			t.Fatalf("%s row column %d: %v\n%s", run, col, err, out.String())
		}
		return n
	}
	if got := number("plain", 0); got != 3000 {
		t.Errorf("plain lookups = %d; want 3000", got)
	}
	if got := number("plain", 1); got != 3000 {
		t.Errorf("plain database queries = %d; want 3000 (every lookup)", got)
	}
	if got := number("cachedsql", 1); got >= 1500 {
		t.Errorf("cachedsql database queries = %d of 3000 lookups; want most served from the cache\n%s", got, out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"nope"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), `unknown command "nope"`) {
		t.Errorf("err = %v; want unknown command", err)
	}
}
