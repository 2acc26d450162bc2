package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/ring"
)

// The end of an answer may be written together with the wait for the next
// request (clientConn.deferEnd). A client that sends its next request while
// the previous one is still with the shard (pipelining) has that request
// answered in order and at once, not after the idle connection's hot wait
// (200 ms): the request arrived before the wait began, so the wait alone
// would not see it; it lasts pendingWait, then the connection reads.
func TestPipelinedRequestWhileShardThinks(t *testing.T) {
	received := make(chan string, 64)
	release := make(chan struct{}, 64)
	shard := startRawShard(t, eachRequest(func(req rawMsg) (string, bool) {
		received <- req.Target()
		<-release
		return okResponse("ok " + req.Target()), false
	}))
	p := startProxy(t, Config{}, ring.Config{}, rawTopology(shard.addr))
	const pairs = 20
	start := time.Now()
	for i := 0; i < pairs; i++ {
		rc := dialRaw(t, p) // each connection finds out once that its client pipelines
		first, second := fmt.Sprintf("/%d/a", i), fmt.Sprintf("/%d/b", i)
		rc.send("GET " + first + " HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
		if got := <-received; got != first {
			t.Fatalf("the shard got %q, want %q", got, first)
		}
		// The next request reaches the proxy while the first is with the
		// shard, then the shard answers both.
		rc.send("GET " + second + " HTTP/1.1\r\nHost: h\r\nX-Shard-Key: 1\r\n\r\n")
		release <- struct{}{}
		if a := rc.response("GET"); string(a.Payload) != "ok "+first {
			t.Fatalf("first answer %q", a.Raw())
		}
		if got := <-received; got != second {
			t.Fatalf("the shard got %q, want %q", got, second)
		}
		release <- struct{}{}
		if a := rc.response("GET"); string(a.Payload) != "ok "+second {
			t.Fatalf("second answer %q", a.Raw())
		}
	}
	// A stall of the hot wait per pair would take 20 x 200 ms.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("%d pipelined pairs took %v: the next request waited for the idle timeout", pairs, took)
	}
}
