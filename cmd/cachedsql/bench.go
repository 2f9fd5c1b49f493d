package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cachedsql/cachedsql/bench"
)

// runBench measures cachedsql against plain database/sql, a raw memcached
// Get, a hand-written cache-aside function and the in-process cache (see
// package bench).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg bench.Config
	var conc string
	var asJSON, quiet bool
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DSN, "dsn", "", "PostgreSQL DSN (default: an embedded SQLite database and the in-process cache)")
	fs.StringVar(&cfg.Memcache, "memcache", "127.0.0.1:11211", "memcached servers, host:port[,host:port] (with -dsn)")
	fs.StringVar(&cfg.Memcache2, "memcache2", "", "a second server list, e.g. two instances, measured and checked for generation sharding")
	fs.IntVar(&cfg.Rows, "rows", 10_000, "rows in the table (~250 bytes each)")
	fs.StringVar(&conc, "conc", "1,8,64", "concurrency levels")
	fs.DurationVar(&cfg.Duration, "duration", 0, "one contender's slice of one round (default 1s)")
	fs.IntVar(&cfg.Rounds, "rounds", 5, "rounds; contenders interleave within each, figures are medians")
	fs.BoolVar(&cfg.Quick, "quick", false, "the main table only")
	fs.StringVar(&cfg.Table, "table", bench.Table, "the benchmark table, reused when it holds -rows rows and recreated otherwise")
	fs.IntVar(&cfg.MaxDBConns, "max-db-conns", 16, "cap on each database/sql pool (PostgreSQL's max_connections is shared by all contenders)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bench: -conc %q: want positive integers separated by commas", conc)
		}
		cfg.Conc = append(cfg.Conc, n)
	}
	if cfg.DSN == "" {
		cfg.Memcache = ""
	}
	var progress func(string)
	if !quiet {
		progress = func(s string) { fmt.Fprintf(stderr, "\r\033[K%s", s) }
	}
	rep, runErr := bench.Run(ctx, cfg, progress)
	if !quiet {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if rep == nil {
		return runErr
	}
	// A run stopped by a failed section still prints what it measured.
	if asJSON {
		b, err := rep.JSON()
		if err != nil {
			return errors.Join(runErr, err)
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return errors.Join(runErr, err)
		}
		return runErr
	}
	rep.Print(stdout)
	return runErr
}
