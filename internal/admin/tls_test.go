package admin

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/certs"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// TestBroadcastTLSShards: broadcast reaches TLS shards with the data
// plane's checks: web-0 (its own certificate) answers; web-1's address is
// held by an impostor with web-2's valid certificate, which is reported
// as "shard identity mismatch" and gets no request. /shards shows each
// shard's tls state and the name it is verified for.
func TestBroadcastTLSShards(t *testing.T) {
	ca := testutil.NewCA(t, "shard CA")
	name := func(i int) string { return fmt.Sprintf("web-%d.web.ns.svc.cluster.local", i) }
	var impostorHits atomic.Int32
	serve := func(certName string, hits *atomic.Int32) string {
		leaf := ca.Issue(t, time.Time{}, certName)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits != nil {
				hits.Add(1)
			}
			fmt.Fprint(w, certName)
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	topo := watch.Topology{Replicas: 2, Shards: []watch.Shard{
		{Ordinal: 0, Name: "web-0", Addr: serve(name(0), nil), Ready: true, TLS: true, TLSName: name(0)},
		{Ordinal: 1, Name: "web-1", Addr: serve(name(2), &impostorHits), Ready: true, TLS: true, TLSName: name(1)},
	}}
	vol := testutil.NewSecretDir(t)
	vol.Write(map[string][]byte{"ca.crt": ca.PEM})
	pool, err := certs.LoadPool("shard-ca", vol.Path("ca.crt"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := startAdmin(t, Config{ShardTLS: certs.NewShardClient(pool, nil, false)}, &topo)
	r := call(t, "POST", a.url+"/broadcast/flush", nil, nil)
	rep := testutil.Decode[BroadcastReport](t, r)
	if r.Status != 502 || rep.Succeeded != 1 || rep.Shards[0].Status != 200 || rep.Shards[0].Body != name(0) {
		t.Fatalf("broadcast: %d %+v, want web-0 served and web-1 failed", r.Status, rep)
	}
	if got := rep.Shards[1]; got.Error != "shard identity mismatch" || got.Status != 0 {
		t.Errorf("web-1: %+v, want error shard identity mismatch", got)
	}
	if n := impostorHits.Load(); n != 0 {
		t.Errorf("the impostor got %d requests", n)
	}
	shards := testutil.Decode[ShardsAnswer](t, call(t, "GET", a.url+"/shards", nil, nil))
	for i, s := range shards.Shards {
		if s.TLS != "verified" || s.TLSName != name(i) {
			t.Errorf("/shards entry %d: tls %q, tls_name %q; want verified for %s", i, s.TLS, s.TLSName, name(i))
		}
	}
}
