package dns

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// Run must stop when its context ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions()...) }
