package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// cmdSanity sends twelve keys twice through the system, as the side-by-side
// runs' sanity check does: every answer must be OK, a key must land on the
// same shard both times, and (unless -direct) the keys must spread over more
// than one shard. The shards name themselves in x-backend. It prints the
// key → shard map and exits non-zero, saying why, when a check fails.
func cmdSanity(args []string) error {
	fs, c := commonFlags("sanity", "grpc")
	h2 := fs.Bool("h2", false, "plain HTTP/2 GET /accounts/<key> instead of gRPC")
	direct := fs.Bool("direct", false, "straight to one shard: keys need not spread")
	n := fs.Int("keys", 12, "keys to send")
	fs.Parse(args)
	open := askGRPC
	if *h2 {
		open = askH2
	}
	ask, closer, err := open(c.addr, c.timeout)
	if err != nil {
		return err
	}
	defer closer()
	keys := newKeyGen(c.seed^0x5a17, 0)
	seen := map[string]bool{}
	var out []string
	for range *n {
		k := keys.next()
		first, err := ask(k)
		if err != nil {
			return fmt.Errorf("key %s: %v", k, err)
		}
		again, err := ask(k)
		if err != nil {
			return fmt.Errorf("key %s, second time: %v", k, err)
		}
		if again != first {
			return fmt.Errorf("key %s went to shard %s, then to %s", k, first, again)
		}
		seen[first] = true
		out = append(out, k+"→"+first)
	}
	var shards []string
	for s := range seen {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	if !*direct && len(seen) < 2 {
		return fmt.Errorf("%d keys all went to shard %s: the key is not being hashed", *n, shards[0])
	}
	fmt.Printf("sanity ok: %d keys on shards %s: %s\n", *n, strings.Join(shards, ","), strings.Join(out, " "))
	return nil
}

type asker func(key string) (shard string, err error)

// askGRPC: one UnaryCall with the key in x-shard-key; the shard is the
// x-backend header metadata of the answer.
func askGRPC(addr string, timeout time.Duration) (asker, func(), error) {
	conns, err := dial(addr, 1, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	client := testgrpc.NewTestServiceClient(conns[0])
	return func(key string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "x-shard-key", key)
		var md metadata.MD
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 8}, grpc.Header(&md))
		if err != nil {
			return "", err
		}
		if len(resp.GetPayload().GetBody()) != 8 {
			return "", fmt.Errorf("answer has %d payload bytes, want 8", len(resp.GetPayload().GetBody()))
		}
		b := md.Get("x-backend")
		if len(b) == 0 {
			return "", fmt.Errorf("answer has no x-backend metadata (header: %v)", md)
		}
		return b[0], nil
	}, func() { closeAll(conns) }, nil
}

// askH2: GET /accounts/<key> over HTTP/2 with prior knowledge; the shard is
// the X-Backend header of the answer.
func askH2(addr string, timeout time.Duration) (asker, func(), error) {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	client := &http.Client{Transport: tr, Timeout: timeout}
	return func(key string) (string, error) {
		resp, err := client.Get("http://" + addr + "/accounts/" + key)
		if err != nil {
			return "", err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			return "", fmt.Errorf("%s %s: %.200q", resp.Proto, resp.Status, body)
		}
		b := resp.Header.Get("X-Backend")
		if b == "" {
			return "", fmt.Errorf("answer has no X-Backend header")
		}
		return b, nil
	}, tr.CloseIdleConnections, nil
}
