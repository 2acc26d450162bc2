package route

import (
	"os"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
)

// A connect that times out means the shard is unreachable (502), not slow.
func TestDialTimeoutIsUnreachable(t *testing.T) {
	_, err := dialer(time.Nanosecond)("127.0.0.1:9") // the deadline passes before any packet is sent
	if err == nil {
		t.Fatal("dial succeeded within a nanosecond")
	}
	if got := answer.For(answer.FromShard(err), "web-0").Status; got != 502 {
		t.Errorf("status %d for a dial timeout, want 502", got)
	}
	if got := answer.For(answer.FromShard(os.ErrDeadlineExceeded), "web-0").Status; got != 504 {
		t.Errorf("status %d for a response timeout, want 504", got)
	}
}
