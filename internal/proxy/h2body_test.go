package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// Body rules on the HTTP/2 relay, in raw frames: a stream whose key is in
// its JSON body waits for the whole body before any shard hears of it,
// then goes to the owner the body names, with the body intact, over h2c or
// HTTP/1.1; whatever the rules refuse reaches no shard.

// bodyShards records every request each shard received: its path and
// body.
type bodyShards struct {
	mu   sync.Mutex
	got  map[string][]string // shard name -> "path body"
	topo watch.Topology
}

func (b *bodyShards) handler(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.got[name] = append(b.got[name], r.URL.Path+" "+string(body))
		b.mu.Unlock()
		w.Header().Set("X-Trailer-Seen", r.Trailer.Get("X-Sum"))
		fmt.Fprintf(w, "%s %s", name, body)
	}
}

func (b *bodyShards) received() map[string][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string][]string{}
	for k, v := range b.got {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// startBodyShards starts two h2c shards and two HTTP/1.1 ones.
func startBodyShards(t *testing.T) *bodyShards {
	b := &bodyShards{got: map[string][]string{}}
	b.topo = startH2CHandlers(t, b.handler("h2-0"), b.handler("h2-1"))
	for i := 2; i < 4; i++ {
		name := fmt.Sprintf("h1-%d", i)
		b.topo.Shards = append(b.topo.Shards, watch.Shard{Ordinal: i, Name: name,
			Addr: startHTTPShard(t, b.handler(name)), Ready: true, Protocol: watch.HTTP1})
	}
	b.topo.Replicas = 4
	return b
}

func (b *bodyShards) names() []string {
	var n []string
	for _, s := range b.topo.Shards {
		n = append(n, s.Name)
	}
	return n
}

func TestRelayBodyRules(t *testing.T) {
	shards := startBodyShards(t)
	p := startProxy(t, Config{Keys: mustRules(t, "body:account.id,header:X-Shard-Key"), MaxBodyBytes: 64 << 10},
		ring.Config{Algorithm: ring.Jump}, &shards.topo)
	c := dialRelay(t, p.url, bigWindows)
	post := func(path string, extra ...string) []hpack.HeaderField {
		return reqHead("POST", path, "", append([]string{"content-type", "application/json"}, extra...)...)
	}

	t.Run("routed by the body, in pieces, to every kind of shard", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; len(seen) < 4 && i < 200; i++ {
			key := "acct-" + strconv.Itoa(i)
			body := `{"pad":"` + strings.Repeat("x", i*97%3000) + `","account":{"id":"` + key + `"}}`
			want := shards.names()[wantOwner(t, ring.Jump, shards.names(), key)]
			id := c.newStream()
			c.mustHeaders(t, id, post("/orders/"+strconv.Itoa(i)), false)
			for rest := []byte(body); len(rest) > 0; {
				n := min(len(rest), 1+i%700)
				c.mustData(t, id, rest[:n], n == len(rest))
				rest = rest[n:]
			}
			a := c.answer(t, id)
			if a.status() != "200" || a.get("x-shard") != want || string(a.body) != want+" "+body {
				t.Fatalf("key %s: answer %v %q, want 200 from %s echoing the body", key, a, a.body, want)
			}
			seen[want] = true
		}
		if len(seen) < 4 {
			t.Fatalf("only %v were owners", seen)
		}
	})

	t.Run("trailers end the body", func(t *testing.T) {
		for _, key := range []string{"with-trailers", "t2", "t3", "t4", "t5", "t6"} {
			want := shards.names()[wantOwner(t, ring.Jump, shards.names(), key)]
			id := c.newStream()
			c.mustHeaders(t, id, post("/t", "trailer", "x-sum"), false)
			c.mustData(t, id, []byte(`{"account":{"id":"`+key+`"}}`), false)
			c.mustHeaders(t, id, []hpack.HeaderField{{Name: "x-sum", Value: "7"}}, true)
			a := c.answer(t, id)
			if a.status() != "200" || a.get("x-shard") != want || a.get("x-trailer-seen") != "7" {
				t.Fatalf("answer %v: want 200 from %s that saw the trailer", a, want)
			}
		}
	})

	t.Run("no body: the next rule", func(t *testing.T) {
		a := c.get(t, "/h", "7")
		want := shards.names()[wantOwner(t, ring.Jump, shards.names(), "7")]
		if a.status() != "200" || a.get("x-shard") != want {
			t.Fatalf("answer %v: want 200 from %s by the header", a, want)
		}
	})

	before := shards.received()
	refusals := []struct {
		name, body, status, error string
	}{
		{"duplicate names", `{"account":{"id":"1","id":"2"}}`, "400", "ambiguous shard key"},
		{"not JSON", `{"account":`, "400", "request body is not valid JSON"},
		{"too deep", strings.Repeat("[", 100) + strings.Repeat("]", 100), "400", "request body nested too deep"},
		{"a fraction", `{"account":{"id":1.5}}`, "400", "invalid shard key"},
		{"past max-body-bytes", `{"pad":"` + strings.Repeat("y", 70<<10) + `"}`, "413", "request body too large"},
	}
	for _, tc := range refusals {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			id := c.newStream()
			c.mustHeaders(t, id, post("/refused"), false)
			for rest := []byte(tc.body); len(rest) > 0; {
				n := min(len(rest), 16384)
				if err := c.data(id, rest[:n], n == len(rest)); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			a := c.answer(t, id)
			if a.status() != tc.status || !strings.Contains(string(a.body), `"error":"`+tc.error+`"`) {
				t.Fatalf("answer %v %q: want %s %q", a, a.body, tc.status, tc.error)
			}
		})
	}
	t.Run("refused: declared past max-body-bytes, before any DATA", func(t *testing.T) {
		id := c.newStream()
		c.mustHeaders(t, id, post("/refused", "content-length", strconv.Itoa(1<<20)), false)
		a := c.answer(t, id)
		if a.status() != "413" {
			t.Fatalf("answer %v: want 413 at once", a)
		}
	})
	if after := shards.received(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused requests reached shards: before %v, after %v", before, after)
	}
	if a := c.get(t, "/after", "1"); a.status() != "200" {
		t.Fatalf("the connection after the refusals: %v", a)
	}
}

