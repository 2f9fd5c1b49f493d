package cachedsql

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachedsql/cachedsql/internal/fakememcache"
)

func TestReadValuesParsesAnswers(t *testing.T) {
	keys := []string{"a", "b", "a"}
	cases := []struct {
		name   string
		answer string
		want   []string // value per key; "-" for not found
		err    string
	}{
		{"both", "VALUE a 0 1 7\r\nx\r\nVALUE b 0 2 8\r\nyz\r\nEND\r\n", []string{"x", "yz", "-"}, ""},
		{"key asked twice", "VALUE a 0 1 7\r\nx\r\nVALUE a 0 1 7\r\nx\r\nEND\r\n", []string{"x", "-", "x"}, ""},
		{"none", "END\r\n", []string{"-", "-", "-"}, ""},
		{"empty value", "VALUE b 0 0 9\r\n\r\nEND\r\n", []string{"-", "", "-"}, ""},
		{"binary value", "VALUE a 0 4 1\r\n\r\n\x00\n\r\nEND\r\n", []string{"\r\n\x00\n", "-", "-"}, ""},
		{"unasked key", "VALUE c 0 1 1\r\nx\r\nEND\r\n", nil, "not asked"},
		{"server error", "SERVER_ERROR out of memory\r\n", nil, "SERVER_ERROR out of memory"},
		{"error", "ERROR\r\n", nil, "ERROR"},
		{"no cas", "VALUE a 0 1\r\nx\r\nEND\r\n", nil, "unexpected answer"},
		{"bad size", "VALUE a 0 -1 7\r\nx\r\nEND\r\n", nil, "unexpected answer"},
		{"huge size", "VALUE a 0 99999999999 7\r\nx\r\nEND\r\n", nil, "unexpected answer"},
		{"cas overflow", "VALUE a 0 1 99999999999999999999\r\nx\r\nEND\r\n", nil, "unexpected answer"},
		{"extra field", "VALUE a 0 1 7 9\r\nx\r\nEND\r\n", nil, "unexpected answer"},
		{"no CRLF after value", "VALUE a 0 1 7\r\nxyEND\r\n", nil, "CRLF"},
		{"truncated value", "VALUE a 0 5 7\r\nx", nil, "EOF"},
		{"truncated answer", "VALUE a 0 1 7\r\nx\r\n", nil, "EOF"},
		{"long line", "VALUE " + strings.Repeat("a", 5000) + "\r\n", nil, "line over"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := make([]Item, len(keys))
			err := readValues(bufio.NewReaderSize(strings.NewReader(c.answer), 4096), keys, out)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v; want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range c.want {
				got := "-"
				if out[i].Key != "" {
					got = string(out[i].Value)
					if out[i].Key != keys[i] || out[i].CasID == 0 {
						t.Errorf("item %d = %+v; want key %q with a cas id", i, out[i], keys[i])
					}
				}
				if got != want {
					t.Errorf("value of key %d = %q; want %q", i, got, want)
				}
			}
		})
	}
}

