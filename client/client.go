// Package client routes requests to the shards of a sharded StatefulSet
// without the proxy hop, and always agrees with shard-proxy on the owner of
// every key: it follows the proxy's topology (GET /shards?watch=1 on its
// admin port) and places keys with the same ring code (package ring) and
// the same key rules (--key syntax).
//
// A Client answers Owner(key) from memory, without a network call, and is
// an http.RoundTripper that sends each request straight to its owner pod
// with the proxy's promises: never another shard; an owner that is not
// ready is waited for up to Config.OwnerWait, then ErrShardNotReady; the
// proxy's header policy (hop-by-hop fields dropped, X-Forwarded-*, a
// client's own X-Shard-Previous dropped and the handoff's set, X-Shard on
// the answer). It follows a topology change within a second and keeps the
// last topology while the admin port is unreachable.
//
//	c, err := client.New(ctx, "http://shard-proxy:9090", client.Config{Keys: "path:/accounts/{key}"})
//	if err != nil { ... }
//	hc := &http.Client{Transport: c}
//	resp, err := hc.Get("http://web/accounts/42") // to the pod that owns 42
//
// The package shard-proxy/client/shardgrpc does the same for grpc-go.
package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/table"
)

// Defaults of Config.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultMaxBodyBytes = 4 << 20
)

// Config configures a Client. The zero value routes by the X-Shard-Key
// header, waits for no owner, and gives New ten seconds.
type Config struct {
	// Token is the admin bearer token (what --admin-token-file holds); ""
	// sends none.
	Token string
	// TLS configures an https admin URL: the CA that signed the admin
	// certificate (RootCAs) and, for mTLS, the client certificate. Nil
	// means the system's roots.
	TLS *tls.Config
	// Keys are the key rules, spelled as shard-proxy's --key
	// ("header:X-Tenant,path:/accounts/{key}"); "" means header:X-Shard-Key.
	// A request whose context carries WithKey skips them.
	Keys string
	// MaxBodyBytes caps what a body rule buffers of a request body, as
	// --max-body-bytes; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int
	// OwnerWait holds a request whose owner is not ready up to this long
	// for a topology in which it is, as --owner-wait; 0 fails at once with
	// ErrShardNotReady.
	OwnerWait time.Duration
	// Timeout bounds New: the first topology must arrive within it; 0
	// means DefaultTimeout.
	Timeout time.Duration
	// Logger receives a line when the watch is lost or comes back; nil
	// means slog.Default().
	Logger *slog.Logger
}

// Client follows one shard-proxy's topology and routes by it. It is safe
// for concurrent use. Its goroutines end when the context given to New
// ends; the Client then keeps answering from the last topology.
type Client struct {
	cfg     Config
	admin   *url.URL
	http    *http.Client // to the admin port
	rules   *keys.Extractor
	log     *slog.Logger
	state   atomic.Pointer[state]
	pods    podTransports
	cancel  context.CancelFunc
	done    chan struct{} // closed when the watch loop has ended
	first   chan struct{} // closed when the first topology or a fatal error arrived
	once    sync.Once
	fatal   error // set before first is closed, when New must fail
	lastErr atomic.Pointer[errBox]
}

type errBox struct{ err error }

// state is one topology as the client routes with it: immutable.
type state struct {
	table *table.Table // nil when err is set
	topo  Topology
	err   error         // routing refused (an unknown ring): Owner returns it
	tls   map[int]bool  // ordinals of shards the proxy speaks TLS to
	next  chan struct{} // closed when a newer state replaces this one
}

