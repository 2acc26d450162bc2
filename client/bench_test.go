package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/shard-proxy/shard-proxy/client"
	"github.com/shard-proxy/shard-proxy/ring"
)

// BenchmarkOwner is the cost of Client.Owner: a lookup in memory (jump
// ring, 64 shards), no network call, no allocation.
func BenchmarkOwner(b *testing.B) {
	r := startRig(b, rigConfig{ring: ring.Jump, n: 64})
	c, err := client.New(context.Background(), r.admin, client.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("account-%d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := c.Owner(keys[i&1023]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequest compares one keep-alive GET sent straight to its owner
// pod by the client with the same GET through the proxy's data port.
func BenchmarkRequest(b *testing.B) {
	r := startRig(b, rigConfig{ring: ring.Jump, n: 4})
	c, err := client.New(context.Background(), r.admin, client.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	run := func(b *testing.B, hc *http.Client, base string) {
		req, _ := http.NewRequest("GET", base+"/x", nil)
		req.Header.Set("X-Shard-Key", "42")
		b.ReportAllocs()
		for b.Loop() {
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, &http.Client{Transport: c}, "http://web") })
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	defer tr.CloseIdleConnections()
	b.Run("via-proxy", func(b *testing.B) { run(b, &http.Client{Transport: tr}, r.data) })
	sh, _ := c.Owner("42")
	b.Run("plain-transport-to-pod", func(b *testing.B) { run(b, &http.Client{Transport: tr}, "http://"+sh.Address) })
}
