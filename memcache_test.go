package cachedsql_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/cachetest"
	"github.com/cachedsql/cachedsql/internal/fakememcache"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// newClient returns a gomemcache client for addr, closed when t ends, with
// enough idle connections for the suite's 50 concurrent contenders and a
// timeout a loaded CI machine running -race will not hit.
func newClient(t *testing.T, addr string) *memcache.Client {
	c := memcache.New(addr)
	c.MaxIdleConns = 64
	c.Timeout = 5 * time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMemcacheFakeServer(t *testing.T) {
	t.Parallel()
	for _, b := range memcacheBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			srv := fakememcache.Start(t)
			cachetest.Run(t, func(t *testing.T) cachedsql.Cache {
				return b.open(t, srv.Addr(), 5*time.Second)
			}, cachetest.Evict(func(t *testing.T, _ cachedsql.Cache, key string) {
				if !srv.Evict(key) {
					t.Fatalf("Evict(%q): no such item", key)
				}
			}))
		})
	}
}

func TestMemcacheRealServer(t *testing.T) {
	t.Parallel()
	addr := testenv.MemcacheAddr(t)
	for _, b := range memcacheBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cachetest.Run(t, func(t *testing.T) cachedsql.Cache {
				return b.open(t, addr, 5*time.Second)
			})
		})
	}
}

// TestServerRefusesLargeValue pins what memcached does with a value over
// its item size, which the fake copies and Memcache never lets happen: it
// answers SERVER_ERROR, unlinks the old value, and gomemcache drops the
// connection (the next operation dials a new one).
func TestServerRefusesLargeValue(t *testing.T) {
	t.Parallel()
	servers := map[string]func(t *testing.T) string{
		"fake": func(t *testing.T) string { return fakememcache.Start(t).Addr() },
		"real": func(t *testing.T) string { return testenv.MemcacheAddr(t) },
	}
	for name, addr := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, addr(t))
			key := "cachedsql-test-large-" + strings.ReplaceAll(time.Now().Format(time.RFC3339Nano), ":", "")
			if err := c.Set(&memcache.Item{Key: key, Value: []byte("old")}); err != nil {
				t.Fatal(err)
			}
			err := c.Set(&memcache.Item{Key: key, Value: make([]byte, 1<<20)})
			if err == nil || !strings.Contains(err.Error(), "SERVER_ERROR object too large for cache") {
				t.Fatalf("Set of 1 MiB: got %v; want SERVER_ERROR object too large for cache", err)
			}
			if _, err := c.Get(key); !errors.Is(err, memcache.ErrCacheMiss) {
				t.Fatalf("Get after refused Set: got %v; want a miss (old value unlinked)", err)
			}
			// The largest value memcached 1.6 takes with a 1 MiB item size,
			// key "k" + 55 bytes of prefix here, is far above MaxValueSize.
			big := make([]byte, cachedsql.MaxValueSize)
			if err := c.Set(&memcache.Item{Key: key, Value: big}); err != nil {
				t.Fatalf("Set of MaxValueSize bytes: %v", err)
			}
		})
	}
}

func TestMemcacheNilClient(t *testing.T) {
	t.Parallel()
	c := cachedsql.Memcache(nil)
	ctx := context.Background()
	item := &cachedsql.Item{Key: "k", Value: []byte("v")}
	_, err := c.GetMulti(ctx, []string{"k"})
	errs := map[string]error{
		"GetMulti":       err,
		"Add":            c.Add(ctx, item),
		"Set":            c.Set(ctx, item),
		"CompareAndSwap": c.CompareAndSwap(ctx, item),
		"Delete":         c.Delete(ctx, "k"),
	}
	for op, err := range errs {
		if !errors.Is(err, cachedsql.ErrNilClient) {
			t.Errorf("%s on Memcache(nil): got %v; want ErrNilClient", op, err)
		}
	}
}

func TestMemcacheNilItem(t *testing.T) {
	t.Parallel()
	srv := fakememcache.Start(t)
	c := cachedsql.Memcache(newClient(t, srv.Addr()))
	if err := c.Set(context.Background(), nil); err == nil {
		t.Fatal("Set(nil): got nil error")
	}
}

