package load

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timerfdTicker wakes the pacer every tick from a periodic timerfd read
// through Go's network poller. A time.Timer cannot pace a fixed rate:
// when the process is idle the runtime sleeps in whole milliseconds, so a
// request due in 200µs would leave up to a millisecond late, and that
// lateness (the generator's, not the server's) would count as latency.
// A timerfd's expiry wakes the poller within tens of microseconds.
type timerfdTicker struct {
	f *os.File
}

// newTicker returns a ticker whose first tick is at first and the next
// ones every tick after it. The first expiry is set on the absolute
// monotonic clock: a schedule whose ticks all came a fixed delay after
// the requests' due times (the time it took to arm the timer) would make
// every request that much late.
func newTicker(first time.Time, tick time.Duration) (ticker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newSleepTicker(tick), nil
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("reading the monotonic clock: %w", err)
	}
	at := unix.NsecToTimespec(now.Nano() + int64(max(time.Until(first), 0)))
	spec := unix.ItimerSpec{Interval: unix.NsecToTimespec(int64(tick)), Value: at}
	if err := unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("arming the pacing timer: %w", err)
	}
	return &timerfdTicker{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// Wait blocks until the next tick, or returns an error once Close was
// called.
func (t *timerfdTicker) Wait() error {
	var b [8]byte
	_, err := t.f.Read(b[:])
	return err
}

func (t *timerfdTicker) Close() { t.f.Close() }