// A client that stops sending its body gets 408 after ClientBodyTimeout,
// and no shard heard of the request.
func TestRelayBodyTimeout(t *testing.T) {
	shards := startBodyShards(t)
	p := startProxy(t, Config{Keys: mustRules(t, "body:id"), ClientBodyTimeout: 300 * time.Millisecond},
		ring.Config{}, &shards.topo)
	c := dialRelay(t, p.url, bigWindows)
	id := c.newStream()
	start := time.Now()
	c.mustHeaders(t, id, reqHead("POST", "/slow", ""), false)
	c.mustData(t, id, []byte(`{"id":`), false)
	a := c.answer(t, id)
	if a.status() != "408" || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("answer %v after %v: want 408 after the body timeout", a, time.Since(start))
	}
	if got := shards.received(); len(got) != 0 {
		t.Fatalf("shards received %v", got)
	}
}

// Flow control while bodies are buffered: one stream of a connection at a
// time (its body turn) has its window opened as it buffers, so a body
// larger than the initial window arrives; the others wait at their initial
// window, and get theirs when the turn passes; the connection's window is
// given back at once, so no stream starves another.
func TestRelayBodyTurns(t *testing.T) {
	shards := startBodyShards(t)
	p := startProxy(t, Config{Keys: mustRules(t, "body:id"), MaxBodyBytes: 1 << 20}, ring.Config{}, &shards.topo)
	c := dialRelay(t, p.url, bigWindows)
	big := func(key string, pad int) []byte {
		return []byte(`{"id":"` + key + `","pad":"` + strings.Repeat("z", pad) + `"}`)
	}
	a, b := c.newStream(), c.newStream()
	c.mustHeaders(t, a, reqHead("POST", "/a", ""), false)
	c.mustHeaders(t, b, reqHead("POST", "/b", ""), false)
	// Together past the relay's connection window (1 MiB): the client
	// does not count it, so a window not given back would be its
	// FLOW_CONTROL_ERROR.
	bodyA, bodyB := big("A", 700<<10), big("B", 400<<10)
	sendUpTo := func(id uint32, body []byte, from, to int) {
		for i := from; i < to; i += 16384 {
			c.mustData(t, id, body[i:min(to, i+16384)], min(to, i+16384) == len(body))
		}
	}
	// B fills its initial window first; it is not B's turn.
	sendUpTo(b, bodyB, 0, 65535)
	// A, the turn, sends more than its initial window as the relay opens it.
	windowA := 65535
	for sent := 0; sent < len(bodyA); {
		for sent < windowA && sent < len(bodyA) {
			n := min(16384, len(bodyA)-sent, windowA-sent)
			c.mustData(t, a, bodyA[sent:sent+n], sent+n == len(bodyA))
			sent += n
		}
		if sent == len(bodyA) {
			break
		}
		for ev := c.next(t, a); ; ev = c.next(t, a) {
			if ev.typ != http2.FrameWindowUpdate {
				t.Fatalf("stream A at %d bytes: %v, want a WINDOW_UPDATE", sent, ev)
			}
			windowA += int(ev.incr)
			break
		}
		// The relay writes frames in order: a window for B sent before
		// this one for A would have been read (and held) by now.
		if held := c.held[b]; len(held) > 0 {
			t.Fatalf("stream B got %v during A's turn", held)
		}
	}
	ansA := c.answer(t, a)
	if ansA.status() != "200" || !bytes.HasSuffix(ansA.body, bodyA) {
		t.Fatalf("A: %v", ansA)
	}
	// Now B's turn: its window opens for what it buffered, and the rest
	// comes.
	windowB := 65535
	for sent := 65535; sent < len(bodyB); {
		for ev := c.next(t, b); ; ev = c.next(t, b) {
			if ev.typ == http2.FrameWindowUpdate {
				windowB += int(ev.incr)
				break
			}
			t.Fatalf("stream B at %d bytes: %v, want a WINDOW_UPDATE", sent, ev)
		}
		n := min(windowB, len(bodyB)) - sent
		sendUpTo(b, bodyB, sent, sent+n)
		sent += n
	}
	ansB := c.answer(t, b)
	if ansB.status() != "200" || !bytes.HasSuffix(ansB.body, bodyB) {
		t.Fatalf("B: %v", ansB)
	}
}
