package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cachedsql/cachedsql"
)

const flushUsage = `usage: cachedsql flush -dsn postgres://... -memcache host:port[,host:port...] -rules rules.yaml [-namespace ns] TABLE [COLUMN=VALUE...]

Invalidates what cachedsql cached for a write made outside it (psql, a
migration, another service):

  TABLE                        the whole table (FlushTable)
  TABLE id=42                  one key: the columns of one key of the rules
                               (FlushKey)
  TABLE id=42 email=a@b.c      one row: the columns of every key (FlushRow)

It needs the database (-dsn) although it writes only to memcached: cache
keys start with a namespace derived from the database's identity, and
key values are canonicalised by the key columns' SQL types, both
read from the database, exactly as the application's driver does. Use the
application's -namespace (Config.Namespace, CACHEDSQL_NAMESPACE) and rules.

flags:
`

// flushConfig is the flush command's parsed command line.
type flushConfig struct {
	dsn, memcache, rules, namespace string
	timeout                         time.Duration
	table                           string
	cols                            []string // in the order given
	vals                            map[string]string
}

func runFlush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flush", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, flushUsage)
		fs.PrintDefaults()
	}
	var fc flushConfig
	fs.StringVar(&fc.dsn, "dsn", "", "PostgreSQL DSN the application uses (required: namespace and key types come from it)")
	fs.StringVar(&fc.memcache, "memcache", "", "memcached servers, host:port[,host:port...] (required)")
	fs.StringVar(&fc.rules, "rules", "", "the application's rules file (required)")
	fs.StringVar(&fc.namespace, "namespace", "", "the application's Config.Namespace (CACHEDSQL_NAMESPACE)")
	fs.DurationVar(&fc.timeout, "timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	var missing []string
	for _, f := range []struct{ name, val string }{{"-dsn", fc.dsn}, {"-memcache", fc.memcache}, {"-rules", fc.rules}} {
		if f.val == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		fs.Usage()
		return usageError(fmt.Errorf("flush: %s required", strings.Join(missing, ", ")))
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError(errors.New("flush: no table given"))
	}
	fc.table = fs.Arg(0)
	fc.vals = map[string]string{}
	for _, kv := range fs.Args()[1:] {
		col, val, ok := strings.Cut(kv, "=")
		if !ok || col == "" {
			return usageError(fmt.Errorf("flush: %q is not COLUMN=VALUE", kv))
		}
		if _, dup := fc.vals[col]; dup {
			return usageError(fmt.Errorf("flush: column %q given twice", col))
		}
		fc.cols = append(fc.cols, col)
		fc.vals[col] = val
	}
	ctx, cancel := context.WithTimeout(ctx, fc.timeout)
	defer cancel()
	what, err := flushCmd(ctx, fc)
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	fmt.Fprintln(stdout, "flushed", what)
	return nil
}

// flushCmd flushes what fc names and describes it.
func flushCmd(ctx context.Context, fc flushConfig) (string, error) {
	rules, err := cachedsql.LoadRules(fc.rules)
	if err != nil {
		return "", err
	}
	rule, ok := rules.Lookup(fc.table)
	if !ok {
		return "", fmt.Errorf("table %q has no rule in %s (tables: %s)", fc.table, fc.rules, strings.Join(ruleTableNames(rules), ", "))
	}
	call, err := flushCall(fc, rule)
	if err != nil {
		return "", err
	}

	var addrs []string
	for addr := range strings.SplitSeq(fc.memcache, ",") {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", fmt.Errorf("-memcache: %q is not host:port", addr)
		}
		addrs = append(addrs, addr)
	}
	// Fail early, and clearly, when memcached is not there: the flush
	// itself would only say that the flush could not be recorded.
	for _, addr := range addrs {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return "", fmt.Errorf("memcached at %s is not reachable: %w", addr, err)
		}
		c.Close()
	}
	mc := memcache.New(addrs...)
	mc.Timeout = time.Second

	pcfg, err := pgx.ParseConfig(fc.dsn)
	if err != nil {
		return "", fmt.Errorf("-dsn: %w", err)
	}
	// Likewise for the database, which the flush reads the catalog from.
	pc, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL at %s:%d is not reachable: %w", pcfg.Host, pcfg.Port, err)
	}
	pc.Close(ctx)
	connector, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cachedsql.Config{
		Rules:        rules,
		Cache:        cachedsql.Memcache(mc),
		Namespace:    fc.namespace,
		FlushTimeout: 2 * time.Second,
	})
	if err != nil {
		return "", err
	}
	defer connector.Close()
	if err := call.do(ctx, connector); err != nil {
		return "", err
	}
	return call.what, nil
}

// flushAction is the Connector call a command line asks for.
type flushAction struct {
	what string
	do   func(context.Context, *cachedsql.Connector) error
}

// flushCall picks FlushTable, FlushKey or FlushRow from the columns given:
// none, exactly one key's, or every key's.
func flushCall(fc flushConfig, rule cachedsql.TableRule) (flushAction, error) {
	table := fc.table
	if len(fc.cols) == 0 {
		return flushAction{what: "table " + table, do: func(ctx context.Context, c *cachedsql.Connector) error {
			return c.FlushTable(ctx, table)
		}}, nil
	}
	fold := func(s string) string { return cachedsql.KeyName([]string{s}) }
	given := map[string]string{}
	var givenNames []string
	for _, col := range fc.cols {
		given[fold(col)] = fc.vals[col]
		givenNames = append(givenNames, fold(col))
	}
	keyNames := make([]string, len(rule.Keys))
	inKeys := map[string]bool{}
	for i, k := range rule.Keys {
		keyNames[i] = "(" + cachedsql.KeyName(k) + ")"
		for _, col := range k {
			inKeys[fold(col)] = true
		}
	}
	for _, col := range givenNames {
		if !inKeys[col] {
			return flushAction{}, fmt.Errorf("column %q is in no key of %s (keys: %s)", col, table, strings.Join(keyNames, ", "))
		}
	}
	// Exactly one key's columns: FlushKey.
	for _, k := range rule.Keys {
		cols := make([]string, len(k))
		for i, c := range k {
			cols[i] = fold(c)
		}
		if len(cols) != len(givenNames) {
			continue
		}
		match := true
		for _, c := range cols {
			if _, ok := given[c]; !ok {
				match = false
			}
		}
		if !match {
			continue
		}
		vals := make([]any, len(cols))
		for i, c := range cols {
			vals[i] = given[c]
		}
		name := cachedsql.KeyName(k)
		return flushAction{what: fmt.Sprintf("key (%s) of %s", name, table), do: func(ctx context.Context, c *cachedsql.Connector) error {
			return c.FlushKey(ctx, table, name, vals...)
		}}, nil
	}
	// Every key's columns: FlushRow.
	row := map[string]any{}
	for col, v := range given {
		row[col] = v
	}
	for i, k := range rule.Keys {
		for _, col := range k {
			if _, ok := given[fold(col)]; !ok {
				return flushAction{}, fmt.Errorf("the columns given are not those of one key, and key %s lacks %q: give one key's columns, or every key's (keys of %s: %s)",
					keyNames[i], fold(col), table, strings.Join(keyNames, ", "))
			}
		}
	}
	return flushAction{what: fmt.Sprintf("every key %s of one row of %s", strings.Join(keyNames, ", "), table), do: func(ctx context.Context, c *cachedsql.Connector) error {
		return c.FlushRow(ctx, table, row)
	}}, nil
}

func ruleTableNames(r cachedsql.Rules) []string {
	var names []string
	for n := range r.Tables {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
