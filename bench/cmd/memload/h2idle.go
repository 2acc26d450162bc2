package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// idleConn is one connection an idle worker holds: open says whether the
// proxy still holds it too.
type idleConn interface {
	open() bool
	Close() error
}

// h1Idle is an HTTP/1.1 keep-alive connection after its one request.
type h1Idle struct{ *conn }

func (h h1Idle) open() bool { return stillOpen(h.conn) }

// openIdle dials from src and makes one GET with key k, over HTTP/1.1
// keep-alive or (h2) h2c with prior knowledge; the connection it returns
// stays open and idle.
func openIdle(c *common, src net.IP, k string, h2 bool) (idleConn, error) {
	cn, err := dial(c.addr, src, 10*time.Second)
	if err != nil {
		return nil, err
	}
	cn.SetDeadline(time.Now().Add(30 * time.Second))
	if h2 {
		return openH2Idle(c, cn, k)
	}
	status, err := cn.get(c.addr, "/", k)
	if err == nil && status != 200 {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		cn.Close()
		return nil, err
	}
	cn.SetDeadline(time.Time{})
	return h1Idle{cn}, nil
}

// h2Idle is an h2c connection after its one stream: a goroutine reads
// it until it ends, acknowledging SETTINGS and answering PING (the proxy
// may probe an idle connection), and never sends anything else. closed is
// set once the proxy closed it or sent GOAWAY (it means to close).
type h2Idle struct {
	*conn
	fr     *http2.Framer
	closed atomic.Bool
}

func (h *h2Idle) open() bool { return !h.closed.Load() }

// openH2Idle sends the preface, SETTINGS (no push) and one GET on stream
// 1 ending the stream, reads frames until the answer's END_STREAM, then
// leaves the connection to h.idle.
func openH2Idle(c *common, cn *conn, k string) (idleConn, error) {
	h := &h2Idle{conn: cn, fr: http2.NewFramer(cn.Conn, cn.br)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", c.addr},
		{":path", "/"}, {"x-shard-key", k}, {"user-agent", "memload-h2idle"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_, err := io.WriteString(cn, http2.ClientPreface)
	if err == nil {
		err = h.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	if err == nil {
		err = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(),
			EndStream: true, EndHeaders: true})
	}
	if err == nil {
		err = h.answer()
	}
	if err != nil {
		cn.Close()
		return nil, err
	}
	cn.SetDeadline(time.Time{})
	go h.idle()
	return h, nil
}

// answer reads frames until stream 1 ends; an error unless it ended with
// status 200.
func (h *h2Idle) answer() error {
	status := 0
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return err
		}
		end, err := h.control(f)
		if err != nil {
			return err
		}
		if end {
			return errors.New("GOAWAY before the answer")
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				if s, _ := strconv.Atoi(f.PseudoValue("status")); s >= 200 {
					status = s
				}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return fmt.Errorf("RST_STREAM %v", f.ErrCode)
			}
		}
		if f.Header().StreamID == 1 && f.Header().Flags.Has(http2.FlagDataEndStream) {
			if status != 200 {
				return fmt.Errorf("status %d", status)
			}
			return nil
		}
	}
}

// control acknowledges SETTINGS and answers PING; end is true for
// GOAWAY.
func (h *h2Idle) control(f http2.Frame) (end bool, err error) {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			err = h.fr.WriteSettingsAck()
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			err = h.fr.WritePing(true, f.Data)
		}
	case *http2.GoAwayFrame:
		return true, nil
	}
	return false, err
}

// idle reads the connection until the proxy closes it (or the worker
// does).
func (h *h2Idle) idle() {
	defer h.closed.Store(true)
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return
		}
		if end, err := h.control(f); end || err != nil {
			return
		}
	}
}
