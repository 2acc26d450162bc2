package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cmdIdle: -conns keep-alive connections, each made one small request and
// then left open: HTTP/1.1, or with -proto h2 h2c with prior knowledge
// (one stream, then idle; run.sh calls that test h2idle). The file-descriptor limit of one process is often lower
// than that, so -procs worker processes hold them, each from its own
// loopback source address (127.0.0.<src-base+i>). Before the connections
// and after they are all open (and -settle later) it reads the proxy's RSS
// and open descriptors; then it checks how many connections the proxy
// still holds open.
func cmdIdle(args []string) error {
	fs, c := commonFlags("idle", "idle")
	conns := fs.Int("conns", 20000, "idle connections")
	procs := fs.Int("procs", 4, "worker processes holding them")
	srcBase := fs.Int("src-base", 2, "worker i connects from 127.0.0.<src-base+i>")
	conc := fs.Int("concurrency", 64, "connections being opened at once, per worker")
	settle := fs.Duration("settle", 2*time.Second, "wait after the last connection before reading RSS")
	proto := fs.String("proto", "h1", "h1 (HTTP/1.1 keep-alive) or h2 (h2c with prior knowledge)")
	fs.Parse(args)
	if *proto != "h1" && *proto != "h2" {
		return fmt.Errorf("bad -proto %q: want h1 or h2", *proto)
	}
	r := newResult(c)
	mon := startMonitor(c)
	before := mon.now()
	fdsBefore := countFDs(c.pid)

	t0 := time.Now()
	ws, err := startIdleWorkers(c, *proto, *conns, *procs, *srcBase, *conc)
	if err != nil {
		return err
	}
	defer ws.stop()
	ready, firstErr := ws.readAll("READY ")
	openSecs := time.Since(t0).Seconds()
	time.Sleep(*settle)
	after := mon.now()
	fdsAfter := countFDs(c.pid)
	ws.send("check")
	alive, _ := ws.readAll("ALIVE ")

	held := ready["ok"]
	r.set("proto", *proto)
	r.set("conns", *conns)
	r.set("held", held)
	r.set("failed", ready["fail"])
	r.set("err", firstErr)
	r.set("open_s", openSecs)
	r.set("still_open", alive["n"])
	r.set("rss_before_kib", before.rss)
	if after.alive {
		r.set("rss_after_kib", after.rss)
		if held > 0 && before.rss > 0 {
			r.set("per_conn_bytes", float64(after.rss-before.rss)*1024/float64(held))
		}
	}
	r.set("fds_before", fdsBefore)
	r.set("fds_after", fdsAfter)
	mon.finish(r)
	r.print()
	return nil
}

// idleWorkers are the idle-worker processes of cmdIdle. Each answers a
// line per command: "READY ok=N fail=N err=..." once its connections are
// open, "ALIVE n=N" after "check".
type idleWorkers []*idleWorker

type idleWorker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startIdleWorkers starts procs workers sharing conns connections of
// proto, worker i connecting from 127.0.0.<srcBase+i>.
func startIdleWorkers(c *common, proto string, conns, procs, srcBase, conc int) (idleWorkers, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var ws idleWorkers
	for i := 0; i < procs; i++ {
		n := conns / procs
		if i < conns%procs {
			n++
		}
		cmd := exec.Command(self, "idle-worker", "-proto", proto, "-addr", c.addr, "-conns", strconv.Itoa(n),
			"-src", fmt.Sprintf("127.0.0.%d", srcBase+i), "-concurrency", strconv.Itoa(conc),
			"-seed", strconv.FormatUint(c.seed+uint64(i)*1000003, 10), "-timeout", c.timeout.String())
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			ws.stop()
			return nil, err
		}
		ws = append(ws, &idleWorker{cmd, stdin, bufio.NewScanner(stdout)})
	}
	return ws, nil
}

// stop ends the workers (end of their input) and waits for them.
func (ws idleWorkers) stop() {
	for _, w := range ws {
		w.stdin.Close()
	}
	for _, w := range ws {
		w.cmd.Wait()
	}
}

// send gives every worker the command cmd.
func (ws idleWorkers) send(cmd string) {
	for _, w := range ws {
		io.WriteString(w.stdin, cmd+"\n")
	}
}

// readAll reads one answer from every worker, the line starting with prefix,
// and sums its numbers by name; firstErr is the first err= of them, or says
// that a worker has gone.
func (ws idleWorkers) readAll(prefix string) (sums map[string]int, firstErr string) {
	sums = map[string]int{}
	for _, w := range ws {
		if !w.out.Scan() {
			if firstErr == "" {
				firstErr = "a worker exited"
			}
			continue
		}
		line := w.out.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, kv := range strings.Fields(strings.TrimPrefix(line, prefix)) {
			k, v, _ := strings.Cut(kv, "=")
			if k == "err" {
				if s, err := strconv.Unquote(v); err == nil && s != "" && firstErr == "" {
					firstErr = s
				}
				continue
			}
			n, _ := strconv.Atoi(v)
			sums[k] += n
		}
	}
	return sums, firstErr
}

func cmdIdleWorker(args []string) error {
	fs, c := commonFlags("idle-worker", "idle")
	conns := fs.Int("conns", 5000, "connections to open and hold")
	src := fs.String("src", "", "source address")
	conc := fs.Int("concurrency", 64, "connections being opened at once")
	proto := fs.String("proto", "h1", "h1 or h2")
	fs.Parse(args)
	var srcIP net.IP
	if *src != "" {
		if srcIP = net.ParseIP(*src); srcIP == nil {
			return fmt.Errorf("bad -src %q", *src)
		}
	}
	held := make([]idleConn, *conns)
	var st statuses
	var fail atomic.Int64
	sem := make(chan struct{}, max(*conc, 1))
	var wg sync.WaitGroup
	for i := range held {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			cn, err := openIdle(c, srcIP, key(c.seed, i), *proto == "h2")
			if err == nil {
				held[i] = cn
			} else {
				fail.Add(1)
				st.add(0, err)
			}
		}()
	}
	wg.Wait()
	ok := 0
	for _, cn := range held {
		if cn != nil {
			ok++
		}
	}
	fmt.Printf("READY ok=%d fail=%d err=%q\n", ok, fail.Load(), short(st.first))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "check" {
			n := 0
			for _, cn := range held {
				if cn != nil && cn.open() {
					n++
				}
			}
			fmt.Printf("ALIVE n=%d\n", n)
		}
	}
	for _, cn := range held {
		if cn != nil {
			cn.Close()
		}
	}
	return nil
}

// stillOpen peeks at the socket without blocking: nothing to read means the
// proxy still holds the connection; end of stream or an error means it
// closed it.
func stillOpen(cn *conn) bool {
	if cn.br.Buffered() > 0 {
		return true
	}
	tc, ok := cn.Conn.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = n > 0 || errors.Is(err, syscall.EAGAIN)
		return true
	})
	return open
}
