package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// startH2CShards starts plain HTTP/2 (h2c, prior knowledge only) servers
// that answer with their name, the protocol they were spoken to in, the
// body they got, and a trailer.
func startH2CShards(t *testing.T, n int) watch.Topology {
	t.Helper()
	topo := watch.Topology{Replicas: n}
	for i := range n {
		name := fmt.Sprintf("h2-%d", i)
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Trailer", "X-Done")
			w.Header().Set("X-Proto", r.Proto)
			fmt.Fprintf(w, "%s %s %s %s", name, r.Method, r.URL.RequestURI(), body)
			w.Header().Set("X-Done", "yes")
		})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: name, Addr: ln.Addr().String(), Ready: true, Protocol: watch.H2C})
	}
	return topo
}

// h2cClient speaks HTTP/2 with prior knowledge.
func h2cClient(t *testing.T) *http.Client {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, TLSClientConfig: &tls.Config{}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestH2CFrontAndBridge: plain HTTP/2 clients and HTTP/1.1 clients both
// reach h2c shards and HTTP/1.1 shards, each request routed by its key,
// with bodies and trailers carried across.
func TestH2CFrontAndBridge(t *testing.T) {
	topo := startH2CShards(t, 2)
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"h2c client", h2cClient(t)}, {"http/1.1 client", &http.Client{Timeout: 10 * time.Second}}} {
		t.Run(c.name, func(t *testing.T) {
			for k := range 4 {
				req, _ := http.NewRequest("POST", p.url+"/a/b%2Fc?q=1", strings.NewReader("payload"))
				req.Header.Set("X-Shard-Key", fmt.Sprint(k))
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := fmt.Sprintf("h2-%d POST /a/b%%2Fc?q=1 payload", k%2)
				if string(body) != want || resp.Header.Get("X-Shard") != fmt.Sprintf("h2-%d", k%2) {
					t.Fatalf("key %d: %q (X-Shard %q), want %q", k, body, resp.Header.Get("X-Shard"), want)
				}
				if resp.Header.Get("X-Proto") != "HTTP/2.0" || resp.Trailer.Get("X-Done") != "yes" {
					t.Errorf("key %d: shard spoke %q, trailer %q; want HTTP/2.0 and the trailer", k, resp.Header.Get("X-Proto"), resp.Trailer.Get("X-Done"))
				}
			}
		})
	}
}

// TestH2CFrontErrors: a plain HTTP/2 request gets the same JSON errors as
// HTTP/1.1.
func TestH2CFrontErrors(t *testing.T) {
	topo := startH2CShards(t, 1)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	resp, err := h2cClient(t).Get(p.url + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.ProtoMajor != 2 || !strings.Contains(string(body), `"error":"no shard key"`) {
		t.Fatalf("%s %d %s, want an HTTP/2 400 with the JSON error", resp.Proto, resp.StatusCode, body)
	}
}
