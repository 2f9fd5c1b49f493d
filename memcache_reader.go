package cachedsql

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// rawReader reads items from memcached over connections of its own, for
// the Caches NewMemcache builds. gomemcache's GetMulti costs a goroutine,
// a channel and two maps per call; the hit path reads two keys per lookup,
// so this reader sends one pipelined "gets" per server on the caller's
// goroutine and fills a caller-owned slice. Writes still go through
// gomemcache, over the same ServerSelector, so both agree on which server
// holds a key.
type rawReader struct {
	servers memcache.ServerSelector
	timeout time.Duration
	maxIdle int
	dialer  net.Dialer

	mu   sync.Mutex              // protects idle
	idle map[net.Addr][]*rawConn // per server, most recently used last
}

// rawConn is one pooled connection with its buffers.
type rawConn struct {
	nc   net.Conn
	addr net.Addr
	r    *bufio.Reader
	w    *bufio.Writer
}

// errProtocol marks an answer the reader cannot parse: the connection is
// dropped, and the read fails (it must never pass for a miss).
var errProtocol = errors.New("unexpected answer")

func newRawReader(servers memcache.ServerSelector, timeout time.Duration, maxIdle int) *rawReader {
	return &rawReader{
		servers: servers,
		timeout: timeout,
		maxIdle: maxIdle,
		dialer:  net.Dialer{Timeout: timeout},
		idle:    make(map[net.Addr][]*rawConn),
	}
}

// readRequest is one server's share of a read.
type readRequest struct {
	addr net.Addr
	conn *rawConn
}

// readOp tracks a read's connections under a context that can be
// cancelled, so context.AfterFunc's callback can interrupt their I/O.
type readOp struct {
	mu          sync.Mutex // protects interrupted, done and conns
	interrupted bool
	done        bool // the read's I/O is over: its connections may be pooled
	conns       []*rawConn
}

// interrupt ends the read's I/O at once: its context was cancelled. Once
// the read is done it does nothing: its connections may already serve
// another read.
func (op *readOp) interrupt() {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.done {
		return
	}
	op.interrupted = true
	for _, c := range op.conns {
		_ = c.nc.SetDeadline(time.Unix(1, 0))
	}
}

// track records a connection the read is about to use; false if the read
// was already interrupted.
func (op *readOp) track(c *rawConn) bool {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.conns = append(op.conns, c)
	return !op.interrupted
}

// finished marks the read's I/O over, after which interrupt touches
// nothing, and reports whether it was interrupted before: its
// connections' deadline was then set behind its back.
func (op *readOp) finished() bool {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.done = true
	return op.interrupted
}

// get reads keys (already validated) into out, which has one Item per key:
// out[i].Key is set to keys[i] when keys[i] was found, left empty
// otherwise. Every server is sent its request before any answer is read,
// so a read spanning servers waits for the slowest, not their sum. Any
// failure fails the whole read. ctx's deadline, if before the reader's
// timeout, ends the read; its cancellation does too, at once, unless
// lazyCancel (see pairGetter) lets it wait for the timeout.
func (rr *rawReader) get(ctx context.Context, keys []string, out []Item, lazyCancel bool) error {
	if err := ctx.Err(); err != nil {
		return opError("memcache", "get", firstKey(keys), err)
	}
	if ctx.Done() == nil || lazyCancel {
		// The hit path's usual case: nothing can interrupt the read, so
		// its state stays on the stack.
		return rr.run(ctx, nil, keys, out)
	}
	op := new(readOp)
	stop := context.AfterFunc(ctx, op.interrupt)
	err := rr.run(ctx, op, keys, out)
	stop()
	return err
}