// memcacheBackends are the two memcached Caches: Memcache over the
// caller's gomemcache client, and NewMemcache with its own read path. Both
// must behave alike under every fault.
var memcacheBackends = []struct {
	name string
	open func(t *testing.T, addr string, timeout time.Duration) cachedsql.Cache
}{
	{"Memcache", func(t *testing.T, addr string, timeout time.Duration) cachedsql.Cache {
		mc := newClient(t, addr)
		mc.Timeout = timeout
		return cachedsql.Memcache(mc)
	}},
	{"NewMemcache", func(t *testing.T, addr string, timeout time.Duration) cachedsql.Cache {
		c, err := cachedsql.NewMemcache(cachedsql.MemcacheConfig{Servers: []string{addr}, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.(io.Closer).Close() })
		return c
	}},
}

// withFaulty runs test once per backend, each on a fresh fake server, with
// a short client timeout so faults that make a client wait cost 300 ms,
// not gomemcache's default 500 ms.
func withFaulty(t *testing.T, test func(t *testing.T, srv *fakememcache.Server, c cachedsql.Cache)) {
	for _, b := range memcacheBackends {
		t.Run(b.name, func(t *testing.T) {
			srv := fakememcache.Start(t)
			test(t, srv, b.open(t, srv.Addr(), 300*time.Millisecond))
		})
	}
}

func TestMemcacheBlackHoleHonoursDeadline(t *testing.T) {
	// Not parallel: it measures time, so it runs alone, before the suites.
	withFaulty(t, func(t *testing.T, srv *fakememcache.Server, c cachedsql.Cache) {
		srv.SetFaults(fakememcache.Faults{BlackHole: true})
		ops := map[string]func(ctx context.Context) error{
			"GetMulti": func(ctx context.Context) error { _, err := c.GetMulti(ctx, []string{"k"}); return err },
			"Set":      func(ctx context.Context) error { return c.Set(ctx, &cachedsql.Item{Key: "k", Value: []byte("v")}) },
			"Add":      func(ctx context.Context) error { return c.Add(ctx, &cachedsql.Item{Key: "k", Value: []byte("v")}) },
			"CompareAndSwap": func(ctx context.Context) error {
				return c.CompareAndSwap(ctx, &cachedsql.Item{Key: "k", Value: []byte("v"), CasID: 1})
			},
			"Delete": func(ctx context.Context) error { return c.Delete(ctx, "k") },
		}
		for name, op := range ops {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			start := time.Now()
			err := op(ctx)
			elapsed := time.Since(start)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s on a black hole: got %v; want DeadlineExceeded", name, err)
			}
			if !strings.HasPrefix(err.Error(), "cachedsql: memcache ") {
				t.Errorf("%s error %q lacks the cachedsql: memcache prefix", name, err)
			}
			if elapsed > 200*time.Millisecond {
				t.Errorf("%s on a black hole with a 20ms deadline took %v; want < 200ms", name, elapsed)
			}
		}
	})
}

// Without a deadline the client's own timeout ends the wait, and the error
// must not pass for a miss (a miss would invite a fill).
func TestMemcacheBlackHoleWithoutDeadline(t *testing.T) {
	t.Parallel()
	withFaulty(t, func(t *testing.T, srv *fakememcache.Server, c cachedsql.Cache) {
		srv.SetFaults(fakememcache.Faults{BlackHole: true})
		_, err := c.GetMulti(context.Background(), []string{"k"})
		if err == nil || errors.Is(err, cachedsql.ErrCacheMiss) {
			t.Fatalf("GetMulti on a black hole: got %v; want a timeout error", err)
		}
		err = c.Delete(context.Background(), "k")
		if err == nil || errors.Is(err, cachedsql.ErrCacheMiss) {
			t.Fatalf("Delete on a black hole: got %v; want a timeout error, not a miss", err)
		}
	})
}

