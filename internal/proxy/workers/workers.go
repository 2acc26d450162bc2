// Package workers runs calls on goroutines that are reused: one that
// finished a call waits for the next. A goroutine's stack grows to what its
// calls need, a copy each time it doubles; a new goroutine per call pays
// that again every time, a reused one once.
package workers

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pool runs Run(v) for each v given to Go on a waiting worker, or a new
// one. A sweep every Idle retires the workers that waited since the last
// sweep; the sweeper stops when no worker is left, so an unused Pool has
// no goroutine. The zero value of T is never given to Go (it retires a
// worker). Set Run and Idle before the first Go; safe for concurrent use
// after.
type Pool[T comparable] struct {
	Run  func(T)
	Idle time.Duration

	once sync.Once
	next chan T       // to a waiting worker; the zero value retires it
	idle atomic.Int64 // workers waiting

	mu       sync.Mutex
	count    int  // workers alive
	sweeping bool // the sweeper runs
}

// Go runs p.Run(v) on a waiting worker, or a new one.
func (p *Pool[T]) Go(v T) {
	p.once.Do(func() { p.next = make(chan T) })
	select {
	case p.next <- v:
		return
	default:
	}
	p.mu.Lock()
	p.count++
	if !p.sweeping {
		p.sweeping = true
		go p.sweep()
	}
	p.mu.Unlock()
	go p.work(v)
}

// Workers tells how many workers are alive, running or waiting.
func (p *Pool[T]) Workers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

// work runs v, then what it is handed, until retired.
func (p *Pool[T]) work(v T) {
	var zero T
	for v != zero {
		p.Run(v)
		v = zero // not kept while waiting
		p.idle.Add(1)
		v = <-p.next
		p.idle.Add(-1)
	}
	p.mu.Lock()
	p.count--
	p.mu.Unlock()
}

// sweep retires, every Idle, as many waiting workers as waited the whole
// time since the last sweep, and stops when none is left.
func (p *Pool[T]) sweep() {
	t := time.NewTicker(p.Idle)
	defer t.Stop()
	var zero T
	var before int64
	for range t.C {
		for n := min(before, p.idle.Load()); n > 0; n-- {
			select {
			case p.next <- zero:
			default:
				n = 1 // none waits now
			}
		}
		before = p.idle.Load()
		p.mu.Lock()
		if p.count == 0 {
			p.sweeping = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}
