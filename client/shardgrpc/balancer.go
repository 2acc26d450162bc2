package shardgrpc

import (
	"errors"
	"sync"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/shard-proxy/shard-proxy/client"
)

// clientKey is the resolver state attribute holding the *client.Client.
type clientKey struct{}

// builder builds the balancer.
type builder struct{}

var _ balancer.Builder = builder{}

func (builder) Name() string { return Name }

func (builder) Build(cc balancer.ClientConn, _ balancer.BuildOptions) balancer.Balancer {
	return &shardBalancer{cc: cc, conns: map[string]*conn{}}
}

// conn is the connection to one pod.
type conn struct {
	sc    balancer.SubConn
	state connectivity.State
	err   error // of the last TRANSIENT_FAILURE
}

// shardBalancer keeps one SubConn per ready pod of the topology and a
// picker that sends each call to its owner's. gRPC calls its methods one
// at a time; mu guards against the state listeners all the same.
type shardBalancer struct {
	cc     balancer.ClientConn
	mu     sync.Mutex
	client *client.Client
	conns  map[string]*conn // by pod address
	closed bool
}

var _ balancer.Balancer = (*shardBalancer)(nil)

func (b *shardBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	c, _ := s.ResolverState.Attributes.Value(clientKey{}).(*client.Client)
	if c == nil {
		return errors.New("shardgrpc: the balancer needs the shardgrpc resolver (dial shardgrpc.Target)")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.client = c
	want := map[string]bool{}
	for _, a := range s.ResolverState.Addresses {
		want[a.Addr] = true
		if _, ok := b.conns[a.Addr]; ok {
			continue
		}
		addr := a.Addr
		//lint:ignore SA1019 one address per SubConn, which is what the deprecation asks for
		sc, err := b.cc.NewSubConn([]resolver.Address{a}, balancer.NewSubConnOptions{
			StateListener: func(st balancer.SubConnState) { b.subConnState(addr, st) },
		})
		if err != nil {
			continue
		}
		b.conns[addr] = &conn{sc: sc, state: connectivity.Idle}
		sc.Connect()
	}
	for addr, cn := range b.conns {
		if !want[addr] {
			cn.sc.Shutdown() // the pod left the ring or is not ready
			delete(b.conns, addr)
		}
	}
	b.updateLocked()
	return nil
}

// subConnState records a pod connection's state; an idle one (the pod
// closed it) connects again, since only it can serve its keys.
func (b *shardBalancer) subConnState(addr string, st balancer.SubConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cn, ok := b.conns[addr]
	if !ok || b.closed || st.ConnectivityState == connectivity.Shutdown {
		return
	}
	cn.state, cn.err = st.ConnectivityState, st.ConnectionError
	if cn.state == connectivity.Idle {
		cn.sc.Connect()
	}
	b.updateLocked()
}

// updateLocked gives gRPC a new picker over the connections as they are.
func (b *shardBalancer) updateLocked() {
	p := &picker{client: b.client, conns: make(map[string]conn, len(b.conns))}
	state := connectivity.TransientFailure
	for addr, cn := range b.conns {
		p.conns[addr] = *cn
		switch {
		case cn.state == connectivity.Ready:
			state = connectivity.Ready
		case state != connectivity.Ready && (cn.state == connectivity.Connecting || cn.state == connectivity.Idle):
			state = connectivity.Connecting
		}
	}
	b.cc.UpdateState(balancer.State{ConnectivityState: state, Picker: p})
}

func (b *shardBalancer) ResolverError(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client == nil { // no topology yet: every call fails
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure,
			Picker: base{status.Error(codes.Unavailable, "shardgrpc: "+err.Error())}})
	}
}

// UpdateSubConnState is not used: each SubConn has a StateListener.
func (b *shardBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}

func (b *shardBalancer) ExitIdle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, cn := range b.conns {
		if cn.state == connectivity.Idle {
			cn.sc.Connect()
		}
	}
}

func (b *shardBalancer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for addr, cn := range b.conns {
		cn.sc.Shutdown()
		delete(b.conns, addr)
	}
}

// picker sends a call to the connection of its key's owner, and nowhere
// else. It is immutable.
type picker struct {
	client *client.Client
	conns  map[string]conn
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	key, err := callKey(info.Ctx)
	if err != nil { // only without the interceptors, which refuse it first
		return balancer.PickResult{}, status.Error(codes.Unavailable, status.Convert(err).Message())
	}
	sh, err := p.client.Owner(key)
	if err != nil {
		return balancer.PickResult{}, callError(err)
	}
	if !sh.Ready {
		return balancer.PickResult{}, status.Errorf(codes.Unavailable, "shard not ready: %s", sh.Name)
	}
	cn, ok := p.conns[sh.Address]
	switch {
	case !ok: // the resolver's update for this topology is on its way
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	case cn.state == connectivity.Ready:
		return balancer.PickResult{SubConn: cn.sc}, nil
	case cn.state == connectivity.TransientFailure:
		return balancer.PickResult{}, status.Errorf(codes.Unavailable, "shard unreachable: %s: %v", sh.Name, cn.err)
	}
	return balancer.PickResult{}, balancer.ErrNoSubConnAvailable // connecting: the next picker decides
}

// base is a picker that fails every call with err.
type base struct{ err error }

func (p base) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, p.err
}

// resolverBuilder resolves Target to the ready pods of a client's topology.
type resolverBuilder struct{ c *client.Client }

func (r *resolverBuilder) Scheme() string { return Scheme }

func (r *resolverBuilder) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	res := &shardResolver{c: r.c, cc: cc, stop: make(chan struct{}), done: make(chan struct{})}
	go res.run()
	return res, nil
}

// shardResolver pushes every topology of its client to gRPC, until Close.
type shardResolver struct {
	c    *client.Client
	cc   resolver.ClientConn
	once sync.Once
	stop chan struct{}
	done chan struct{}
}

func (r *shardResolver) run() {
	defer close(r.done)
	for {
		changed := r.c.Changed()
		st := resolver.State{Attributes: attributes.New(clientKey{}, r.c)}
		for _, s := range r.c.Topology().Shards {
			if s.Ready && s.OwnsKeys {
				st.Addresses = append(st.Addresses, resolver.Address{Addr: s.Address})
			}
		}
		_ = r.cc.UpdateState(st)
		select {
		case <-changed:
		case <-r.stop:
			return
		}
	}
}

func (r *shardResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops following the client and waits for the loop to end.
func (r *shardResolver) Close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}