// New connects to the admin port at adminURL (http:// or https://), waits
// for the first topology, and follows the watch until ctx ends. It returns
// an error within Config.Timeout when no topology came (ErrNoTopology, with
// the cause), at once for a refusal that retrying cannot fix (401:
// ErrUnauthorized; an unknown ring: ErrUnknownRing), and for a bad URL or
// bad key rules.
func New(ctx context.Context, adminURL string, cfg Config) (*Client, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: admin URL %q: want http://host:port or https://host:port", adminURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	rules, err := keys.ParseRules(cfg.Keys)
	if err != nil {
		return nil, fmt.Errorf("client: key rules: %w", err)
	}
	cfg.Timeout = cmp.Or(max(cfg.Timeout, 0), DefaultTimeout)
	cfg.MaxBodyBytes = cmp.Or(max(cfg.MaxBodyBytes, 0), DefaultMaxBodyBytes)
	cfg.OwnerWait = max(cfg.OwnerWait, 0)
	c := &Client{cfg: cfg, admin: u, rules: keys.NewExtractor(rules, 0), log: cmp.Or(cfg.Logger, slog.Default()),
		done: make(chan struct{}), first: make(chan struct{}), pods: newPodTransports()}
	c.http = &http.Client{Transport: adminTransport(cfg)}
	runCtx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	go c.run(runCtx)
	timer := time.NewTimer(cfg.Timeout)
	defer timer.Stop()
	select {
	case <-c.first:
		if c.fatal == nil {
			return c, nil
		}
		err = c.fatal
	case <-timer.C:
		cause := c.WatchErr()
		if cause == nil {
			cause = errors.New("the admin port did not answer")
		}
		err = fmt.Errorf("%w from %s within %v: %w", ErrNoTopology, u.Redacted(), cfg.Timeout, cause)
	case <-ctx.Done():
		err = fmt.Errorf("%w from %s: %w", ErrNoTopology, u.Redacted(), ctx.Err())
	}
	c.Close()
	return nil, err
}

// Close stops the watch and closes idle connections, as the end of the
// context given to New does, and returns when the goroutines have ended.
// The Client keeps answering from the last topology.
func (c *Client) Close() {
	c.cancel()
	<-c.done
}

// Done is closed when the Client's goroutines have ended (the context
// given to New ended).
func (c *Client) Done() <-chan struct{} { return c.done }

// WatchErr is why the watch is not connected now (the admin port
// unreachable, a refusal, a topology the client cannot route by), or nil
// while it is. The Client goes on with the last topology meanwhile.
func (c *Client) WatchErr() error {
	if b := c.lastErr.Load(); b != nil {
		return b.err
	}
	return nil
}

// Topology returns the topology in force (a copy the caller may keep).
func (c *Client) Topology() Topology {
	st := c.state.Load()
	t := st.topo
	t.Shards = append([]Shard(nil), t.Shards...)
	return t
}

// Changed returns a channel closed when a newer topology replaces the one
// in force: wait on it, then call Topology or Owner again.
func (c *Client) Changed() <-chan struct{} { return c.state.Load().next }

// Owner returns the shard that owns key under the topology in force, from
// memory: no network call, no lock, no allocation. The shard may be not
// ready (Shard.Ready); the RoundTripper waits for it, Owner does not. It
// fails with ErrNoShards when the ring is empty and with ErrUnknownRing
// (or ErrFingerprintMismatch) when the proxy routes by a ring this client
// cannot compute.
func (c *Client) Owner(key string) (Shard, error) {
	st := c.state.Load()
	if st.err != nil {
		return Shard{}, st.err
	}
	sh, i, ok := st.table.Owner(unsafe.Slice(unsafe.StringData(key), len(key)))
	if !ok {
		return Shard{}, ErrNoShards
	}
	return Shard{Ordinal: sh.Ordinal, Name: sh.Name, Address: sh.Addr, Ready: sh.Ready && sh.Addr != "",
		Protocol: string(cmp.Or(sh.Protocol, "http1")), OwnsKeys: st.table.OwnsKeys(i)}, nil
}

// Topology is the proxy's /shards document as the client routes by it.
type Topology struct {
	// Ring is the algorithm: jump, consistent or modulus.
	Ring string
	// Partitions is the consistent ring's partition count (0 otherwise).
	Partitions int
	// Replicas is N, the shards that own keys.
	Replicas int
	// Fingerprint identifies the ring (algorithm, partitions, names); the
	// client checks that its own ring has the proxy's.
	Fingerprint string
	// Generation orders the proxy's topologies (its watch event id).
	Generation uint64
	// HandoffFrom is the previous N while data moves, 0 otherwise.
	HandoffFrom int
	// Shards are every shard by ordinal, those above N included.
	Shards []Shard
}

// Shard is one shard (one pod of the StatefulSet).
type Shard struct {
	// Ordinal is the pod's ordinal, its identity (never its IP).
	Ordinal int
	// Name is the pod's name, e.g. web-2: X-Shard on its answers.
	Name string
	// Address is host:port of the pod; "" while it has none.
	Address string
	// Ready is false while the pod is not ready or has no address: its
	// keys wait (Config.OwnerWait), they never go to another shard.
	Ready bool
	// Protocol is how the pod is spoken to: http1 or h2c.
	Protocol string
	// OwnsKeys is false for a pod above a pinned N (broadcast only).
	OwnsKeys bool
}

// errClosed: the admin port ended the watch stream (a shutdown).
var errClosed = errors.New("client: the watch stream ended")
