package http1

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
	"golang.org/x/sys/unix"
)

// parker holds idle client connections without a goroutine each. A
// goroutine's stack is most of what an idle connection costs, so a
// connection that stays idle past hotIdle parks here: its socket waits in
// an epoll set of ours, and when it turns readable a new goroutine resumes
// serving it. One goroutine (run) waits on the epoll set itself, through
// Go's own netpoller, and sweeps parked connections past their idle
// deadline.
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
		addErr = unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || addErr != nil {
		return false
	}
	pk.parked[pc.fd] = pc
	return true
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
		pk.expire(time.Now())
	}
}

// resume takes fd out of the set and serves its connection again.
func (pk *parker) resume(fd int) {
	pk.mu.Lock()
	pc := pk.parked[fd]
	delete(pk.parked, fd)
	if pc != nil {
		_ = unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	pk.mu.Unlock()
	if pc != nil {
		go pc.cc.resume(pc.idleEnd)
	}
}

// expire closes parked connections idle past their deadline.
func (pk *parker) expire(now time.Time) {
	var gone []*parkedConn
	pk.mu.Lock()
	for fd, pc := range pk.parked {
		if now.After(pc.idleEnd) {
			_ = unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			delete(pk.parked, fd)
			gone = append(gone, pc)
		}
	}
	pk.mu.Unlock()
	for _, pc := range gone {
		pc.cc.closeParked()
	}
}

// drain, at shutdown, resumes every parked connection that has bytes
// waiting (a request sent before the listener closed) and closes the rest;
// then it stops the parker.
func (pk *parker) drain() {
	pk.once.Do(func() { pk.err = errors.New("parker closed") }) // never starts after this
	pk.mu.Lock()
	all := pk.parked
	pk.parked = nil
	for fd := range all {
		_ = unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	pk.mu.Unlock()
	for _, pc := range all {
		if _, data, ok := sock.Peek(pc.cc.fd); ok && data {
			go pc.cc.resume(time.Now().Add(pc.cc.s.cfg.ClientHeaderTimeout))
		} else {
			pc.cc.closeParked()
		}
	}
	if pk.stop != nil {
		pk.stopOnce.Do(func() {
			close(pk.stop)
			<-pk.done
			_ = pk.ep.Close()
		})
	}
}

var _ net.Conn = (*net.TCPConn)(nil)

// inspect calls fn for each parked connection, under the parker's lock, and
// returns how many there are.
func (pk *parker) inspect(fn func(cc *clientConn)) int {
	pk.once.Do(pk.start) // as the first park does; orders the read of pk.parked after start
	pk.mu.Lock()
	defer pk.mu.Unlock()
	for _, pc := range pk.parked {
		fn(pc.cc)
	}
	return len(pk.parked)
}
