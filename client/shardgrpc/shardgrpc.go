// Package shardgrpc routes grpc-go calls straight to the pod that owns
// their key, as shard-proxy would: a resolver that follows a
// client.Client's topology, and a balancer whose picker sends each call,
// by the key in its x-shard-key metadata, to the owner's connection and
// never to another pod. gRPC's ring_hash picks the next endpoint when
// one is down; this balancer does not, because a shard that owns data is
// the only one that can answer for it.
//
//	c, err := client.New(ctx, "http://shard-proxy:9090", client.Config{OwnerWait: 15 * time.Second})
//	cc, err := shardgrpc.NewClient(c)
//	ctx = metadata.AppendToOutgoingContext(ctx, shardgrpc.MetadataKey, "42")
//	resp, err := pb.NewAccountsClient(cc).Get(ctx, req) // to the pod that owns 42
//
// A call whose owner is not ready waits up to the client's OwnerWait (the
// interceptors NewClient installs), then fails with UNAVAILABLE; a call
// without the key, or with two different ones, fails with
// INVALID_ARGUMENT, as through the proxy. Pods are spoken to over h2c
// (insecure transport credentials) unless opts say otherwise.
package shardgrpc

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/shard-proxy/shard-proxy/client"
)

// MetadataKey is the metadata a call's shard key is read from.
const MetadataKey = "x-shard-key"

// Name is the balancer's name in a service config.
const Name = "shard_proxy"

// Scheme is the resolver's scheme; Target is the target NewClient dials.
const (
	Scheme = "shard-proxy"
	Target = Scheme + ":///shards"
)

var register sync.Once

// DialOptions are the options that make a grpc.ClientConn dialing Target
// route by c: the resolver, the balancer as the default service config,
// and interceptors that wait for a not-ready owner (Config.OwnerWait).
// Transport credentials are the caller's to add.
func DialOptions(c *client.Client) []grpc.DialOption {
	register.Do(func() { balancer.Register(builder{}) })
	return []grpc.DialOption{
		grpc.WithResolvers(&resolverBuilder{c: c}),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"` + Name + `":{}}]}`),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if err := waitOwner(ctx, c); err != nil {
				return err
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if err := waitOwner(ctx, c); err != nil {
				return nil, err
			}
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}

// NewClient returns a grpc.ClientConn that routes each call to the pod
// owning its key, over h2c; opts come after the package's own (pass
// grpc.WithTransportCredentials to speak TLS to the pods). Close it when
// done; it stops following c then.
func NewClient(c *client.Client, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	all := append(DialOptions(c), grpc.WithTransportCredentials(insecure.NewCredentials()))
	return grpc.NewClient(Target, append(all, opts...)...)
}

// callKey is the call's shard key from its outgoing metadata.
func callKey(ctx context.Context) (string, error) {
	md, _ := metadata.FromOutgoingContext(ctx)
	vals := md.Get(MetadataKey)
	key := ""
	for _, v := range vals {
		switch {
		case v == "":
		case key == "":
			key = v
		case v != key:
			return "", status.Error(codes.InvalidArgument, "ambiguous shard key: two "+MetadataKey+" values")
		}
	}
	if key == "" {
		return "", status.Error(codes.InvalidArgument, "no shard key: set "+MetadataKey+" metadata")
	}
	return key, nil
}

// waitOwner refuses a call without a key (INVALID_ARGUMENT, which gRPC
// does not let a picker give) and holds one whose owner is not ready up
// to the client's OwnerWait.
func waitOwner(ctx context.Context, c *client.Client) error {
	key, err := callKey(ctx)
	if err != nil {
		return err
	}
	if _, err := c.WaitOwner(ctx, key); err != nil {
		return callError(err)
	}
	return nil
}

// callError is the gRPC status of a routing error, as the proxy answers.
func callError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unavailable, err.Error())
}
