package route

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/table"
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
	tlsErrors        *prometheus.CounterVec
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
			"Requests without a usable shard key, by reason (no_key, ambiguous, invalid, bad_body, body_too_large, too_deep).",
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
		tlsErrors: counterVec("shard_proxy_shard_tls_errors_total",
			"Failed TLS handshakes with shards, by shard and reason: identity (a certificate for another name: another pod at the address), unknown_authority, expired, handshake.",
			"shard", "reason"),
		topologyUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shard_proxy_topology_updates_total",
			Help: "Topologies applied to the data plane.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.keyErrors, m.shards, m.topologyUpdates, m.tunnels,
			m.handoffs, m.ownerWaits, m.ownerWaitSeconds, m.ringInfo, m.tlsErrors)
	}
	for _, o := range []string{waitServed, waitTimeout, waitOverflow, waitGone} {
		m.ownerWaits.WithLabelValues(o)
	}
	for _, r := range []string{"no_key", "ambiguous", "invalid", "bad_body", "body_too_large", "too_deep"} {
		m.keyErrors.WithLabelValues(r)
	}
	return m
}

// topologyApplied updates the series that describe the topology in force.
func (m *metrics) topologyApplied(t *table.Table) {
	m.topologyUpdates.Inc()
	m.ringInfo.Reset()
	m.ringInfo.WithLabelValues(string(t.Config.Algorithm), t.Fingerprint).Set(1)
	ready := t.Ready()
	m.shards.WithLabelValues("ready").Set(float64(ready))
	m.shards.WithLabelValues("not_ready").Set(float64(len(t.Shards) - ready))
}

func (m *metrics) keyError(reason string) { m.keyErrors.WithLabelValues(reason).Inc() }

// keyErrorFor counts a request that got no owner, by why.
func (m *metrics) keyErrorFor(err error) {
	switch {
	case errors.Is(err, answer.ErrNoKey):
		m.keyError("no_key")
	case errors.Is(err, answer.ErrAmbiguousKey):
		m.keyError("ambiguous")
	case errors.Is(err, answer.ErrInvalidKey):
		m.keyError("invalid")
	case errors.Is(err, answer.ErrBadBody):
		m.keyError("bad_body")
	case errors.Is(err, answer.ErrBodyTooDeep):
		m.keyError("too_deep")
	case errors.Is(err, answer.ErrBodyTooLarge):
		m.keyError("body_too_large")
	}
}

// ShardMetrics caches one shard's series so the request path neither
// hashes label values nor takes the vectors' locks.
type ShardMetrics struct {
	// Tunnels counts the shard's open upgraded connections (WebSocket).
	Tunnels  prometheus.Gauge
	m        *metrics
	name     string
	duration prometheus.Observer
	handoff  prometheus.Counter
	mu       sync.Mutex                                 // serializes misses
	codes    atomic.Pointer[map[int]prometheus.Counter] // by protocol*1000+code; copy on write
}

func (m *metrics) forShard(name string) *ShardMetrics {
	sm := &ShardMetrics{m: m, name: name, duration: m.duration.WithLabelValues(name), Tunnels: m.tunnels.WithLabelValues(name),
		handoff: m.handoffs.WithLabelValues(name)}
	sm.codes.Store(&map[int]prometheus.Counter{})
	return sm
}

// tlsError counts a failed handshake with the shard.
func (sm *ShardMetrics) tlsError(reason string) {
	sm.m.tlsErrors.WithLabelValues(sm.name, reason).Inc()
}

// count increments requests_total for code and the client's protocol.
func (sm *ShardMetrics) count(code int, proto Proto) {
	key := int(proto)*1000 + code
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
	m.tlsErrors.DeletePartialMatch(prometheus.Labels{"shard": name})
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