// run is get, with op tracking the connections when ctx can be cancelled.
func (rr *rawReader) run(ctx context.Context, op *readOp, keys []string, out []Item) (err error) {
	var reqBuf [2]readRequest
	reqs := reqBuf[:0]
	for _, k := range keys {
		addr, err := rr.servers.PickServer(k)
		if err != nil {
			return opError("memcache", "get", k, err)
		}
		if indexOfAddr(reqs, addr) < 0 {
			reqs = append(reqs, readRequest{addr: addr})
		}
	}
	deadline := time.Now().Add(rr.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	defer func() {
		// A connection goes back to the pool only after a whole answer,
		// with its deadline still ours.
		interrupted := op != nil && op.finished()
		pool := err == nil && !interrupted
		for i := range reqs {
			if c := reqs[i].conn; c != nil {
				if pool {
					rr.release(c)
				} else {
					rr.discard(c)
				}
			}
			if deadConnection(err) {
				// The server's other idle connections are likely dead
				// too (it restarted, the network was cut): left pooled,
				// each would fail one read in turn.
				rr.dropIdle(reqs[i].addr)
			}
		}
	}()
	for i := range reqs {
		c, err := rr.acquire(ctx, reqs[i].addr, deadline)
		if err != nil {
			return rr.failure(ctx, keys[0], err)
		}
		reqs[i].conn = c
		if op != nil && !op.track(c) {
			return rr.failure(ctx, keys[0], context.Cause(ctx))
		}
		if err := writeGets(c, keys, rr.servers, reqs[i].addr, len(reqs) == 1); err != nil {
			return rr.failure(ctx, keys[0], err)
		}
	}
	for i := range reqs {
		if err := readValues(reqs[i].conn.r, keys, out); err != nil {
			return rr.failure(ctx, keys[0], err)
		}
	}
	return nil
}

func indexOfAddr(reqs []readRequest, addr net.Addr) int {
	for i := range reqs {
		if reqs[i].addr == addr {
			return i
		}
	}
	return -1
}

// failure wraps a read's error, reporting the context's own error when it
// is what ended the read (its deadline or cancellation reached the
// connection as an I/O timeout).
func (rr *rawReader) failure(ctx context.Context, key string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return opError("memcache", "get", key, ctxErr)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
			return opError("memcache", "get", key, context.DeadlineExceeded)
		}
		return opError("memcache", "get", key, fmt.Errorf("timeout after %v: %w", rr.timeout, err))
	}
	return opError("memcache", "get", key, err)
}

// writeGets sends "gets" with the keys that live on addr (all of them when
// one server holds every key).
func writeGets(c *rawConn, keys []string, servers memcache.ServerSelector, addr net.Addr, all bool) error {
	w := c.w
	_, _ = w.WriteString("gets")
	for _, k := range keys {
		if !all {
			if a, err := servers.PickServer(k); err != nil || a != addr {
				continue
			}
		}
		_ = w.WriteByte(' ')
		_, _ = w.WriteString(k)
	}
	_, _ = w.WriteString("\r\n")
	return w.Flush()
}

// readValues reads one "gets" answer: VALUE blocks up to END. Each value
// is matched to the first key equal to it that is not yet filled, so a key
// asked twice is answered twice.
func readValues(r *bufio.Reader, keys []string, out []Item) error {
	var spare []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return fmt.Errorf("%w: line over %d bytes", errProtocol, r.Size())
			}
			return err
		}
		if bytes.Equal(line, []byte("END\r\n")) {
			return nil
		}
		key, size, cas, err := parseValueLine(line)
		if err != nil {
			return err
		}
		i := matchValue(keys, out, key)
		if i < 0 {
			return fmt.Errorf("%w: value for a key not asked for", errProtocol)
		}
		// Values share one allocation while they fit: the first is given
		// room for a small second (the read path's generation item).
		// Each value is capped, so none can grow into the next.
		if cap(spare) < size+2 {
			spare = make([]byte, 0, size+2+smallValueRoom)
		}
		value := spare[: size+2 : size+2]
		spare = spare[size+2 : cap(spare)]
		if _, err := ioReadFull(r, value); err != nil {
			return err
		}
		if !bytes.HasSuffix(value, []byte("\r\n")) {
			return fmt.Errorf("%w: value not followed by CRLF", errProtocol)
		}
		out[i] = Item{Key: keys[i], Value: value[:size:size], CasID: cas}
	}
}

