package http1

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
	"github.com/shard-proxy/shard-proxy/internal/proxy/upstream"
	"golang.org/x/sys/unix"
)

// parker holds idle client connections, and requests whose shard thinks,
// without a goroutine each. A goroutine's stack is most of what an idle
// connection or a waiting request costs, so a connection that stays idle
// past hotIdle parks here, and so does a request whose shard has not
// begun its answer within shardHotWait: the socket waits in an epoll set
// of ours (a waiting request's shard socket for its answer, and its
// client's socket for a hang-up), and when it turns readable a new
// goroutine resumes serving it. One goroutine (run) waits on the epoll
// set itself, through Go's own netpoller, and sweeps parked connections
// past their idle deadline.
type parker struct {
	once sync.Once
	err  error
	epfd int
	ep   *os.File // the epoll fd, so the netpoller can wait on it

	mu sync.Mutex
	// byFD holds the parked connections by socket descriptor (a waiting
	// request under both of its sockets): a slice, as descriptors are
	// small numbers, where a map weighed some 50 bytes a connection.
	byFD     []*clientConn
	closed   bool // drained: nothing parks any more
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once // Shutdown may be called more than once
}

// parkedState is what the parker keeps of a connection it holds, in the
// connection itself (parking allocates nothing).
type parkedState struct {
	// fd is the socket watched for readability: the client's for an idle
	// connection, the shard's for a waiting request.
	fd int32
	// until is when the parker gives up (unix nanoseconds): it closes an
	// idle connection, and hands a waiting request back to a goroutine to
	// wait out the rest of its answer head's time.
	until int64
	// up is the shard connection of a waiting request (nil for an idle
	// connection); the client's socket (cc.fd) is then in the set too,
	// for a hang-up.
	up *upstream.Conn
}

// set puts cc under fd; pk.mu held.
func (pk *parker) set(fd int, cc *clientConn) {
	if fd >= len(pk.byFD) {
		pk.byFD = append(pk.byFD, make([]*clientConn, fd+1-len(pk.byFD)+len(pk.byFD)/2)...)
	}
	pk.byFD[fd] = cc
}

// park hands cc to the parker until its socket is readable or its idle
// deadline passes. It reports false when cc cannot be parked (not a plain
// socket, or the parker could not start); the caller then waits itself.
// A TLS connection parks on its socket: it comes here only after a read
// found no record buffered in it (see awaitRequest).
func (pk *parker) park(cc *clientConn, idleEnd time.Time) bool {
	if cc.fd < 0 {
		return false
	}
	pk.once.Do(pk.start)
	if pk.err != nil {
		return false
	}
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.closed {
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(cc.fd)}
	if epollCtl(pk.epfd, unix.EPOLL_CTL_ADD, cc.fd, &ev) != nil {
		return false
	}
	cc.parked = parkedState{fd: int32(cc.fd), until: idleEnd.UnixNano()}
	pk.set(cc.fd, cc)
	return true
}

// parkWaiting hands a request waiting for its shard's answer (cc's
// exchange, on uc) to the parker until the shard's socket turns readable,
// the client hangs up, or until; false when it cannot (a socket that is
// not plain, or the parker stopped), and the caller waits itself.
func (pk *parker) parkWaiting(cc *clientConn, uc *upstream.Conn, until time.Time) bool {
	if cc.fd < 0 || uc.FD < 0 {
		return false
	}
	pk.once.Do(pk.start)
	if pk.err != nil {
		return false
	}
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.closed {
		return false
	}
	shard := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uc.FD)}
	if epollCtl(pk.epfd, unix.EPOLL_CTL_ADD, uc.FD, &shard) != nil {
		return false
	}
	client := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(cc.fd)}
	if epollCtl(pk.epfd, unix.EPOLL_CTL_ADD, cc.fd, &client) != nil {
		_ = epollCtl(pk.epfd, unix.EPOLL_CTL_DEL, uc.FD, nil)
		return false
	}
	cc.parked = parkedState{fd: int32(uc.FD), until: until.UnixNano(), up: uc}
	pk.set(uc.FD, cc)
	pk.set(cc.fd, cc)
	return true
}

// unpark takes cc's sockets out of the set; pk.mu held.
func (pk *parker) unpark(cc *clientConn) {
	fd := int(cc.parked.fd)
	_ = epollCtl(pk.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	pk.byFD[fd] = nil
	if cc.parked.up != nil {
		_ = epollCtl(pk.epfd, unix.EPOLL_CTL_DEL, cc.fd, nil)
		pk.byFD[cc.fd] = nil
	}
}

// wake serves cc, just unparked, again on a new goroutine: a waiting
// request goes on with its exchange, an idle connection reads its next
// request.
func (cc *clientConn) wake() {
	p := cc.parked
	cc.parked = parkedState{}
	if p.up != nil {
		go cc.resumeExchange(p.up)
	} else {
		go cc.resume(time.Unix(0, p.until))
	}
}

// parkedAt reports the connection parked under fd by itself (not a
// waiting request's client socket, which is under it too); pk.mu held.
func (pk *parker) parkedAt(fd int) *clientConn {
	if cc := pk.byFD[fd]; cc != nil && int(cc.parked.fd) == fd {
		return cc
	}
	return nil
}

func (pk *parker) start() {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		pk.err = err
		return
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		pk.err = err
		return
	}
	pk.epfd = fd
	pk.ep = os.NewFile(uintptr(fd), "shard-proxy-parker")
	pk.stop, pk.done = make(chan struct{}), make(chan struct{})
	go pk.run()
}

// run waits for parked sockets to turn readable and resumes them; every
// 100 ms to a second (sweepEvery, or the epoll wait's own deadline) it
// closes those idle past their deadline.
func (pk *parker) run() {
	defer close(pk.done)
	raw, err := pk.ep.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 128)
	var nextSweep time.Time
	for {
		select {
		case <-pk.stop:
			return
		default:
		}
		_ = pk.ep.SetReadDeadline(time.Now().Add(time.Second))
		var n int
		rerr := raw.Read(func(uintptr) bool {
			n, err = unix.EpollWait(pk.epfd, events, 0)
			return n > 0 || err != nil && err != unix.EINTR
		})
		if rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			pk.resume(int(ev.Fd))
		}
		n = 0
		if now := time.Now(); !now.Before(nextSweep) {
			pk.expire(now)
			nextSweep = now.Add(sweepEvery)
		}
	}
}

// sweepEvery is how often at most the parker looks for parked connections
// past their deadline: the sweep visits every one, under the lock that
// parking takes, so it must not run on every wake-up (with thousands
// parked and wake-ups every few hundred microseconds, it did). Deadlines
// are seconds long, and a waiting request's leaves it a second more.
const sweepEvery = 100 * time.Millisecond

// resume takes fd's connection out of the set and serves it again.
func (pk *parker) resume(fd int) {
	pk.mu.Lock()
	var cc *clientConn
	if fd >= 0 && fd < len(pk.byFD) {
		cc = pk.byFD[fd]
	}
	if cc != nil {
		pk.unpark(cc)
	}
	pk.mu.Unlock()
	if cc != nil {
		cc.wake()
	}
}

// expire closes parked connections idle past their deadline, and gives
// waiting requests past theirs back to a goroutine.
func (pk *parker) expire(now time.Time) {
	var gone []*clientConn
	pk.mu.Lock()
	top := -1 // the highest descriptor still parked
	for fd := range pk.byFD {
		if cc := pk.parkedAt(fd); cc != nil && now.UnixNano() > cc.parked.until {
			pk.unpark(cc)
			gone = append(gone, cc)
		}
		if pk.byFD[fd] != nil {
			top = fd
		}
	}
	// After a burst of connections, give the slice's tail back: the sweep
	// visits all of it.
	if n := len(pk.byFD); n > 1024 && top+1 < n/4 {
		pk.byFD = append([]*clientConn(nil), pk.byFD[:n/2]...)
	}
	pk.mu.Unlock()
	for _, cc := range gone {
		if cc.parked.up != nil {
			cc.wake()
		} else {
			cc.parked = parkedState{}
			cc.closeParked()
		}
	}
}

// drain, at shutdown, resumes every parked connection that has bytes
// waiting (a request sent before the listener closed) and every waiting
// request, and closes the rest; then it stops the parker.
func (pk *parker) drain() {
	pk.once.Do(func() { pk.err = errors.New("parker closed") }) // never starts after this
	var all []*clientConn
	pk.mu.Lock()
	pk.closed = true
	for fd := range pk.byFD {
		if cc := pk.parkedAt(fd); cc != nil {
			pk.unpark(cc)
			all = append(all, cc)
		}
	}
	pk.mu.Unlock()
	for _, cc := range all {
		if cc.parked.up != nil {
			cc.wake()
			continue
		}
		cc.parked = parkedState{}
		if _, data, ok := sock.Peek(cc.fd); ok && data {
			go cc.resume(time.Now().Add(cc.s.cfg.ClientHeaderTimeout))
		} else {
			cc.closeParked()
		}
	}
	if pk.stop != nil {
		pk.stopOnce.Do(func() {
			close(pk.stop)
			_ = pk.ep.SetReadDeadline(time.Now()) // wakes run at once
			<-pk.done
			_ = pk.ep.Close()
		})
	}
}

var _ net.Conn = (*net.TCPConn)(nil)

// epollCtl is epoll_ctl(2) as a raw system call: it never blocks, and the
// parker's lock is held around it. Through the scheduler (unix.EpollCtl),
// the goroutine holding the lock could lose its P in the call and wait
// behind every runnable goroutine to get one back: with thousands of
// connections arriving at once, thousands queued on the lock meanwhile,
// each with its stack.
func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(ev)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// inspect calls fn for each parked idle connection, under the parker's
// lock, and returns how many there are.
func (pk *parker) inspect(fn func(cc *clientConn)) int {
	pk.once.Do(pk.start) // as the first park does; orders the read of pk.byFD after start
	pk.mu.Lock()
	defer pk.mu.Unlock()
	n := 0
	for fd := range pk.byFD {
		if cc := pk.parkedAt(fd); cc != nil && cc.parked.up == nil {
			fn(cc)
			n++
		}
	}
	return n
}
