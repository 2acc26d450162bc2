// Package admin is the admin plane: health, readiness, metrics, the shard
// table, key lookups, reshard plans, broadcast and the history of
// broadcasts with their retries, served with net/http.
package admin

import (
	"cmp"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Config configures the admin plane.
type Config struct {
	// Tables is where the routing table in force is read from: the
	// *proxy.Proxy that routes with it. Required.
	Tables Tables
	// Gatherer serves /metrics; nil means an empty registry.
	Gatherer prometheus.Gatherer
	// Registerer receives the admin plane's own metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Auth, if set, guards every endpoint but /healthz, /readyz and /metrics.
	Auth *TokenAuth
	// HotKeys answers /hotkeys: the *proxy.Proxy; nil means none are kept.
	HotKeys HotKeySource
	// Changes answers /topology: the *proxy.Proxy; nil means none are kept.
	Changes ChangeSource
	// Broadcast configures /broadcast/; see BroadcastConfig for defaults.
	Broadcast BroadcastConfig
	// Logger receives one line per broadcast; nil means slog.Default().
	Logger *slog.Logger
	// WatchHeartbeat is how often an idle /shards?watch=1 stream carries a
	// comment line; 0 means DefaultWatchHeartbeat.
	WatchHeartbeat time.Duration
}

// Tables gives the routing table in force, or nil before the first one.
// When it is a Feed too (the *proxy.Proxy is), /shards carries the
// table's generation and /shards?watch=1 streams every change.
type Tables interface {
	Table() *table.Table
}

var _ Tables = (*proxy.Proxy)(nil)

// Server is the admin plane's http.Handler. Safe for concurrent use.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	draining atomic.Bool
	bcast    *broadcaster
	planner  *planner

	heartbeat time.Duration // of watch streams
	stop      chan struct{} // closed by Drain and Close: watch streams end
	stopOnce  sync.Once
}

// New returns the admin handler.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	gatherer := cfg.Gatherer
	if gatherer == nil {
		gatherer = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), planner: newPlanner(),
		heartbeat: cmp.Or(max(cfg.WatchHeartbeat, 0), DefaultWatchHeartbeat), stop: make(chan struct{})}
	s.bcast = newBroadcaster(cfg.Broadcast, cfg.Registerer, cfg.Logger)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	s.mux.Handle("GET /shards", s.guard(http.HandlerFunc(s.shards)))
	s.mux.Handle("GET /locate", s.guard(http.HandlerFunc(s.locate)))
	s.mux.Handle("POST /explain", s.guard(http.HandlerFunc(s.explain)))
	s.mux.Handle("GET /plan", s.guard(http.HandlerFunc(s.plan)))
	s.mux.Handle("GET /hotkeys", s.guard(http.HandlerFunc(s.hotKeys)))
	s.mux.Handle("GET /topology", s.guard(http.HandlerFunc(s.topology)))
	s.mux.Handle("/broadcast/", s.guard(http.HandlerFunc(s.broadcast)))
	s.mux.Handle("GET /broadcasts", s.guard(http.HandlerFunc(s.broadcasts)))
	s.mux.Handle("GET /broadcasts/{id}", s.guard(http.HandlerFunc(s.broadcastByID)))
	s.mux.Handle("POST /broadcasts/{id}/retry", s.guard(http.HandlerFunc(s.retryBroadcast)))
	s.mux.HandleFunc("GET /{$}", statusPage)
	s.mux.HandleFunc("GET /status/{file}", statusFile)
	s.mux.HandleFunc("/", notFound)
	return s
}

// notFound answers what no endpoint took: 405 for an endpoint asked with
// the wrong method, else 404.
func notFound(w http.ResponseWriter, r *http.Request) {
	allow, use := "GET, HEAD", "GET"
	switch p := r.URL.Path; {
	case p == "/healthz", p == "/readyz", p == "/metrics", p == "/shards", p == "/locate", p == "/plan", p == "/broadcasts",
		p == "/hotkeys", p == "/topology":
	case isBroadcastPath(p, ""):
	case isBroadcastPath(p, "/retry"), p == "/explain":
		allow, use = "POST", "POST"
	default:
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no such admin endpoint: " + r.URL.Path})
		return
	}
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: r.Method + " is not allowed on " + r.URL.Path + ": use " + use})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Drain makes /readyz answer 503, telling load balancers to stop sending
// traffic while the process shuts down, and ends the watch streams, whose
// clients then reconnect to another replica.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.stopOnce.Do(func() { close(s.stop) })
}