// twoServers returns a reader over two fake servers and, for each, a key
// it holds.
func twoServers(t *testing.T) (rr *rawReader, srvs [2]*fakememcache.Server, keys [2]string, c *memcache.Client) {
	srvs = [2]*fakememcache.Server{fakememcache.Start(t), fakememcache.Start(t)}
	var ss memcache.ServerList
	if err := ss.SetServers(srvs[0].Addr(), srvs[1].Addr()); err != nil {
		t.Fatal(err)
	}
	for i := 0; keys[0] == "" || keys[1] == ""; i++ {
		k := fmt.Sprintf("k%d", i)
		addr, err := ss.PickServer(k)
		if err != nil {
			t.Fatal(err)
		}
		for j, s := range srvs {
			if addr.String() == s.Addr() && keys[j] == "" {
				keys[j] = k
			}
		}
	}
	c = memcache.NewFromSelector(&ss)
	t.Cleanup(func() { c.Close() })
	for _, k := range keys {
		if err := c.Set(&memcache.Item{Key: k, Value: []byte("v" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	rr = newRawReader(&ss, 300*time.Millisecond, 4)
	t.Cleanup(rr.close)
	return rr, srvs, keys, c
}

func TestRawReaderSpansServers(t *testing.T) {
	rr, srvs, keys, _ := twoServers(t)
	out := make([]Item, 3)
	if err := rr.get(context.Background(), []string{keys[0], keys[1], "absent"}, out, false); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if string(out[i].Value) != "v"+k {
			t.Errorf("%s = %q; want %q", k, out[i].Value, "v"+k)
		}
	}
	if out[2].Key != "" {
		t.Errorf("absent key found: %+v", out[2])
	}
	for i, s := range srvs {
		if n := s.Ops("gets"); n != 1 {
			t.Errorf("server %d saw %d gets; want 1", i, n)
		}
	}
	// One server black-holed fails the whole read, within the timeout, and
	// never as a miss.
	srvs[1].SetFaults(fakememcache.Faults{BlackHole: true})
	start := time.Now()
	err := rr.get(context.Background(), keys[:], make([]Item, 2), false)
	if err == nil || errors.Is(err, ErrCacheMiss) || !strings.HasPrefix(err.Error(), "cachedsql: memcache get") {
		t.Fatalf("read with one server black-holed: err = %v; want a timeout", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("read with one server black-holed took %v; want about the 300ms timeout", elapsed)
	}
	srvs[1].SetFaults(fakememcache.Faults{})
	if err := rr.get(context.Background(), keys[:], make([]Item, 2), false); err != nil {
		t.Fatalf("read after the fault cleared: %v", err)
	}
}

func TestRawReaderCancellation(t *testing.T) {
	rr, srvs, keys, _ := twoServers(t)
	srvs[0].SetFaults(fakememcache.Faults{BlackHole: true})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	err := rr.get(ctx, keys[:], make([]Item, 2), false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: err = %v; want context.Canceled", err)
	}
	if elapsed := time.Since(start); elapsed > 200*time.Millisecond {
		t.Errorf("cancelled read took %v; want it to end at the cancellation (20ms)", elapsed)
	}
	// A deadline shorter than the reader's timeout is the context's error.
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if err := rr.get(short, keys[:], make([]Item, 2), false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read past its context's deadline: err = %v; want DeadlineExceeded", err)
	}
	// With lazyCancel (the guard's hit path), a cancellation during the
	// read waits for the reader's own timeout, but a deadline before it
	// still ends the read.
	lazy, cancelLazy := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancelLazy)
	start = time.Now()
	if err := rr.get(lazy, keys[:], make([]Item, 2), true); err == nil || errors.Is(err, ErrCacheMiss) {
		t.Fatalf("lazily cancelled read of a black hole: err = %v; want an error", err)
	}
	if elapsed := time.Since(start); elapsed < 250*time.Millisecond || elapsed > time.Second {
		t.Errorf("lazily cancelled read of a black hole took %v; want the 300ms timeout", elapsed)
	}
	short2, cancelShort2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort2()
	if err := rr.get(short2, keys[:], make([]Item, 2), true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lazy read past its context's deadline: err = %v; want DeadlineExceeded", err)
	}
	srvs[0].SetFaults(fakememcache.Faults{})
	// Interrupted connections were not pooled: the next read works.
	live, cancelLive := context.WithCancel(context.Background())
	defer cancelLive()
	out := make([]Item, 2)
	if err := rr.get(live, keys[:], out, false); err != nil || out[0].Key == "" || out[1].Key == "" {
		t.Fatalf("read after the fault cleared: %+v, %v", out, err)
	}
}

// TestRawReaderReusesConnections: a pooled connection serves read after
// read, and a connection whose answer was not read to its end never goes
// back to the pool.
func TestRawReaderReusesConnections(t *testing.T) {
	srv := fakememcache.Start(t)
	var ss memcache.ServerList
	if err := ss.SetServers(srv.Addr()); err != nil {
		t.Fatal(err)
	}
	rr := newRawReader(&ss, 300*time.Millisecond, 2)
	t.Cleanup(rr.close)
	for range 20 {
		if err := rr.get(context.Background(), []string{"a", "b"}, make([]Item, 2), false); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Accepted(); n != 1 {
		t.Errorf("20 serial reads dialled %d connections; want 1", n)
	}
	srv.SetFaults(fakememcache.Faults{Drop: true})
	if err := rr.get(context.Background(), []string{"a"}, make([]Item, 1), false); err == nil {
		t.Fatal("read on a dropped connection: nil error")
	}
	srv.SetFaults(fakememcache.Faults{})
	if err := rr.get(context.Background(), []string{"a"}, make([]Item, 1), false); err != nil {
		t.Fatalf("read after a dropped connection: %v", err)
	}
}

// TestRawReaderAllocations pins the point of the reader: a two-key hit
// allocates the values, in one block, and nothing else. The server is a canned one
// that allocates nothing per request (AllocsPerRun counts every
// goroutine's allocations, a fake server's included).
func TestRawReaderAllocations(t *testing.T) {
	rr := cannedReader(t, "tcp", "127.0.0.1:0", "VALUE e 0 3 1\r\nabc\r\nVALUE g 0 2 2\r\nde\r\nEND\r\n")
	keys := []string{"e", "g"}
	out := make([]Item, 2)
	ctx := context.Background()
	var failed error
	allocs := testing.AllocsPerRun(200, func() {
		clear(out)
		if err := rr.get(ctx, keys, out, false); err != nil {
			failed = err
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if string(out[0].Value) != "abc" || string(out[1].Value) != "de" {
		t.Fatalf("read %q, %q; want abc, de", out[0].Value, out[1].Value)
	}
	if allocs > 1 {
		t.Errorf("two-key read: %.1f allocs; want 1 (the values share it)", allocs)
	}
}

// TestRawReaderUnixSocket: ServerList takes socket paths too.
func TestRawReaderUnixSocket(t *testing.T) {
	rr := cannedReader(t, "unix", t.TempDir()+"/mc.sock", "VALUE k 0 2 5\r\nhi\r\nEND\r\n")
	out := make([]Item, 1)
	if err := rr.get(context.Background(), []string{"k"}, out, false); err != nil || string(out[0].Value) != "hi" || out[0].CasID != 5 {
		t.Fatalf("read over a unix socket = %+v, %v", out[0], err)
	}
}

// cannedReader returns a reader on a server at (network, addr) that
// answers every request line with answer, allocating nothing per request.
func cannedReader(t *testing.T, network, addr, answer string) *rawReader {
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	canned := []byte(answer)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			if _, err := r.ReadSlice('\n'); err != nil {
				return
			}
			if _, err := c.Write(canned); err != nil {
				return
			}
		}
	}()
	var ss memcache.ServerList
	if err := ss.SetServers(ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	rr := newRawReader(&ss, time.Second, 1)
	t.Cleanup(rr.close)
	return rr
}

// TestRawReaderLateInterrupt: a cancellation's callback that runs after
// its read has ended (and pooled its connection) must not touch that
// connection, which may already serve another read.
func TestRawReaderLateInterrupt(t *testing.T) {
	rr := cannedReader(t, "tcp", "127.0.0.1:0", "VALUE k 0 1 1\r\nv\r\nEND\r\n")
	keys := []string{"k"}
	op := new(readOp)
	if err := rr.run(context.Background(), op, keys, make([]Item, 1)); err != nil {
		t.Fatal(err)
	}
	addr, err := rr.servers.PickServer("k")
	if err != nil {
		t.Fatal(err)
	}
	c, err := rr.acquire(context.Background(), addr, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	op.interrupt() // late: the first read is over, its connection is c
	if err := writeGets(c, keys, rr.servers, addr, true); err != nil {
		t.Fatalf("second read's request after a late interrupt of the first: %v", err)
	}
	if err := readValues(c.r, keys, make([]Item, 1)); err != nil {
		t.Fatalf("second read's answer after a late interrupt of the first: %v", err)
	}
	rr.release(c)
}
