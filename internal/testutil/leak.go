package testutil

import (
	"slices"

	"go.uber.org/goleak"
)

// ignored lists the goroutines that a dependency starts and gives no way to
// stop, which every leak check must therefore ignore. It is empty: nothing
// the module links leaves such a goroutine behind, and a new entry needs
// that reason.
var ignored []goleak.Option

// LeakOptions returns the options of every goleak check in the module's
// tests: the goroutines all of them ignore, then more. Everything else a
// test started must be gone when it ends.
func LeakOptions(more ...goleak.Option) []goleak.Option {
	return append(slices.Clip(ignored), more...)
}
