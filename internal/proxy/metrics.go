package proxy

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the data plane's Prometheus series. Labels are bounded: shard
// names, status codes and reasons, never keys.
type metrics struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	keyErrors        *prometheus.CounterVec
	shards           *prometheus.GaugeVec
	topologyUpdates  prometheus.Counter
	tunnels          *prometheus.GaugeVec
	handoffs         *prometheus.CounterVec
	ownerWaits       *prometheus.CounterVec
	ownerWaitSeconds prometheus.Histogram
	ringInfo         *prometheus.GaugeVec
}

// counterVec and gaugeVec declare a labelled series.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: counterVec("shard_proxy_requests_total",
			"Answers to requests that had an owning shard, by shard, status code (including the proxy's own 502, 503 and 504) and client protocol (http1, h2).",
			"shard", "code", "protocol"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shard_proxy_request_duration_seconds",
			Help:    "Time from receiving a request to having the shard's response, by owning shard.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"shard"}),
		keyErrors: counterVec("shard_proxy_key_errors_total",
			"Requests without a usable shard key, by reason (no_key, ambiguous, bad_body, body_too_large).",
			"reason"),
		shards: gaugeVec("shard_proxy_shards",
			"Shards in the current topology by state.",
			"state"),
		tunnels: gaugeVec("shard_proxy_tunnels_open",
			"Upgraded connections (WebSocket) open through the proxy, by shard.",
			"shard"),
		ringInfo: gaugeVec("shard_proxy_ring_info",
			"1 for the ring in force, labelled by algorithm and fingerprint: proxy replicas that disagree show different fingerprints.",
			"ring", "fingerprint"),
		handoffs: counterVec("shard_proxy_handoff_requests_total",
			"Requests whose key moved in a reshard, sent to the new owner with X-Shard-Previous, by owner.",
			"shard"),
		ownerWaits: counterVec("shard_proxy_owner_waits_total",
			"Requests held for a not-ready owner, by outcome: served, timeout, overflow, gone (the client left).",
			"outcome"),
		ownerWaitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shard_proxy_owner_wait_seconds",
			Help:    "How long requests were held for a not-ready owner.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30, 60},
		}),
		topologyUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shard_proxy_topology_updates_total",
			Help: "Topologies applied to the data plane.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.keyErrors, m.shards, m.topologyUpdates, m.tunnels,
			m.handoffs, m.ownerWaits, m.ownerWaitSeconds, m.ringInfo)
	}
	for _, o := range []string{waitServed, waitTimeout, waitOverflow, waitGone} {
		m.ownerWaits.WithLabelValues(o)
	}
	for _, r := range []string{"no_key", "ambiguous", "bad_body", "body_too_large"} {
		m.keyErrors.WithLabelValues(r)
	}
	return m
}

func (m *metrics) keyError(reason string) { m.keyErrors.WithLabelValues(reason).Inc() }

// keyErrorFor counts a request that got no owner, by why.
func (m *metrics) keyErrorFor(err error) {
	switch {
	case errors.Is(err, ErrNoKey):
		m.keyError("no_key")
	case errors.Is(err, ErrAmbiguousKey):
		m.keyError("ambiguous")
	case errors.Is(err, ErrBadBody):
		m.keyError("bad_body")
	case errors.Is(err, ErrBodyTooLarge):
		m.keyError("body_too_large")
	}
}

// shardMetrics caches one shard's series so the request path neither hashes
// label values nor takes the vectors' locks.
type shardMetrics struct {
	m        *metrics
	name     string
	duration prometheus.Observer
	tunnels  prometheus.Gauge
	handoff  prometheus.Counter
	mu       sync.Mutex                                 // serializes misses
	codes    atomic.Pointer[map[int]prometheus.Counter] // by protocol*1000+code; copy on write
}

func (m *metrics) forShard(name string) *shardMetrics {
	sm := &shardMetrics{m: m, name: name, duration: m.duration.WithLabelValues(name), tunnels: m.tunnels.WithLabelValues(name),
		handoff: m.handoffs.WithLabelValues(name)}
	sm.codes.Store(&map[int]prometheus.Counter{})
	return sm
}

// Client protocols, the protocol label of requests_total.
const (
	protoHTTP1 = iota
	protoH2
)

var protoNames = [...]string{protoHTTP1: "http1", protoH2: "h2"}

// count increments requests_total for code, for an HTTP/1.1 request.
func (sm *shardMetrics) count(code int) { sm.countAs(code, protoHTTP1) }

// countAs increments requests_total for code and the client's protocol.
func (sm *shardMetrics) countAs(code, proto int) {
	key := proto*1000 + code
	if c, ok := (*sm.codes.Load())[key]; ok {
		c.Inc()
		return
	}
	sm.mu.Lock()
	old := *sm.codes.Load()
	c, ok := old[key]
	if !ok {
		c = sm.m.requests.WithLabelValues(sm.name, codeString(code), protoNames[proto])
		next := make(map[int]prometheus.Counter, len(old)+1)
		for k, v := range old {
			next[k] = v
		}
		next[key] = c
		sm.codes.Store(&next)
	}
	sm.mu.Unlock()
	c.Inc()
}

// forget drops the series of a shard that left the ring.
func (m *metrics) forget(name string) {
	m.requests.DeletePartialMatch(prometheus.Labels{"shard": name})
	m.duration.DeleteLabelValues(name)
	m.tunnels.DeleteLabelValues(name)
	m.handoffs.DeleteLabelValues(name)
}

// codeString avoids strconv allocations for the status codes a proxy sees.
func codeString(code int) string {
	if code >= 100 && code < 600 {
		return codeStrings[code-100]
	}
	return strconv.Itoa(code)
}

var codeStrings = func() (s [500]string) {
	for i := range s {
		s[i] = strconv.Itoa(i + 100)
	}
	return s
}()
