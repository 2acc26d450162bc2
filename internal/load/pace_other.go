//go:build !linux

package load

import "time"

// newTicker returns the portable ticker; its ticks are not aligned to
// first.
func newTicker(first time.Time, tick time.Duration) (ticker, error) {
	return newSleepTicker(tick), nil
}