func TestMemcacheDelay(t *testing.T) {
	// Not parallel: it measures time, so it runs alone, before the suites.
	withFaulty(t, func(t *testing.T, srv *fakememcache.Server, c cachedsql.Cache) {
		ctx := context.Background()
		if err := c.Set(ctx, &cachedsql.Item{Key: "k", Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		srv.SetFaults(fakememcache.Faults{Verbs: []string{"gets"}, Delay: 100 * time.Millisecond})
		short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		if _, err := c.GetMulti(short, []string{"k"}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("GetMulti delayed past its deadline: got %v; want DeadlineExceeded", err)
		}
		// Within the client's timeout a slow answer is still an answer; other
		// verbs are not delayed.
		m, err := c.GetMulti(ctx, []string{"k"})
		if err != nil || m["k"] == nil || string(m["k"].Value) != "v" {
			t.Fatalf("delayed GetMulti = %v, %v; want k = v", m, err)
		}
		if got := srv.Ops("gets"); got != 2 {
			t.Errorf("server saw %d gets; want 2", got)
		}
		if got := srv.Ops("set"); got != 1 {
			t.Errorf("server saw %d sets; want 1", got)
		}
	})
}

func TestMemcacheCorruptValuesAreReturned(t *testing.T) {
	t.Parallel()
	withFaulty(t, func(t *testing.T, srv *fakememcache.Server, c cachedsql.Cache) {
		ctx := context.Background()
		want := []byte("a perfectly good entry")
		if err := c.Set(ctx, &cachedsql.Item{Key: "k", Value: want}); err != nil {
			t.Fatal(err)
		}
		srv.SetFaults(fakememcache.Faults{Corrupt: true})
		m, err := c.GetMulti(ctx, []string{"k"})
		if err != nil {
			t.Fatalf("GetMulti of a corrupt value: %v; want the bytes (the entry decoder rejects them)", err)
		}
		got := m["k"].Value
		if len(got) != len(want) || string(got) == string(want) {
			t.Fatalf("GetMulti = %q; want %q with a byte flipped", got, want)
		}
	})
}

func TestMemcacheServerError(t *testing.T) {
	t.Parallel()
	withFaulty(t, func(t *testing.T, srv *fakememcache.Server, c cachedsql.Cache) {
		ctx := context.Background()
		srv.SetFaults(fakememcache.Faults{ServerError: true})
		err := c.Set(ctx, &cachedsql.Item{Key: "k", Value: []byte("v")})
		for _, sentinel := range []error{nil, cachedsql.ErrNotStored, cachedsql.ErrCASConflict, cachedsql.ErrCacheMiss} {
			if errors.Is(err, sentinel) {
				t.Fatalf("Set answered SERVER_ERROR: got %v; want an error that is none of the sentinels", err)
			}
		}
		if !strings.HasPrefix(err.Error(), "cachedsql: memcache set k: ") {
			t.Errorf("error %q; want prefix %q", err, "cachedsql: memcache set k: ")
		}
		if err := c.Delete(ctx, "k"); err == nil || errors.Is(err, cachedsql.ErrCacheMiss) {
			t.Fatalf("Delete answered SERVER_ERROR: got %v; want an error, not a miss", err)
		}
		srv.SetFaults(fakememcache.Faults{})
		if err := c.Set(ctx, &cachedsql.Item{Key: "k", Value: []byte("v")}); err != nil {
			t.Fatalf("Set after the fault cleared: %v", err)
		}
	})
}

func TestMemcacheDroppedAndRefusedConnections(t *testing.T) {
	// Not parallel: it measures time, so it runs alone, before the suites.
	withFaulty(t, func(t *testing.T, srv *fakememcache.Server, c cachedsql.Cache) {
		ctx := context.Background()
		if err := c.Set(ctx, &cachedsql.Item{Key: "k", Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		srv.SetFaults(fakememcache.Faults{Drop: true})
		if _, err := c.GetMulti(ctx, []string{"k"}); err == nil {
			t.Fatal("GetMulti on a dropped connection: got nil error")
		}
		srv.SetFaults(fakememcache.Faults{})

		if err := srv.Refuse(true); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := c.GetMulti(ctx, []string{"k"}); err == nil {
			t.Fatal("GetMulti on a refusing server: got nil error")
		}
		if elapsed := time.Since(start); elapsed > 200*time.Millisecond {
			t.Errorf("a refused connection took %v to fail; want it at once", elapsed)
		}
		if err := srv.Refuse(false); err != nil {
			t.Fatal(err)
		}
		m, err := c.GetMulti(ctx, []string{"k"})
		if err != nil || m["k"] == nil || string(m["k"].Value) != "v" {
			t.Fatalf("GetMulti after the server came back = %v, %v; want k = v", m, err)
		}
	})
}

// BenchmarkMemcacheGetMulti measures the hit path over loopback: a real
// memcached when one answers, else the fake. "direct" uses a context that
// can never be done (no goroutine); "cancellable" one that can.
func BenchmarkMemcacheGetMulti(b *testing.B) {
	addr := ""
	if testenv.InCI() || memcacheUp() {
		addr = testenv.MemcacheAddr(b)
	} else {
		srv, err := fakememcache.New()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { srv.Close() })
		addr = srv.Addr()
	}
	mc := memcache.New(addr)
	b.Cleanup(func() { mc.Close() })
	c := cachedsql.Memcache(mc)
	keys := []string{"cachedsql-bench-entry", "cachedsql-bench-gen"}
	for _, k := range keys {
		if err := c.Set(context.Background(), &cachedsql.Item{Key: k, Value: make([]byte, 300)}); err != nil {
			b.Fatal(err)
		}
	}
	cancellable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for name, ctx := range map[string]context.Context{"direct": context.Background(), "cancellable": cancellable} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m, err := c.GetMulti(ctx, keys)
				if err != nil || len(m) != 2 {
					b.Fatalf("GetMulti = %v, %v", m, err)
				}
			}
		})
	}
	nm, err := cachedsql.NewMemcache(cachedsql.MemcacheConfig{Servers: []string{addr}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nm.(io.Closer).Close() })
	b.Run("NewMemcache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := nm.GetMulti(context.Background(), keys)
			if err != nil || len(m) != 2 {
				b.Fatalf("GetMulti = %v, %v", m, err)
			}
		}
	})
	b.Run("gomemcache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := mc.GetMulti(keys); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func memcacheUp() bool {
	addr := os.Getenv("CACHEDSQL_TEST_MEMCACHE")
	if addr == "" {
		addr = "127.0.0.1:11211"
	}
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestMemcacheDropsDeadPool: after memcached restarts, every pooled
// connection is dead. One failed operation must be enough to learn it:
// the next dials afresh, instead of each dead connection failing one
// operation in turn (with the breaker probing once a second, that kept
// the cache off for as many seconds as the pool held connections).
func TestMemcacheDropsDeadPool(t *testing.T) {
	t.Parallel()
	for _, b := range memcacheBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			srv := fakememcache.Start(t)
			c := b.open(t, srv.Addr(), time.Second)
			ctx := context.Background()
			if err := c.Set(ctx, &cachedsql.Item{Key: "k", Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
			// Fill both pools (reads and writes) with several connections.
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range 20 {
						c.GetMulti(ctx, []string{"k"})
						c.Set(ctx, &cachedsql.Item{Key: "k", Value: []byte("v")})
					}
				})
			}
			wg.Wait()
			srv.DropConnections()
			time.Sleep(20 * time.Millisecond) // the close reaches the client's sockets
			for name, op := range map[string]func() error{
				"GetMulti": func() error { _, err := c.GetMulti(ctx, []string{"k"}); return err },
				"Set":      func() error { return c.Set(ctx, &cachedsql.Item{Key: "k", Value: []byte("v")}) },
			} {
				failures := 0
				for op() != nil {
					if failures++; failures > 2 {
						t.Fatalf("%s: %d failures in a row after the server dropped its connections; want at most 1 per pool", name, failures)
					}
				}
			}
		})
	}
}
