package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/ring"
)

// h2Lean is an HTTP/2 client of one connection that sends the same GET
// on stream after stream from fixed buffers and skips the answer's
// frames: it allocates nothing per request, so a test can count the
// proxy's allocations (as allocsPerRequest does over HTTP/1.1) and a
// benchmark profile the relay's own work.
type h2Lean struct {
	nc    net.Conn
	id    uint32
	req   []byte // a HEADERS frame (END_STREAM, END_HEADERS); its stream id is set per request
	frame [9]byte
	buf   []byte
}

// dialH2Lean opens an HTTP/2 connection (prior knowledge) to the proxy
// and prepares GET /items/7?x=1 with key 42 and, when not "", the
// traceparent. The HPACK block is literals without indexing: every
// request sends the same bytes.
func dialH2Lean(t testing.TB, p *running, traceparent string) *h2Lean {
	t.Helper()
	nc, err := net.Dial("tcp", p.rawAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(2 * time.Minute))
	var block []byte
	field := func(name, value string) {
		block = append(block, 0, byte(len(name)))
		block = append(block, name...)
		block = append(block, byte(len(value)))
		block = append(block, value...)
	}
	field(":method", "GET")
	field(":scheme", "http")
	field(":authority", "a")
	field(":path", "/items/7?x=1")
	field("x-shard-key", "42")
	if traceparent != "" {
		field("traceparent", traceparent)
	}
	c := &h2Lean{nc: nc, id: 1, buf: make([]byte, 1<<16)}
	c.req = appendFrame(nil, 0x1, 0x5, 0, block)
	start := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	start = appendFrame(start, 0x4, 0, 0, nil) // SETTINGS
	// The connection's window as large as it goes: the answers' DATA
	// never has to wait for a WINDOW_UPDATE.
	start = appendFrame(start, 0x8, 0, 0, binary.BigEndian.AppendUint32(nil, 1<<31-1-65535))
	if _, err := nc.Write(start); err != nil {
		t.Fatal(err)
	}
	return c
}

// appendFrame appends an HTTP/2 frame.
func appendFrame(b []byte, typ, flags byte, id uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	b = binary.BigEndian.AppendUint32(b, id)
	return append(b, payload...)
}

// get sends the GET on a new stream and reads frames until its answer
// ends, acknowledging SETTINGS and PING. The answer must be a 200: its
// head's first field the static table's ":status: 200" (HPACK index 8).
func (c *h2Lean) get(t testing.TB) {
	binary.BigEndian.PutUint32(c.req[5:9], c.id)
	id := c.id
	c.id += 2
	if _, err := c.nc.Write(c.req); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := io.ReadFull(c.nc, c.frame[:]); err != nil {
			t.Fatal(err)
		}
		n := int(c.frame[0])<<16 | int(c.frame[1])<<8 | int(c.frame[2])
		typ, flags := c.frame[3], c.frame[4]
		sid := binary.BigEndian.Uint32(c.frame[5:9]) & (1<<31 - 1)
		payload := c.buf[:n]
		if _, err := io.ReadFull(c.nc, payload); err != nil {
			t.Fatal(err)
		}
		switch {
		case typ == 0x4 && flags&1 == 0: // SETTINGS: acknowledge
			if _, err := c.nc.Write(appendFrame(c.buf[n:n], 0x4, 1, 0, nil)); err != nil {
				t.Fatal(err)
			}
		case typ == 0x6 && flags&1 == 0: // PING: answer
			if _, err := c.nc.Write(appendFrame(c.buf[n:n], 0x6, 1, 0, payload)); err != nil {
				t.Fatal(err)
			}
		case typ == 0x7 || typ == 0x3 && sid == id: // GOAWAY, RST_STREAM
			t.Fatalf("stream %d: frame type %d, payload %x", id, typ, payload)
		case typ == 0x1 && sid == id && (n == 0 || payload[0] != 0x88):
			t.Fatalf("stream %d: the answer's head is %x, want :status 200 first", id, payload)
		}
		if sid == id && (typ == 0x0 || typ == 0x1) && flags&1 != 0 { // the answer's end
			return
		}
	}
}

// BenchmarkH2RelayGET measures HTTP/2 GETs relayed to an HTTP/1.1 shard
// (the bench's h2 scenario, one stream at a time), with tracing off and
// with tracing at the default 1% sampling (the requests come without a
// trace context, as h2load's): with -cpuprofile, what tracing costs the
// 99% it does not sample.
func BenchmarkH2RelayGET(b *testing.B) {
	for _, traced := range []bool{false, true} {
		name := "off"
		if traced {
			name = "tracing1pct"
		}
		b.Run(name, func(b *testing.B) {
			topo := startLeanShard(b)
			cfg := Config{HotKeySample: -1}
			if traced {
				cfg.Tracer, _ = startTracer(b, "grpc", nil)
			}
			p := startProxy(b, cfg, ring.Config{}, &topo)
			c := dialH2Lean(b, p, "")
			for range 100 {
				c.get(b)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c.get(b)
			}
		})
	}
}
