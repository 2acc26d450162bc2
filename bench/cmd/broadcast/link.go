package main

import (
	"net"
	"sync/atomic"
	"time"
)

// link is a TCP relay in front of one shard that stands in for a network
// link with a round trip of 2×oneWay: every byte that crosses it, either
// way, arrives oneWay after it was sent, and the first bytes of a
// connection wait one round trip more, as a real TCP handshake would make
// them. The kernel's netem qdisc would do this in the network, but this
// machine's kernel has no sch_netem (tc answers "Specified qdisc kind is
// unknown") and no modules to load it from. It counts the connections
// that cross it: the shard's new connections.
type link struct {
	ln     net.Listener
	target string
	oneWay time.Duration
	conns  atomic.Int64
}

func newLink(target string, oneWay time.Duration) (*link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &link{ln: ln, target: target, oneWay: oneWay}
	go l.serve()
	return l, nil
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.conns.Add(1)
		go l.relay(c.(*net.TCPConn))
	}
}

func (l *link) relay(client *net.TCPConn) {
	shard, err := net.Dial("tcp", l.target)
	if err != nil {
		client.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { pump(shard.(*net.TCPConn), client, l.oneWay, 2*l.oneWay); done <- struct{}{} }()
	go func() { pump(client, shard.(*net.TCPConn), l.oneWay, 0); done <- struct{}{} }()
	<-done
	<-done
	client.Close()
	shard.Close()
}

// chunk is bytes in flight on the link, due at a time.
type chunk struct {
	b  []byte
	at time.Time
}

// pump copies src to dst, each chunk oneWay after it was read (the first
// one first later still); at the end of src it half-closes dst once what
// is in flight has arrived.
func pump(dst, src *net.TCPConn, oneWay, firstExtra time.Duration) {
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		extra := firstExtra
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b: b[:n], at: time.Now().Add(oneWay + extra)}
				extra = 0
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			src.Close() // stops the reader; drain what it queued
			for range q {
			}
			return
		}
	}
	dst.CloseWrite()
}
