package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/table"
)

// Feed gives the routing table in force with its generation, and a
// channel closed when a newer one is applied (nil before the first): what
// /shards?watch=1 streams. The *proxy.Proxy is one; a Config.Tables that
// is one too gets the watch.
type Feed interface {
	Current() (t *table.Table, generation uint64, next <-chan struct{})
}

// DefaultWatchHeartbeat is how often a watch stream carries a comment
// line when nothing changed, so that idle-connection reapers in between
// (load balancers, NAT) keep it open and a client sees that it is alive.
const DefaultWatchHeartbeat = 15 * time.Second

// watchWriteTimeout bounds one write to a watcher: a client that stops
// reading is dropped rather than holding its handler forever.
const watchWriteTimeout = 30 * time.Second

// watchRetryMS is the reconnection delay a watch stream asks of browsers'
// EventSource (the "retry" field).
const watchRetryMS = 1000

// feed returns the Feed of the table source, or nil.
func (s *Server) feed() Feed {
	f, _ := s.cfg.Tables.(Feed)
	return f
}

// current is the table in force and its generation (0 when the source
// keeps none).
func (s *Server) current() (*table.Table, uint64) {
	if f := s.feed(); f != nil {
		t, gen, _ := f.Current()
		return t, gen
	}
	return s.cfg.Tables.Table(), 0
}

// isWatch tells a /shards request that asks for the stream (watch=1 or
// watch=true).
func isWatch(r *http.Request) bool {
	v := r.URL.Query().Get("watch")
	return v == "1" || v == "true"
}

// watch serves /shards?watch=1: a text/event-stream with, at once, an
// event holding the current /shards document and then one per applied
// topology, each "event: topology", "id: <generation>", "data: <JSON>",
// with a comment line every heartbeat. A watcher waits on the snapshot's
// next channel and, when woken, takes the newest snapshot: Apply never
// waits for a watcher, and a slow one skips to the latest topology
// instead of queuing the ones in between.
func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	f := s.feed()
	if f == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "this admin plane has no topology watch"})
		return
	}
	t, gen, next := f.Current()
	if t == nil {
		answer.For(answer.ErrNoShards, "").Write(w)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx in front: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	send := s.streamWriter(w)
	if send(fmt.Sprintf("retry: %d\n", watchRetryMS)+topologyEvent(t, gen)) != nil {
		return
	}
	beat := time.NewTicker(s.heartbeat)
	defer beat.Stop()
	for {
		var msg string
		select {
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		case <-next:
			t, gen, next = f.Current()
			msg = topologyEvent(t, gen)
		case <-beat.C:
			msg = ": heartbeat\n\n"
		}
		if send(msg) != nil {
			return
		}
	}
}

// streamWriter returns a function that writes one message and flushes it,
// within watchWriteTimeout.
func (s *Server) streamWriter(w http.ResponseWriter) func(string) error {
	rc := http.NewResponseController(w)
	return func(msg string) error {
		_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
		if _, err := io.WriteString(w, msg); err != nil {
			return err
		}
		return rc.Flush()
	}
}

// topologyEvent is the server-sent event of table t, generation gen: its
// /shards document on one data line.
func topologyEvent(t *table.Table, gen uint64) string {
	a := describe(t)
	a.Generation = gen
	doc, _ := json.Marshal(a)
	return fmt.Sprintf("event: topology\nid: %d\ndata: %s\n\n", gen, doc)
}
