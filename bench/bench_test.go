package bench

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachedsql/cachedsql/internal/testenv"
)

// TestSmoke runs the runner briefly on the embedded default. The real
// measurements are behind -bench (and `cachedsql bench`).
func TestSmoke(t *testing.T) {
	ctx := context.Background()
	rep, err := Run(ctx, Config{Rows: 200, Conc: []int{2}, Duration: 20 * time.Millisecond, Rounds: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rep.Print(&buf)
	for _, want := range []string{"plain sqlite", "in-process hit", "floor", "targets:", "memory:"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	t.Log("\n" + buf.String())
	if _, err := rep.JSON(); err != nil {
		t.Fatal(err)
	}
	if p := rep.Prepared; p == nil || p.DatabaseTrips != 0 {
		t.Errorf("prepared hits reached the database: %+v", p)
	}
	// The smoke's slices are milliseconds long, so cold misses weigh a lot
	// (more so under -race on a loaded machine): it checks that the mix
	// offloads reads at all; the ≥90% target is the bench's to measure.
	for _, o := range rep.Offload {
		if strings.HasPrefix(o.Name, "cachedsql") && o.ReadsOffload <= 0 {
			t.Errorf("95/5 mix: no read served from the cache (%+v)", o)
		}
	}
}

var (
	envOnce sync.Once
	benv    *Env
	benvErr error
)

// pgEnv is one PostgreSQL + memcached environment shared by the benchmarks.
func pgEnv(b *testing.B) *Env {
	dsn, mc := testenv.PostgresDSN(b), testenv.MemcacheAddr(b)
	envOnce.Do(func() {
		benv, benvErr = Open(context.Background(), Config{DSN: dsn, Memcache: mc})
	})
	if benvErr != nil {
		b.Fatal(benvErr)
	}
	return benv
}

func runParallel(b *testing.B, c *Contender, conc int) {
	runParallelCtx(b, context.Background(), c, conc)
}

// runParallelCtx is runParallel with every operation under ctx.
func runParallelCtx(b *testing.B, ctx context.Context, c *Contender, conc int) {
	if c.setup != nil {
		c.setup(conc)
	}
	gen := uniform(benv.Cfg.Rows)
	if conc == 1 {
		op, g := c.newWorker(), gen()
		r := newRand(1)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := op(ctx, g(r)); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism((conc + 1) / 2) // x GOMAXPROCS goroutines; conc on 2 CPUs
	b.ReportAllocs()
	b.ResetTimer()
	var seed uint64
	var mu sync.Mutex
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		seed++
		r := newRand(seed)
		mu.Unlock()
		op, g := c.newWorker(), gen()
		for pb.Next() {
			if err := op(ctx, g(r)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHit is the hit path through database/sql on memcached, serial:
// the one to profile (-cpuprofile, -memprofile).
func BenchmarkHit(b *testing.B) {
	e := pgEnv(b)
	runParallel(b, e.contenders(false, "b")[0], 1)
}

// BenchmarkHitCancellable is BenchmarkHit under a context that can be
// cancelled, as a request's usually can: the guard's budget then needs no
// timer, and the read no callback, on the built-in caches.
func BenchmarkHitCancellable(b *testing.B) {
	e := pgEnv(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runParallelCtx(b, ctx, e.contenders(false, "b")[0], 1)
}

// BenchmarkHitInProcess is the hit path on the in-process cache: the
// driver's own cost without the network.
func BenchmarkHitInProcess(b *testing.B) {
	e := pgEnv(b)
	runParallel(b, e.contenders(false, "e")[0], 1)
}

// BenchmarkContenders runs every contender at concurrency 1, 8 and 64.
// Compare with benchstat; `cachedsql bench` interleaves them and reports
// ratios round by round.
func BenchmarkContenders(b *testing.B) {
	e := pgEnv(b)
	for _, conc := range []int{1, 8, 64} {
		for _, c := range e.contenders(false, "a", "b", "c", "c2", "c3", "d", "e", "f-a", "f-b", "g") {
			b.Run(fmt.Sprintf("%s/conc=%d", strings.ReplaceAll(c.Name, " ", "_"), conc), func(b *testing.B) {
				runParallel(b, c, conc)
			})
		}
	}
}

// TestTableName: Config.Table goes into SQL unquoted, so Open refuses
// anything but a plain lower-case identifier, naming it.
func TestTableName(t *testing.T) {
	for _, name := range []string{"users; DROP TABLE x", "Users", "1users", `"users"`, "public.users"} {
		e, err := Open(context.Background(), Config{Table: name, Rows: 10})
		if err == nil {
			e.Close()
			t.Errorf("Open accepted table name %q", name)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("error for %q does not name it: %v", name, err)
		}
	}
}
