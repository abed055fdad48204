package testkit

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TCPProxy forwards connections on a loopback port to a backend that can be
// switched: the address clients keep while a server fails over behind it.
type TCPProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	backend string
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// StartTCPProxy listens on a free loopback port and forwards to backend
// until the test ends.
func StartTCPProxy(t testing.TB, backend string) *TCPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TCPProxy{ln: ln, backend: backend, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			to := p.backend
			p.mu.Unlock()
			b, err := net.DialTimeout("tcp", to, time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[b] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(b, c); b.Close(); c.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, b); b.Close(); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.Cut("")
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's address.
func (p *TCPProxy) Addr() string { return p.ln.Addr().String() }

// Cut drops every connection and sends new ones to backend ("" keeps it).
func (p *TCPProxy) Cut(backend string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if backend != "" {
		p.backend = backend
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}
