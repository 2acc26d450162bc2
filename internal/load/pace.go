package load

import (
	"errors"
	"time"
)

// A ticker wakes the pacer of an open-loop run about every tick. The
// pacer computes which requests are due from the clock, so a late or
// missed tick delays requests (which the report shows) but loses none.
type ticker interface {
	// Wait blocks until the next tick; it returns an error once Close
	// was called.
	Wait() error
	// Close ends the ticker; a Wait in progress returns. Safe to call
	// from another goroutine.
	Close()
}

var errTickerClosed = errors.New("ticker closed")

// sleepTicker is the portable ticker, on time.Ticker.
type sleepTicker struct {
	t    *time.Ticker
	done chan struct{}
}

func newSleepTicker(tick time.Duration) *sleepTicker {
	return &sleepTicker{t: time.NewTicker(tick), done: make(chan struct{})}
}

func (s *sleepTicker) Wait() error {
	select {
	case <-s.t.C:
		return nil
	case <-s.done:
		return errTickerClosed
	}
}

func (s *sleepTicker) Close() {
	s.t.Stop()
	close(s.done)
}