// Close ends the watch streams and releases idle connections of the
// broadcast client.
func (s *Server) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.bcast.close()
}

func (s *Server) guard(h http.Handler) http.Handler {
	if s.cfg.Auth == nil {
		return h
	}
	return s.cfg.Auth.Wrap(h)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case s.draining.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
	case s.cfg.Tables.Table() == nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "no topology yet"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// ShardInfo is one entry of /shards.
type ShardInfo struct {
	Ordinal int    `json:"ordinal"`
	Name    string `json:"name"`
	Address string `json:"address"`
	Ready   bool   `json:"ready"`
	// Protocol is how the proxy speaks to the shard: http1 or h2c.
	Protocol string `json:"protocol"`
	// OwnsKeys is false for a shard above a pinned N: it takes broadcasts
	// but no keys.
	OwnsKeys bool `json:"owns_keys"`
}

// ShardsAnswer is the body of /shards.
type ShardsAnswer struct {
	Ring        string `json:"ring"`
	Partitions  int    `json:"partitions,omitempty"`
	Replicas    int    `json:"replicas"`
	Ready       int    `json:"ready"`
	Fingerprint string `json:"fingerprint"`
	// Generation counts the topologies this process applied (1 for the
	// first); it orders the events of /shards?watch=1. Replicas compare
	// Fingerprint, never Generation.
	Generation uint64 `json:"generation,omitempty"`
	// HandoffFrom is the previous N while data moves (0: none).
	HandoffFrom int         `json:"handoff_from,omitempty"`
	Shards      []ShardInfo `json:"shards"`
}

func (s *Server) shards(w http.ResponseWriter, r *http.Request) {
	if isWatch(r) {
		s.watch(w, r)
		return
	}
	t, gen := s.current()
	if t == nil {
		answer.For(answer.ErrNoShards, "").Write(w)
		return
	}
	a := describe(t)
	a.Generation = gen
	writeJSON(w, http.StatusOK, a)
}

func describe(t *table.Table) ShardsAnswer {
	a := ShardsAnswer{
		Ring:        string(t.Config.Algorithm),
		Replicas:    t.Replicas(),
		Ready:       t.Ready(),
		Fingerprint: t.Fingerprint,
		Shards:      make([]ShardInfo, 0, len(t.Shards)),
	}
	a.Partitions = t.Config.Partitions // non-zero only for consistent
	if t.Handoff != nil {
		a.HandoffFrom = t.Handoff.Ring.Len()
	}
	for i, sh := range t.Shards {
		a.Shards = append(a.Shards, ShardInfo{Ordinal: sh.Ordinal, Name: sh.Name, Address: sh.Addr, Ready: sh.Ready,
			Protocol: string(cmp.Or(sh.Protocol, watch.HTTP1)), OwnsKeys: t.OwnsKeys(i)})
	}
	return a
}

// LocateAnswer is the body of /locate.
type LocateAnswer struct {
	Key     string `json:"key"`
	Ordinal int    `json:"ordinal"`
	Shard   string `json:"shard"`
	Address string `json:"address"`
	Ready   bool   `json:"ready"`
	// Planned is the owner under ?replicas=M shards (see /plan).
	Planned *PlannedOwner `json:"planned,omitempty"`
}

func (s *Server) locate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("key") || q.Get("key") == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "missing key: use /locate?key=K"})
		return
	}
	m, planning := 0, q.Has("replicas")
	if planning {
		var ok bool
		if m, ok = parseReplicas(q.Get("replicas")); !ok {
			writeJSON(w, http.StatusBadRequest, errBadReplicas)
			return
		}
	}
	key := []byte(q.Get("key"))
	t := s.cfg.Tables.Table()
	var sh *watch.Shard
	ok := t != nil
	if ok {
		sh, _, ok = t.Owner(key)
	}
	if !ok {
		answer.For(answer.ErrNoShards, "").Write(w)
		return
	}
	a := LocateAnswer{Key: string(key), Ordinal: sh.Ordinal, Shard: sh.Name, Address: sh.Addr, Ready: sh.Ready}
	if planning {
		if a.Planned, ok = s.planned(w, r, t, m, key); !ok {
			return
		}
	}
	writeJSON(w, http.StatusOK, a)
}

// isBroadcastPath reports whether p is /broadcasts/<id><suffix>.
func isBroadcastPath(p, suffix string) bool {
	id, ok := strings.CutPrefix(p, "/broadcasts/")
	id, found := strings.CutSuffix(id, suffix)
	return ok && found && id != "" && !strings.Contains(id, "/")
}

// errorBody is the JSON body of admin errors.
type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
