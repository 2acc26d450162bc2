package kubeenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// netnsPrefix names every namespace this package creates, followed by the
// /24 index and the creating process id, so a later run can remove the
// leftovers of a run that was killed before its cleanups.
const netnsPrefix = "shard-proxy-"

// Netns is a network namespace that stands in for the pod network. The host
// reaches it over a veth pair: the host side has 10.244.N.1/24 and pod IPs
// 10.244.N.2-254 live on the namespace side. EndpointSlices reject loopback
// addresses, so pods need addresses like these; traffic to them never leaves
// the machine. Safe for concurrent use.
type Netns struct {
	// Name is the namespace's name for `ip netns` (ip netns exec Name ...).
	Name string
	// Prefix is the /24 of pod IPs; Gateway is the host's address in it.
	Prefix  netip.Prefix
	Gateway netip.Addr

	hostLink, podLink string

	mu   sync.Mutex
	used map[netip.Addr]bool
	next int // last octet of the next address to try
}

// NewNetns creates a network namespace with a veth pair to the host and
// removes it when the test ends. It skips the test when not root or when
// `ip netns` is unavailable.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	skipUnlessNetns(t)
	removeStaleNetns()
	n, err := createNetns()
	if err != nil {
		t.Fatalf("kubeenv: creating pod network namespace: %v", err)
	}
	t.Cleanup(n.remove)
	return n
}

func skipUnlessNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kubeenv: needs root to create network namespaces for pod IPs; run as root (make test)")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("kubeenv: `ip netns` is unavailable (%v: %s); install iproute2 (bash test/kube/provision.sh)", err, bytes.TrimSpace(out))
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func createNetns() (*Netns, error) {
	// Start the search at a per-process offset so that parallel test
	// binaries rarely contend; creating the host link is the atomic claim.
	start := os.Getpid() % 250
	for i := range 250 {
		idx := 1 + (start+i)%250
		prefix := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(idx), 0}), 24)
		if inUse(prefix) {
			continue
		}
		n := &Netns{
			Name:     fmt.Sprintf("%s%d-%d", netnsPrefix, idx, os.Getpid()),
			Prefix:   prefix,
			Gateway:  netip.AddrFrom4([4]byte{10, 244, byte(idx), 1}),
			hostLink: fmt.Sprintf("spk%dh", idx),
			podLink:  fmt.Sprintf("spk%dp", idx),
			used:     map[netip.Addr]bool{},
			next:     2,
		}
		if ip("link", "add", n.hostLink, "type", "veth", "peer", "name", n.podLink) != nil {
			continue // taken by another run, or a leftover
		}
		if err := n.setup(); err != nil {
			n.remove()
			return nil, err
		}
		return n, nil
	}
	return nil, errors.New("no free /24 in 10.244.0.0/16")
}

func (n *Netns) setup() error {
	steps := [][]string{
		{"netns", "add", n.Name},
		{"link", "set", n.podLink, "netns", n.Name},
		{"addr", "add", netip.PrefixFrom(n.Gateway, 24).String(), "dev", n.hostLink},
		{"link", "set", n.hostLink, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "link", "set", n.podLink, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// inUse reports whether any local address or route overlaps prefix.
func inUse(prefix netip.Prefix) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if addr, ok := netip.AddrFromSlice(ipn.IP); ok && prefix.Contains(addr.Unmap()) {
				return true
			}
		}
	}
	out, err := exec.Command("ip", "-4", "-o", "route", "show", "match", prefix.String()).Output()
	if err != nil {
		return true
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.HasPrefix(line, "default") {
			return true
		}
	}
	out, err = exec.Command("ip", "-4", "-o", "route", "show", "root", prefix.String()).Output()
	return err != nil || strings.TrimSpace(string(out)) != ""
}

// removeStaleNetns deletes namespaces left by test processes that no longer
// exist. Deleting a namespace also deletes the veth pair inside it.
func removeStaleNetns() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), netnsPrefix)
		if !ok {
			continue
		}
		_, pidStr, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			_ = ip("netns", "del", e.Name())
		}
	}
}

func (n *Netns) remove() {
	_ = ip("netns", "del", n.Name)
	// The host end normally goes with the namespace; delete it in case the
	// peer never moved in.
	_ = ip("link", "del", n.hostLink)
}

// AllocIP returns a pod IP that was not handed out before by this Netns
// (addresses are reused only after the /24 wraps around) and adds it to the
// namespace side of the veth.
func (n *Netns) AllocIP() (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for range 253 {
		a := n.Prefix.Addr().As4()
		a[3] = byte(n.next)
		n.next++
		if n.next > 254 {
			n.next = 2
		}
		addr := netip.AddrFrom4(a)
		if n.used[addr] {
			continue
		}
		if err := ip("-n", n.Name, "addr", "add", netip.PrefixFrom(addr, 24).String(), "dev", n.podLink); err != nil {
			return netip.Addr{}, err
		}
		n.used[addr] = true
		return addr, nil
	}
	return netip.Addr{}, fmt.Errorf("all addresses in %s are in use", n.Prefix)
}

// ReleaseIP removes addr from the namespace.
func (n *Netns) ReleaseIP(addr netip.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.used[addr] {
		return nil
	}
	delete(n.used, addr)
	return ip("-n", n.Name, "addr", "del", netip.PrefixFrom(addr, 24).String(), "dev", n.podLink)
}

// Listen opens a listening socket inside the namespace, e.g. on
// "10.244.3.7:8080". A socket keeps the namespace it was created in, so the
// listener serves pod traffic although the test process stays on the host.
func (n *Netns) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := n.do(func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// do runs fn on an OS thread switched into the namespace. The thread is
// locked for the duration; if it cannot switch back it is never unlocked,
// so the runtime discards it instead of reusing a thread in the wrong
// namespace.
func (n *Netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering netns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leaving netns %s: %w", n.Name, err)
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
