package certs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the TLS metrics (prefix shard_proxy_): handshakes per
// listener and outcome, each certificate's expiry, refused reloads. A nil
// *Metrics counts nothing.
type Metrics struct {
	handshakes   *prometheus.CounterVec
	expiries     *prometheus.GaugeVec
	reloadErrors *prometheus.CounterVec
}

// Handshake outcomes, the outcome label of tls_handshakes_total.
const (
	OutcomeOK        = "ok"
	OutcomeFailed    = "failed"
	OutcomeTimeout   = "timeout"
	OutcomePlaintext = "plaintext" // a plaintext request on a TLS port
)

// NewMetrics registers the TLS metrics with reg (nil: nowhere).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shard_proxy_tls_handshakes_total",
			Help: "TLS handshakes with clients, by listener (data, admin) and outcome (ok, failed, timeout, plaintext).",
		}, []string{"listener", "outcome"}),
		expiries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shard_proxy_tls_cert_expiry_timestamp_seconds",
			Help: "When each certificate in use expires (for a CA bundle, its first certificate to expire), Unix seconds.",
		}, []string{"cert"}),
		reloadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shard_proxy_tls_reload_errors_total",
			Help: "Changed certificate, key or CA files that were refused (did not parse, key did not match); the material in force stayed.",
		}, []string{"cert"}),
	}
	if reg != nil {
		reg.MustRegister(m.handshakes, m.expiries, m.reloadErrors)
	}
	return m
}

// Handshake counts one handshake on listener with outcome.
func (m *Metrics) Handshake(listener, outcome string) {
	if m != nil {
		m.handshakes.WithLabelValues(listener, outcome).Inc()
	}
}

// expiry sets cert's expiry; its reload errors start at 0 then, so that
// the first refused reload shows as an increase.
func (m *Metrics) expiry(cert string, notAfter time.Time) {
	if m != nil {
		m.expiries.WithLabelValues(cert).Set(float64(notAfter.Unix()))
		m.reloadErrors.WithLabelValues(cert)
	}
}

func (m *Metrics) reloadError(cert string) {
	if m != nil {
		m.reloadErrors.WithLabelValues(cert).Inc()
	}
}