// smallValueRoom is the room left after a value for a small one to follow
// in the same allocation: a generation item takes 18 bytes.
const smallValueRoom = 48

// parseValueLine parses "VALUE <key> <flags> <bytes> <cas>\r\n"; any other
// line (ERROR, CLIENT_ERROR, SERVER_ERROR...) is an error naming it.
func parseValueLine(line []byte) (key []byte, size int, cas uint64, err error) {
	rest, ok := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\r\n")), []byte("VALUE "))
	if !ok {
		return nil, 0, 0, fmt.Errorf("%w: %q", errProtocol, bytes.TrimSpace(line))
	}
	var fields [4][]byte
	n := 0
	for len(rest) > 0 && n < len(fields) {
		field, tail, _ := bytes.Cut(rest, []byte(" "))
		fields[n], rest, n = field, tail, n+1
	}
	if n != 4 || len(rest) > 0 {
		return nil, 0, 0, fmt.Errorf("%w: %q", errProtocol, bytes.TrimSpace(line))
	}
	size64, err1 := parseUint(fields[2])
	cas, err2 := parseUint(fields[3])
	if err1 != nil || err2 != nil || size64 > MaxValueSize+1<<20 {
		return nil, 0, 0, fmt.Errorf("%w: %q", errProtocol, bytes.TrimSpace(line))
	}
	return fields[0], int(size64), cas, nil
}

// parseUint parses decimal digits without converting to a string.
func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, strconv.ErrSyntax
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, strconv.ErrRange
		}
		n = n*10 + d
	}
	return n, nil
}

func matchValue(keys []string, out []Item, key []byte) int {
	for i, k := range keys {
		if out[i].Key == "" && k == string(key) {
			return i
		}
	}
	return -1
}

// ioReadFull is io.ReadFull on a bufio.Reader, without the interface
// conversion's allocation.
func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// acquire returns an idle connection to addr, or dials one, with its
// deadline set.
func (rr *rawReader) acquire(ctx context.Context, addr net.Addr, deadline time.Time) (*rawConn, error) {
	rr.mu.Lock()
	var c *rawConn
	if pool := rr.idle[addr]; len(pool) > 0 {
		c = pool[len(pool)-1]
		pool[len(pool)-1] = nil
		rr.idle[addr] = pool[:len(pool)-1]
	}
	rr.mu.Unlock()
	if c == nil {
		dctx, cancel := context.WithDeadline(ctx, deadline)
		nc, err := rr.dialer.DialContext(dctx, addr.Network(), addr.String())
		cancel()
		if err != nil {
			return nil, err
		}
		c = &rawConn{nc: nc, addr: addr, r: bufio.NewReaderSize(nc, 4096), w: bufio.NewWriterSize(nc, 1024)}
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		rr.discard(c)
		return nil, err
	}
	return c, nil
}

// release returns a connection whose last answer was read to its end.
func (rr *rawReader) release(c *rawConn) {
	rr.mu.Lock()
	if pool := rr.idle[c.addr]; len(pool) < rr.maxIdle {
		rr.idle[c.addr] = append(pool, c)
		c = nil
	}
	rr.mu.Unlock()
	if c != nil {
		_ = c.nc.Close()
	}
}

// discard closes a connection whose state is unknown (a failed or
// interrupted read may leave an answer half read).
func (rr *rawReader) discard(c *rawConn) {
	if c != nil {
		_ = c.nc.Close()
	}
}

// dropIdle closes addr's idle connections.
func (rr *rawReader) dropIdle(addr net.Addr) {
	rr.mu.Lock()
	pool := rr.idle[addr]
	delete(rr.idle, addr)
	rr.mu.Unlock()
	for _, c := range pool {
		_ = c.nc.Close()
	}
}

// close closes every idle connection; later reads dial again.
func (rr *rawReader) close() {
	rr.mu.Lock()
	idle := rr.idle
	rr.idle = make(map[net.Addr][]*rawConn)
	rr.mu.Unlock()
	for _, pool := range idle {
		for _, c := range pool {
			_ = c.nc.Close()
		}
	}
}
