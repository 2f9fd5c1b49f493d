// Command cachedsql demonstrates and operates cachedsql.
//
//	cachedsql demo [-dsn postgres://...] [-memcache host:port] [flags]
//
// With no flags, demo runs on an embedded SQLite database and the
// in-process cache, so it needs no server.
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
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "cachedsql:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage: cachedsql <command> [flags]

commands:
  demo    run a read-heavy workload with and without cachedsql and compare
          (embedded SQLite and in-process cache by default; -dsn, -memcache
          for PostgreSQL and memcached)

Run "cachedsql <command> -h" for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
