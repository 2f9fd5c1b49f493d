// Package fakememcache is an in-process memcached for tests: the text
// protocol subset gomemcache speaks, with memcached's replies and limits,
// plus fault injection (delays, error replies, corrupt values, black holes,
// dropped and refused connections) and per-verb counters.
//
// It passes the same conformance suite as a real memcached
// (internal/cachetest); where the two could differ, it follows what
// memcached 1.6 was seen to do: add and set reply STORED with no cas id,
// cas on a missing key replies NOT_FOUND, a value too large for an item is
// swallowed and answered "SERVER_ERROR object too large for cache" (and a
// refused set unlinks the old value), a key over 250 bytes gets
// "CLIENT_ERROR bad command line format", expirations over 30 days are
// absolute Unix times and expiry runs on a one-second clock.
package fakememcache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	maxKeyLength = 250
	// itemSizeMax is memcached's default -I (1 MiB); an item's header, key
	// and value with their terminators must fit in it.
	itemSizeMax = 1 << 20
	// itemHeader is memcached 1.6's item header with a cas id, in bytes.
	itemHeader = 56
	// maxRelativeExpiry is the largest exptime read as relative seconds.
	maxRelativeExpiry = 60 * 60 * 24 * 30
)

// Faults are misbehaviours the server applies to the commands it receives.
// The zero value is a well-behaved server.
type Faults struct {
	// Verbs limits the faults to these commands ("get", "gets", "set",
	// "add", "cas", "delete", "touch", ...). Empty means every command.
	Verbs []string
	// Delay holds each command this long before it is executed.
	Delay time.Duration
	// ServerError answers "SERVER_ERROR injected fault" instead of
	// executing the command.
	ServerError bool
	// Corrupt flips a byte in the middle of every value returned by get
	// and gets (the length is unchanged, the protocol stays valid).
	Corrupt bool
	// BlackHole reads commands and never answers nor executes them.
	BlackHole bool
	// Drop closes the connection when a command arrives, without executing
	// or answering it.
	Drop bool
}

func (f *Faults) applies(verb string) bool {
	return len(f.Verbs) == 0 || slices.Contains(f.Verbs, verb)
}

// Server is a fake memcached listening on 127.0.0.1.
type Server struct {
	addr string
	done chan struct{} // closed by Close: aborts delays
	wg   sync.WaitGroup

	mu       sync.Mutex // protects everything below
	ln       net.Listener
	closed   bool
	refusing bool
	conns    map[net.Conn]struct{}
	faults   Faults
	items    map[string]*item
	casID    uint64
	ops      map[string]int64
	accepted int64
	now      func() time.Time
}

type item struct {
	flags   uint32
	data    []byte
	cas     uint64
	expires int64 // Unix second at which the item is gone; 0: never
}

// New starts a server on 127.0.0.1:0.
func New() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakememcache: listen: %w", err)
	}
	s := &Server{
		addr:  ln.Addr().String(),
		done:  make(chan struct{}),
		ln:    ln,
		conns: make(map[net.Conn]struct{}),
		items: make(map[string]*item),
		ops:   make(map[string]int64),
		now:   time.Now,
	}
	s.wg.Add(1)
	go s.serve(ln)
	return s, nil
}

// Start starts a server that is closed when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// SetFaults replaces the faults applied to commands received from now on.
func (s *Server) SetFaults(f Faults) {
	f.Verbs = slices.Clone(f.Verbs)
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// Refuse, when on, closes the listener and every open connection, so that
// dials fail with "connection refused" and pooled connections break. Off
// listens again on the same address.
func (s *Server) Refuse(on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || on == s.refusing {
		return nil
	}
	if on {
		s.refusing = true
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("fakememcache: listen again on %s: %w", s.addr, err)
	}
	s.refusing = false
	s.ln = ln
	s.wg.Add(1)
	go s.serve(ln)
	return nil
}

// DropConnections closes every open connection, as a server restart or a
// network cut would; new connections are accepted.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// Ops returns how many commands with this verb the server has received,
// including those a fault swallowed.
func (s *Server) Ops(verb string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops[verb]
}

// OpCounts returns a copy of the per-verb command counts.
func (s *Server) OpCounts() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int64, len(s.ops))
	for k, v := range s.ops {
		m[k] = v
	}
	return m
}

// Accepted returns how many connections the server has accepted.
func (s *Server) Accepted() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Evict removes key as memcached's LRU would: behind the clients' backs.
// It reports whether there was an item.
func (s *Server) Evict(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.items[key]
	delete(s.items, key)
	return ok
}

