package kubeenv

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// ClusterDomain is the cluster DNS domain of the pods' stable names.
const ClusterDomain = "cluster.local"

// StableName is the DNS name a StatefulSet pod keeps across restarts,
// {pod}.{service}.{namespace}.svc.cluster.local, which WithTLS puts in
// its certificate.
func StableName(pod, service, namespace string) string {
	return pod + "." + service + "." + namespace + ".svc." + ClusterDomain
}

// WithTLS makes pods serve TLS (1.2 and 1.3, ALPN h2 and http/1.1) instead
// of cleartext, each with a certificate ca issues when the pod starts
// (ECDSA P-256) for its stable name: the pod's spec.subdomain, which a
// StatefulSet sets to its serviceName, is the service (see StableName).
// DefaultHandler then reports in PodResponse.TLS what the handshake was.
func WithTLS(ca *testutil.CA) KubeletOption {
	return func(k *Kubelet) { k.ca = ca }
}

// PodCert returns the certificate the running pod serves with WithTLS.
func (k *Kubelet) PodCert(pod string) (*testutil.Leaf, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.certs[pod]
	return l, ok
}

// podTLS returns the server config of a pod: a certificate for its stable
// name, issued for this pod (a replacement gets a new one).
func (k *Kubelet) podTLS(pod *corev1.Pod) (*tls.Config, error) {
	name := StableName(pod.Name, pod.Spec.Subdomain, pod.Namespace)
	leaf, err := k.ca.Sign(&x509.Certificate{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}})
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.certs[pod.Name] = leaf
	k.mu.Unlock()
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12}, nil
}

// TLSInfo is what DefaultHandler saw of a request's TLS connection.
type TLSInfo struct {
	Version    string `json:"version"`     // "TLS 1.3"
	ServerName string `json:"server_name"` // the SNI the client sent
	ALPN       string `json:"alpn"`        // the protocol negotiated
}

func tlsInfo(cs *tls.ConnectionState) *TLSInfo {
	if cs == nil {
		return nil
	}
	return &TLSInfo{Version: tls.VersionName(cs.Version), ServerName: cs.ServerName, ALPN: cs.NegotiatedProtocol}
}

// Impostor is a TLS server that took over a pod's address (Impersonate):
// it holds another pod's valid certificate, answers HTTP/1.1 requests as
// that pod would, and counts what reaches it.
type Impostor struct {
	// Pod is the pod whose address it took; As, the pod whose certificate
	// it holds; Addr, the address, host:port.
	Pod, As, Addr string

	ln    net.Listener
	cfg   *tls.Config
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	stats struct {
		accepted, handshakes, failed, requests, bytes atomic.Int64
	}
	lastErr atomic.Pointer[string]
}

// ImpostorStats counts what reached an Impostor.
type ImpostorStats struct {
	Accepted   int64 // TCP connections accepted
	Handshakes int64 // TLS handshakes that completed
	Failed     int64 // TLS handshakes that failed (the client refused the certificate)
	Requests   int64 // HTTP requests read
	Bytes      int64 // application bytes read after a completed handshake
	// LastError is the error of the last failed handshake, as the server
	// saw it ("remote error: tls: bad certificate").
	LastError string
}

// Stats returns what reached the impostor so far.
func (im *Impostor) Stats() ImpostorStats {
	s := ImpostorStats{
		Accepted: im.stats.accepted.Load(), Handshakes: im.stats.handshakes.Load(), Failed: im.stats.failed.Load(),
		Requests: im.stats.requests.Load(), Bytes: im.stats.bytes.Load(),
	}
	if e := im.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// Impersonate replaces the servers of the running pod with impostors, on
// the same IP and ports, that hold the certificate pod as was issued (both
// pods must run under WithTLS): what a stale EndpointSlice address looks
// like when another pod now has it. The pod keeps its IP and its reported
// status; its old servers close at once, with their connections. The
// impostors stop with the pod.
func (k *Kubelet) Impersonate(pod, as string) ([]*Impostor, error) {
	k.mu.Lock()
	rp, leaf := k.running[pod], k.certs[as]
	k.mu.Unlock()
	switch {
	case k.ca == nil:
		return nil, errors.New("kubeenv: Impersonate needs pods serving TLS (WithTLS)")
	case rp == nil:
		return nil, fmt.Errorf("kubeenv: pod %s does not run", pod)
	case leaf == nil:
		return nil, fmt.Errorf("kubeenv: pod %s has no certificate", as)
	}
	k.mu.Lock()
	servers, addrs := rp.servers, rp.addrs
	rp.servers, rp.addrs = nil, nil
	k.mu.Unlock()
	for _, s := range servers {
		_ = s.Close()
	}
	rp.wg.Wait()
	var out []*Impostor
	for _, addr := range addrs {
		ln, err := k.net.Listen("tcp", addr)
		if err != nil {
			return out, fmt.Errorf("kubeenv: impostor for %s on %s: %w", pod, addr, err)
		}
		im := &Impostor{Pod: pod, As: as, Addr: addr, ln: ln, conns: map[net.Conn]struct{}{},
			cfg: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"http/1.1"}}}
		im.wg.Go(im.accept)
		out = append(out, im)
		k.mu.Lock()
		rp.impostors = append(rp.impostors, im)
		k.mu.Unlock()
	}
	return out, nil
}

func (im *Impostor) accept() {
	for {
		c, err := im.ln.Accept()
		if err != nil {
			return
		}
		im.stats.accepted.Add(1)
		im.mu.Lock()
		im.conns[c] = struct{}{}
		im.mu.Unlock()
		im.wg.Go(func() {
			im.serve(c)
			im.mu.Lock()
			delete(im.conns, c)
			im.mu.Unlock()
		})
	}
}

// serve runs the handshake on c and, if it completes, answers HTTP/1.1
// requests as pod As, counting the bytes and requests it reads.
func (im *Impostor) serve(c net.Conn) {
	defer c.Close()
	tc := tls.Server(c, im.cfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		im.stats.failed.Add(1)
		msg := err.Error()
		im.lastErr.Store(&msg)
		return
	}
	im.stats.handshakes.Add(1)
	_ = tc.SetDeadline(time.Time{})
	br := bufio.NewReader(countReader{tc, &im.stats.bytes})
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		im.stats.requests.Add(1)
		_, _ = io.Copy(io.Discard, req.Body)
		body := `{"pod":"` + im.As + `","impostor":true}` + "\n"
		resp := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pod: " + im.As +
			"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		if _, err := io.WriteString(tc, resp); err != nil {
			return
		}
	}
}

// Close stops the impostor and closes its connections.
func (im *Impostor) Close() {
	_ = im.ln.Close()
	im.mu.Lock()
	for c := range im.conns {
		_ = c.Close()
	}
	im.mu.Unlock()
	im.wg.Wait()
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
