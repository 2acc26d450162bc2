package kubeenv

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// Pod identifies one running pod for a handler.
type Pod struct {
	Namespace, Name string
	// Service is the pod's spec.subdomain: a StatefulSet's serviceName.
	Service string
	IP      netip.Addr
	Port    int32
}

// PodResponse is the JSON body the default pod handler answers with.
type PodResponse struct {
	Pod       string            `json:"pod"`
	Namespace string            `json:"namespace"`
	IP        string            `json:"ip"`
	Port      int32             `json:"port"`
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	Query     string            `json:"query,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Body      string            `json:"body,omitempty"`
	// TLS describes the request's TLS connection (nil: cleartext).
	TLS *TLSInfo `json:"tls,omitempty"`
}

// Request headers that make the default handler misbehave on purpose.
const (
	// StatusHeader sets the response status code, e.g. "503".
	StatusHeader = "X-Kubeenv-Status"
	// DelayHeader delays the response, e.g. "2s" (until the client gives up).
	DelayHeader = "X-Kubeenv-Delay"
)

// DefaultHandler answers every request with a PodResponse describing the pod
// and the request (body cut at 64 KiB). StatusHeader and DelayHeader let a
// test ask for an error status or a slow answer.
func DefaultHandler(p Pod) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if d, err := time.ParseDuration(r.Header.Get(DelayHeader)); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		resp := PodResponse{
			Pod: p.Name, Namespace: p.Namespace, IP: p.IP.String(), Port: p.Port,
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Headers: map[string]string{}, Body: string(body), TLS: tlsInfo(r.TLS),
		}
		for k, v := range r.Header {
			resp.Headers[k] = v[0]
		}
		status := http.StatusOK
		if s, err := strconv.Atoi(r.Header.Get(StatusHeader)); err == nil && s >= 200 && s <= 599 {
			status = s
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Pod", p.Name)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(resp)
	})
}