// Len returns how many items are stored, expired ones included.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// Close stops the server, closes every connection and waits for its
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	if !s.refusing {
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) serve(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed || s.refusing {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.accepted++
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// errClose ends a connection without a reply.
var errClose = errors.New("close connection")

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriter(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if err := s.command(strings.TrimRight(line, "\r\n"), r, w); err != nil {
			return
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}

// command reads the rest of one command (its data block, if any), applies
// the faults and executes it, writing the reply to w.
func (s *Server) command(line string, r *bufio.Reader, w *bufio.Writer) error {
	f := strings.Fields(line)
	if len(f) == 0 {
		fmt.Fprint(w, "ERROR\r\n")
		return nil
	}
	verb := f[0]

	// Storage commands carry a data block that must be consumed whatever
	// happens next, or it would be read as commands.
	var data []byte
	storage, tooLarge := false, false
	switch verb {
	case "set", "add", "replace", "append", "prepend", "cas":
		storage = true
		if !storageLineOK(f) {
			// Like memcached: the data block, unread, then fails as a command.
			fmt.Fprint(w, "CLIENT_ERROR bad command line format\r\n")
			return nil
		}
		n, _ := strconv.Atoi(f[4])
		if n > itemSizeMax {
			// Swallowed unread, like memcached, without buffering it.
			if _, err := io.CopyN(io.Discard, r, int64(n)+2); err != nil {
				return err
			}
			tooLarge = true
		} else {
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(r, buf); err != nil {
				return err
			}
			if !bytes.HasSuffix(buf, []byte("\r\n")) {
				fmt.Fprint(w, "CLIENT_ERROR bad data chunk\r\n")
				return nil
			}
			data = buf[:n]
		}
	}

	s.mu.Lock()
	s.ops[verb]++
	faults := s.faults
	s.mu.Unlock()
	if faults.applies(verb) {
		switch {
		case faults.Drop:
			return errClose
		case faults.BlackHole:
			// Never answer; keep the connection until the client or Close
			// ends it.
			_, _ = io.Copy(io.Discard, r)
			return errClose
		}
		if faults.Delay > 0 {
			t := time.NewTimer(faults.Delay)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return errClose
			}
		}
		if faults.ServerError {
			fmt.Fprint(w, "SERVER_ERROR injected fault\r\n")
			return nil
		}
	} else {
		faults = Faults{}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().Unix()
	noreply := len(f) > 1 && f[len(f)-1] == "noreply"
	reply := func(msg string) {
		if !noreply {
			fmt.Fprintf(w, "%s\r\n", msg)
		}
	}
	if storage {
		s.store(f, data, tooLarge, now, reply)
		return nil
	}
	switch verb {
	case "get", "gets":
		keys := f[1:]
		if len(keys) == 0 {
			fmt.Fprint(w, "ERROR\r\n")
			return nil
		}
		for _, k := range keys {
			if len(k) > maxKeyLength {
				fmt.Fprint(w, "CLIENT_ERROR bad command line format\r\n")
				return nil
			}
		}
		for _, k := range keys {
			it := s.live(k, now)
			if it == nil {
				continue
			}
			v := it.data
			if faults.Corrupt && len(v) > 0 {
				v = slices.Clone(v)
				v[len(v)/2] ^= 0xff
			}
			if verb == "gets" {
				fmt.Fprintf(w, "VALUE %s %d %d %d\r\n", k, it.flags, len(v), it.cas)
			} else {
				fmt.Fprintf(w, "VALUE %s %d %d\r\n", k, it.flags, len(v))
			}
			w.Write(v)
			w.WriteString("\r\n")
		}
		fmt.Fprint(w, "END\r\n")
	case "delete":
		if len(f) < 2 || len(f[1]) > maxKeyLength {
			fmt.Fprint(w, "CLIENT_ERROR bad command line format\r\n")
			return nil
		}
		if s.live(f[1], now) == nil {
			reply("NOT_FOUND")
			return nil
		}
		delete(s.items, f[1])
		reply("DELETED")
	case "touch":
		if len(f) < 3 || len(f[1]) > maxKeyLength {
			fmt.Fprint(w, "CLIENT_ERROR bad command line format\r\n")
			return nil
		}
		exp, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			fmt.Fprint(w, "CLIENT_ERROR invalid exptime argument\r\n")
			return nil
		}
		it := s.live(f[1], now)
		if it == nil {
			reply("NOT_FOUND")
			return nil
		}
		it.expires = expiry(exp, now)
		reply("TOUCHED")
	case "incr", "decr":
		if len(f) < 3 || len(f[1]) > maxKeyLength {
			fmt.Fprint(w, "CLIENT_ERROR bad command line format\r\n")
			return nil
		}
		delta, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			fmt.Fprint(w, "CLIENT_ERROR invalid numeric delta argument\r\n")
			return nil
		}
		it := s.live(f[1], now)
		if it == nil {
			reply("NOT_FOUND")
			return nil
		}
		v, err := strconv.ParseUint(string(it.data), 10, 64)
		if err != nil {
			fmt.Fprint(w, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
			return nil
		}
		if verb == "incr" {
			v += delta // wraps, as memcached does
		} else if delta > v {
			v = 0
		} else {
			v -= delta
		}
		it.data = []byte(strconv.FormatUint(v, 10))
		s.casID++
		it.cas = s.casID
		reply(string(it.data))
	case "version":
		fmt.Fprint(w, "VERSION 1.6.18-fake\r\n")
	case "flush_all":
		clear(s.items)
		reply("OK")
	case "quit":
		return errClose
	default:
		fmt.Fprint(w, "ERROR\r\n")
	}
	return nil
}

// storageLineOK checks "<verb> <key> <flags> <exptime> <bytes> [cas] [noreply]".
func storageLineOK(f []string) bool {
	want := 5
	if f[0] == "cas" {
		want = 6
	}
	if len(f) != want && !(len(f) == want+1 && f[want] == "noreply") {
		return false
	}
	if len(f[1]) > maxKeyLength {
		return false
	}
	if _, err := strconv.ParseUint(f[2], 10, 32); err != nil {
		return false
	}
	if _, err := strconv.ParseInt(f[3], 10, 64); err != nil {
		return false
	}
	if n, err := strconv.Atoi(f[4]); err != nil || n < 0 {
		return false
	}
	if f[0] == "cas" {
		if _, err := strconv.ParseUint(f[5], 10, 64); err != nil {
			return false
		}
	}
	return true
}

// store executes a storage command whose line storageLineOK accepted.
// s.mu must be held.
func (s *Server) store(f []string, data []byte, tooLarge bool, now int64, reply func(string)) {
	verb, key := f[0], f[1]
	flags, _ := strconv.ParseUint(f[2], 10, 32)
	exp, _ := strconv.ParseInt(f[3], 10, 64)
	if tooLarge || itemHeader+len(key)+1+len(data)+2 > itemSizeMax {
		if verb == "set" {
			delete(s.items, key) // memcached unlinks the old value
		}
		reply("SERVER_ERROR object too large for cache")
		return
	}
	old := s.live(key, now)
	switch verb {
	case "add":
		if old != nil {
			reply("NOT_STORED")
			return
		}
	case "replace", "append", "prepend":
		if old == nil {
			reply("NOT_STORED")
			return
		}
	case "cas":
		if old == nil {
			reply("NOT_FOUND")
			return
		}
		if cas, _ := strconv.ParseUint(f[5], 10, 64); cas != old.cas {
			reply("EXISTS")
			return
		}
	}
	s.casID++
	it := &item{flags: uint32(flags), data: data, cas: s.casID, expires: expiry(exp, now)}
	switch verb {
	case "append":
		it.data = append(slices.Clip(old.data), data...)
		it.flags, it.expires = old.flags, old.expires
	case "prepend":
		it.data = append(slices.Clip(data), old.data...)
		it.flags, it.expires = old.flags, old.expires
	}
	s.items[key] = it
	reply("STORED")
}

// live returns key's item unless it is absent or expired (then dropped).
// s.mu must be held.
func (s *Server) live(key string, now int64) *item {
	it := s.items[key]
	if it == nil {
		return nil
	}
	if it.expires != 0 && it.expires <= now {
		delete(s.items, key)
		return nil
	}
	return it
}

// expiry converts a protocol exptime to the Unix second at which the item
// is gone, as memcached reads it: 0 never, negative already, up to 30 days
// relative, beyond that absolute.
func expiry(exp, now int64) int64 {
	switch {
	case exp == 0:
		return 0
	case exp < 0:
		return now
	case exp <= maxRelativeExpiry:
		return now + exp
	default:
		return exp
	}
}
