// Package faultproxy is a TCP proxy for tests that injects network faults
// between a client and a server: dropped or reset connections, delays, a
// black hole (reads everything, answers nothing), and cuts triggered by
// what the client sends (say, a COMMIT).
package faultproxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Mode is what the proxy does with traffic.
type Mode int

const (
	Pass      Mode = iota // forward both ways
	Drop                  // close connections (new ones at once) with a FIN
	Reset                 // close connections (new ones at once) with a RST
	BlackHole             // accept and read, never forward nor answer
)

// Proxy forwards connections from Addr to a target.
type Proxy struct {
	target string
	ln     net.Listener

	mu       sync.Mutex
	mode     Mode
	delay    time.Duration
	cutOn    []byte  // lower-case pattern in client data that triggers a cut
	cutProb  float64 // probability that a match cuts
	cutAfter bool    // forward the matching data before cutting
	conns    map[*pair]struct{}
	cuts     int
	closed   bool
	wg       sync.WaitGroup
}

type pair struct {
	client, server net.Conn
	once           sync.Once
}

func (p *pair) close(reset bool) {
	p.once.Do(func() {
		if reset {
			for _, c := range []net.Conn{p.client, p.server} {
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetLinger(0)
				}
			}
		}
		p.client.Close()
		p.server.Close()
	})
}

// Start listens on 127.0.0.1 (a free port) and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, conns: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetMode switches the mode. Drop and Reset close every open connection
// now; BlackHole swallows whatever arrives on them from now on.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	var victims []*pair
	if m == Drop || m == Reset {
		for c := range p.conns {
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.close(m == Reset)
	}
}

// SetDelay holds every chunk of data, both ways, for d before forwarding.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// CutOn makes a chunk of client data containing pattern (compared without
// case) cut its connection with probability prob: before the chunk is
// forwarded (the server never sees it) or, if after, just after (the
// server executes it, the client never hears back). A nil pattern stops.
func (p *Proxy) CutOn(pattern []byte, prob float64, after bool) {
	p.mu.Lock()
	p.cutOn, p.cutProb, p.cutAfter = bytes.ToLower(pattern), prob, after
	p.mu.Unlock()
}

// CutAll resets every open connection now (the mode is unchanged).
func (p *Proxy) CutAll() {
	p.mu.Lock()
	var victims []*pair
	for c := range p.conns {
		victims = append(victims, c)
	}
	p.cuts += len(victims)
	p.mu.Unlock()
	for _, c := range victims {
		c.close(true)
	}
}

// Cuts is how many connections were cut (CutOn, CutAll).
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	var victims []*pair
	for c := range p.conns {
		victims = append(victims, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range victims {
		c.close(false)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) state() (Mode, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		mode, _ := p.state()
		switch mode {
		case Drop, Reset:
			pr := &pair{client: c, server: nopConn{c}}
			pr.close(mode == Reset)
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	pr := &pair{client: c, server: s}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pr.close(false)
		return
	}
	p.conns[pr] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pump(pr, c, s, true); done <- struct{}{} }()
	go func() { p.pump(pr, s, c, false); done <- struct{}{} }()
	<-done
	pr.close(false)
	<-done
	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
}

// pump copies from src to dst, applying the faults.
func (p *Proxy) pump(pr *pair, src, dst net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			mode, delay := p.state()
			if delay > 0 {
				time.Sleep(delay)
			}
			switch mode {
			case BlackHole:
				continue
			case Drop, Reset:
				pr.close(mode == Reset)
				return
			}
			cut, after := false, false
			if fromClient {
				p.mu.Lock()
				if p.cutOn != nil && bytes.Contains(bytes.ToLower(chunk), p.cutOn) && rand.Float64() < p.cutProb {
					cut, after = true, p.cutAfter
					p.cuts++
				}
				p.mu.Unlock()
			}
			if cut && !after {
				pr.close(true)
				return
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
			if cut {
				// Let the server take it before the client loses the
				// connection.
				time.Sleep(5 * time.Millisecond)
				pr.close(true)
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

// nopConn stands in for a server connection never dialled.
type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }
