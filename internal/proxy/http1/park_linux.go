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

	mu       sync.Mutex
	parked   map[int]*parkedConn // by socket fd
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once // Shutdown may be called more than once
}

type parkedConn struct {
	cc      *clientConn
	fd      int
	idleEnd time.Time
	// up is the shard connection of a waiting request (nil for an idle
	// connection): fd is its socket, clientFD the client's, both in the
	// set, and idleEnd when it goes back to a goroutine to wait out the
	// rest of its answer head's time.
	up       *upstream.Conn
	clientFD int
}

// park hands cc to the parker until its socket is readable or its idle
// deadline passes. It reports false when cc cannot be parked (not a plain
// socket, or the parker could not start); the caller then waits itself.
func (pk *parker) park(cc *clientConn, idleEnd time.Time) bool {
	pk.once.Do(pk.start)
	if pk.err != nil {
		return false
	}
	// A TLS connection parks on its socket: it comes here only after a
	// read found no record buffered in it (see awaitRequest).
	sc, ok := sock.Raw(cc.nc).(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	pc := &parkedConn{cc: cc, idleEnd: idleEnd}
	var addErr error
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.parked == nil {
		return false // shut down
	}
	err = raw.Control(func(fd uintptr) {
		pc.fd = int(fd)
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
		addErr = epollCtl(pk.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || addErr != nil {
		return false
	}
	pk.parked[pc.fd] = pc
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
	pc := &parkedConn{cc: cc, fd: uc.FD, clientFD: cc.fd, idleEnd: until, up: uc}
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.parked == nil {
		return false // shut down
	}
	shard := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(pc.fd)}
	if epollCtl(pk.epfd, unix.EPOLL_CTL_ADD, pc.fd, &shard) != nil {
		return false
	}
	client := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(pc.clientFD)}
	if epollCtl(pk.epfd, unix.EPOLL_CTL_ADD, pc.clientFD, &client) != nil {
		_ = epollCtl(pk.epfd, unix.EPOLL_CTL_DEL, pc.fd, nil)
		return false
	}
	pk.parked[pc.fd] = pc
	pk.parked[pc.clientFD] = pc
	return true
}

// unpark takes pc's sockets out of the set; pk.mu held.
func (pk *parker) unpark(pc *parkedConn) {
	_ = epollCtl(pk.epfd, unix.EPOLL_CTL_DEL, pc.fd, nil)
	delete(pk.parked, pc.fd)
	if pc.up != nil {
		_ = epollCtl(pk.epfd, unix.EPOLL_CTL_DEL, pc.clientFD, nil)
		delete(pk.parked, pc.clientFD)
	}
}

// wake serves pc again on a new goroutine: a waiting request goes on with
// its exchange, an idle connection reads its next request.
func (pc *parkedConn) wake(idleEnd time.Time) {
	if pc.up != nil {
		go pc.cc.resumeExchange(pc.up)
	} else {
		go pc.cc.resume(idleEnd)
	}
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
	pk.parked = map[int]*parkedConn{}
	pk.stop, pk.done = make(chan struct{}), make(chan struct{})
	go pk.run()
}

// run waits for parked sockets to turn readable and resumes them; every
// second it closes those idle past their deadline.
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
	pc := pk.parked[fd]
	if pc != nil {
		pk.unpark(pc)
	}
	pk.mu.Unlock()
	if pc != nil {
		pc.wake(pc.idleEnd)
	}
}

// expire closes parked connections idle past their deadline, and gives
// waiting requests past theirs back to a goroutine.
func (pk *parker) expire(now time.Time) {
	var gone []*parkedConn
	pk.mu.Lock()
	for _, pc := range pk.parked {
		if now.After(pc.idleEnd) {
			pk.unpark(pc)
			gone = append(gone, pc)
		}
	}
	pk.mu.Unlock()
	for _, pc := range gone {
		if pc.up != nil {
			pc.wake(pc.idleEnd)
		} else {
			pc.cc.closeParked()
		}
	}
}

// drain, at shutdown, resumes every parked connection that has bytes
// waiting (a request sent before the listener closed) and every waiting
// request, and closes the rest; then it stops the parker.
func (pk *parker) drain() {
	pk.once.Do(func() { pk.err = errors.New("parker closed") }) // never starts after this
	pk.mu.Lock()
	all := pk.parked
	pk.parked = nil
	for fd := range all {
		_ = epollCtl(pk.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	pk.mu.Unlock()
	for fd, pc := range all {
		if pc.up != nil {
			if fd == pc.fd { // once, not for the client's socket too
				pc.wake(pc.idleEnd)
			}
			continue
		}
		if _, data, ok := sock.Peek(pc.cc.fd); ok && data {
			go pc.cc.resume(time.Now().Add(pc.cc.s.cfg.ClientHeaderTimeout))
		} else {
			pc.cc.closeParked()
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
	pk.once.Do(pk.start) // as the first park does; orders the read of pk.parked after start
	pk.mu.Lock()
	defer pk.mu.Unlock()
	n := 0
	for _, pc := range pk.parked {
		if pc.up == nil {
			fn(pc.cc)
			n++
		}
	}
	return n
}
