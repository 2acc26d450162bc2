package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// cmdH2Stall: -conns HTTP/2 (h2c, prior knowledge) client connections,
// each advertising SETTINGS_INITIAL_WINDOW_SIZE 0 and never sending a
// WINDOW_UPDATE, each opening -streams streams for an answer of -bytes. The
// proxy may send the answers' HEADERS but not a byte of DATA: what it keeps
// of the answers while they stall is its business. Written with raw frames
// (x/net/http2's Framer), so that no client library gives window back.
//
// Reported: the peak RSS while they stall (-hold), VmRSS at the end of the
// hold and -after the connections closed (memory given back), what the
// clients got (answer heads, DATA bytes, RST_STREAM, GOAWAY), and the
// latency of a separate client making small h2c GETs back to back on one
// connection during the hold.
func cmdH2Stall(args []string) error {
	fs, c := commonFlags("h2stall", "h2stall")
	conns := fs.Int("conns", 50, "stalling client connections")
	streams := fs.Int("streams", 100, "streams per connection")
	size := sizeFlag(fs, "bytes", 1<<20, "answer size each stream asks for")
	hold := fs.Duration("hold", 5*time.Second, "how long the clients stall")
	after := fs.Duration("after", 2*time.Second, "when RSS is read again after they close")
	fs.Parse(args)
	r := newResult(c)
	mon := startMonitor(c)
	before := mon.now().rss
	target := fmt.Sprintf("/download?bytes=%d", *size)

	var tally h2Tally
	sc := make([]*stallConn, *conns)
	var wg sync.WaitGroup
	for i := range sc {
		wg.Go(func() {
			s, err := openStallConn(c, i, *streams, target, &tally)
			if err != nil {
				tally.fail(err)
				return
			}
			sc[i] = s
		})
	}
	wg.Wait()
	// Every stream is asked for: the stall starts now. The normal client
	// runs through it.
	stallEnd := time.Now().Add(*hold)
	fast := fastH2Client(c, stallEnd)
	time.Sleep(time.Until(stallEnd))
	atHold := mon.now()
	for _, s := range sc {
		if s != nil {
			s.Close()
		}
	}
	for _, s := range sc {
		if s != nil {
			<-s.done
		}
	}
	time.Sleep(*after)
	afterStat := mon.now()

	slices.Sort(fast.lat)
	r.set("conns", *conns)
	r.set("streams", *streams)
	r.set("bytes", *size)
	r.set("hold_s", hold.Seconds())
	r.set("after_s", after.Seconds())
	tally.put(r)
	r.set("rss_before_kib", before)
	r.set("rss_hold_kib", atHold.rss)
	if afterStat.alive {
		r.set("rss_after_kib", afterStat.rss)
	}
	r.set("fast_n", len(fast.lat))
	r.set("fast_err", fast.errs)
	r.set("fast_first_err", fast.first)
	r.set("fast_p50_ms", percentile(fast.lat, 50))
	r.set("fast_p99_ms", percentile(fast.lat, 99))
	r.set("fast_max_ms", percentile(fast.lat, 100))
	mon.finish(r)
	r.print()
	return nil
}

// h2Tally is what the stalling connections got, all together.
type h2Tally struct {
	opened    atomic.Int64 // connections that sent all their streams
	heads     atomic.Int64 // answer heads (HEADERS frames ending a head)
	dataBytes atomic.Int64 // DATA payload bytes (none may come at window 0)
	mu        sync.Mutex
	statuses  statuses // the answer heads' :status
	rst       map[string]int
	goaway    map[string]int
	first     error
}

func (t *h2Tally) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.first = cmp(t.first, err)
}

func (t *h2Tally) count(m *map[string]int, k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[k]++
}

func (t *h2Tally) put(r *result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r.set("opened", t.opened.Load())
	r.set("heads", t.heads.Load())
	r.set("head_statuses", t.statuses.String())
	r.set("data_bytes", t.dataBytes.Load())
	r.set("rst", countsString(t.rst))
	r.set("goaway", countsString(t.goaway))
	r.set("err", t.first)
}

func countsString(m map[string]int) string {
	var ks []string
	for k, n := range m {
		ks = append(ks, k+":"+strconv.Itoa(n))
	}
	slices.Sort(ks)
	var b bytes.Buffer
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
	}
	return b.String()
}

// stallConn is one stalling client connection: its frames are written
// under mu (the reader answers SETTINGS and PING), read by one goroutine
// until the connection closes.
type stallConn struct {
	net.Conn
	fr   *http2.Framer
	mu   sync.Mutex
	done chan struct{}
}

// openStallConn dials, sends the preface and SETTINGS (initial window 0,
// no push), then streams HEADERS, each for target with a key of its own.
func openStallConn(c *common, i, streams int, target string, t *h2Tally) (*stallConn, error) {
	nc, err := net.DialTimeout("tcp", c.addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	s := &stallConn{Conn: nc, done: make(chan struct{})}
	s.fr = http2.NewFramer(nc, nc)
	s.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	s.fr.MaxHeaderListSize = 1 << 20
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		nc.Close()
		return nil, err
	}
	s.mu.Lock()
	err = s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	s.mu.Unlock()
	if err != nil {
		nc.Close()
		return nil, err
	}
	go s.read(t)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for j := 0; j < streams; j++ {
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", c.addr},
			{":path", target}, {"x-shard-key", key(c.seed, i*streams+j)}, {"user-agent", "memload-h2stall"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		s.mu.Lock()
		err := s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*j + 1), BlockFragment: hb.Bytes(),
			EndStream: true, EndHeaders: true})
		s.mu.Unlock()
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	t.opened.Add(1)
	return s, nil
}

// read takes the proxy's frames until the connection ends: acknowledges
// SETTINGS, answers PING, counts answer heads, DATA, RST_STREAM and
// GOAWAY. It never sends WINDOW_UPDATE.
func (s *stallConn) read(t *h2Tally) {
	defer close(s.done)
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				s.mu.Lock()
				s.fr.WriteSettingsAck()
				s.mu.Unlock()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				s.mu.Lock()
				s.fr.WritePing(true, f.Data)
				s.mu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			st, _ := strconv.Atoi(f.PseudoValue("status"))
			if st >= 200 {
				t.heads.Add(1)
				t.statuses.add(st, nil)
			}
		case *http2.DataFrame:
			t.dataBytes.Add(int64(len(f.Data())))
		case *http2.RSTStreamFrame:
			t.count(&t.rst, f.ErrCode.String())
		case *http2.GoAwayFrame:
			t.count(&t.goaway, f.ErrCode.String())
		}
	}
}

// fastH2Client makes small GETs back to back on one h2c connection until
// end, each with a key of its own, and times them.
func fastH2Client(c *common, end time.Time) fastStats {
	var f fastStats
	// h2c with prior knowledge: net/http's own HTTP/2, no TLS.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + c.addr + "/"
	for i := 0; time.Now().Before(end); i++ {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			f.fail(err)
			return f
		}
		req.Header.Set("X-Shard-Key", key(c.seed+1, i))
		ts := time.Now()
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if err != nil {
			f.fail(err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		f.lat = append(f.lat, time.Since(ts))
	}
	return f
}
