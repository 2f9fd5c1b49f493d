// Command cachedsql demonstrates and operates cachedsql.
//
//	cachedsql demo [-dsn postgres://...] [-memcache host:port] [flags]
//	cachedsql check -rules rules.yaml [-dialect postgres|mysql|sqlite] [-json] FILE...
//	cachedsql discover -dsn postgres://... [-schema s]
//	cachedsql flush -dsn postgres://... -memcache host:port[,...] -rules rules.yaml [-namespace ns] TABLE [COLUMN=VALUE...]
//
// With no flags, demo runs on an embedded SQLite database and the
// in-process cache, so it needs no server. check needs no server either.
//
// Exit status: 0 on success; 1 when check finds a statement that flushes
// a cached table table-wide; 2 for usage errors and failures (unreadable
// files, unreachable database or memcached).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err on stderr and returns the process exit status.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stderr, "cachedsql:", err)
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 2
}

// exitError carries an exit status other than 2.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// usageError marks err as a usage error (exit status 2, the default); it
// exists to make the intent visible at the call sites.
func usageError(err error) error { return err }

const usage = `usage: cachedsql <command> [flags]

commands:
  demo      run a read-heavy workload with and without cachedsql and compare
            (embedded SQLite and in-process cache by default; -dsn, -memcache
            for PostgreSQL and memcached)
  check     report, without a database, what cachedsql does with each
            statement of .sql and .go files: CACHED, PASS-THROUGH (why) or
            WRITE (what it flushes); exit status 1 if a write flushes a
            cached table table-wide
  discover  read a PostgreSQL schema's keys, foreign keys, triggers and
            row-level security and print a commented rules file
  flush     invalidate a key, a row or a whole table in memcached, for a
            write made outside cachedsql (needs -dsn: the namespace and the
            key types come from the database)
  bench     measure cachedsql against plain pgx, a raw memcached Get and a
            hand-written cache-aside (see docs/PERFORMANCE.md)

Run "cachedsql <command> -h" for a command's flags.

Exit status: 0 on success, 1 when check finds a table-wide flush, 2 for
usage errors and failures.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "check":
		return runCheck(ctx, args[1:], stdout, stderr)
	case "discover":
		return runDiscover(ctx, args[1:], stdout, stderr)
	case "flush":
		return runFlush(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
