// Package pgproxy is a TCP proxy in front of PostgreSQL for tests: it relays
// the wire protocol unchanged, and when armed it cuts a connection exactly
// at COMMIT: the COMMIT reaches the server, the server's reply never
// reaches the client, and both connections are closed. The client cannot
// know whether its transaction committed.
package pgproxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
)

// Proxy relays connections on a local port to a PostgreSQL server.
type Proxy struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	cuts   atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// Start listens on 127.0.0.1 and relays to target (host:port).
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// CutAtCommit arms the proxy: the next COMMIT any client sends is relayed
// to the server, and the connection is dropped once the server has
// answered, without relaying the answer.
func (p *Proxy) CutAtCommit() { p.armed.Store(true) }

// Cuts is how many connections were cut at COMMIT.
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.track(c)
		p.track(s)
		p.wg.Add(1)
		go p.relay(c, s)
	}
}

// relay runs one client connection c against server connection s.
func (p *Proxy) relay(c, s net.Conn) {
	defer p.wg.Done()
	var (
		cutting atomic.Bool // set when COMMIT was forwarded for a cut
		replied = make(chan struct{})
		once    sync.Once
	)
	closeBoth := func() { c.Close(); s.Close() }
	// Server to client: relayed until a cut is under way; the first bytes
	// after it (COMMIT's reply) are swallowed and end the connection.
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 {
				if cutting.Load() {
					once.Do(func() { close(replied) })
					return
				}
				if _, werr := c.Write(buf[:n]); werr != nil {
					closeBoth()
					return
				}
			}
			if err != nil {
				closeBoth()
				return
			}
		}
	}()
	defer closeBoth()
	// Client to server, message by message. The startup message has no
	// type byte; SSLRequest is answered by the server and relayed.
	if err := p.relayStartup(c, s); err != nil {
		return
	}
	var pendingCommit bool // an extended-protocol COMMIT waits for its Sync
	for {
		typ, msg, err := readMessage(c)
		if err != nil {
			return
		}
		cut := false
		if p.armed.Load() {
			switch typ {
			case 'Q':
				cut = isCommit(msg[5:])
			case 'P':
				// Parse: name\0 query\0 ...
				body := msg[5:]
				if i := bytes.IndexByte(body, 0); i >= 0 && isCommit(body[i+1:]) {
					pendingCommit = true
				}
			case 'S':
				cut = pendingCommit
			}
		}
		if cut && p.armed.CompareAndSwap(true, false) {
			cutting.Store(true)
			if _, err := s.Write(msg); err != nil {
				return
			}
			<-replied // the server has executed COMMIT and answered
			p.cuts.Add(1)
			return
		}
		if _, err := s.Write(msg); err != nil {
			return
		}
	}
}

func (p *Proxy) relayStartup(c, s net.Conn) error {
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		code := binary.BigEndian.Uint32(hdr[4:])
		rest := make([]byte, int(n)-8)
		if _, err := io.ReadFull(c, rest); err != nil {
			return err
		}
		if _, err := s.Write(append(hdr[:], rest...)); err != nil {
			return err
		}
		if code != 80877103 && code != 80877104 { // SSLRequest, GSSENCRequest
			return nil
		}
		// The server answers one byte, relayed by the other goroutine;
		// the client then sends the real startup message.
	}
}

// readMessage reads one typed frontend message, returned whole.
func readMessage(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	msg := make([]byte, 1+int(n))
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[5:]); err != nil {
		return 0, nil, err
	}
	return hdr[0], msg, nil
}

// isCommit reports whether a NUL-terminated query is a COMMIT.
func isCommit(q []byte) bool {
	if i := bytes.IndexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	s := strings.ToLower(strings.TrimSpace(string(q)))
	s = strings.TrimSuffix(s, ";")
	return s == "commit" || s == "end" || strings.HasPrefix(s, "commit ")
}
