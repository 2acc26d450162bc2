package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

var _ http.RoundTripper = (*Client)(nil)

type keyContext struct{}

// WithKey returns a context that makes the Client route a request by key
// instead of by its key rules.
func WithKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyContext{}, key)
}

// podTransports are the connections to the pods: HTTP/1.1 for http1
// shards, HTTP/2 with prior knowledge for h2c ones (gRPC).
type podTransports struct {
	http1, h2c *http.Transport
}

func newPodTransports() podTransports {
	dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	// DisableCompression: the pod gets the request's own Accept-Encoding
	// (none added), and the caller its answer's bytes, as through the proxy.
	h1 := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	h2 := &http.Transport{DialContext: dial, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2.Protocols = &p
	return podTransports{http1: h1, h2c: h2}
}

func (p podTransports) close() {
	p.http1.CloseIdleConnections()
	p.h2c.CloseIdleConnections()
}

// RoundTrip sends req straight to the pod that owns its key (WithKey, or
// the key rules): never to another shard. An owner that is not ready is
// waited for up to Config.OwnerWait (a topology change may also move the
// key to another owner, which is then the one), then the error is a
// *ShardError with ErrShardNotReady, and nothing was sent. The request
// gets the proxy's header policy (hop-by-hop fields dropped,
// X-Forwarded-Proto and X-Forwarded-Host added, a client's own
// X-Shard-Previous dropped, the handoff's set) and the answer carries
// X-Shard with the owner's name. Only the host of req.URL is replaced: the
// pod sees req's Host, path and query as sent. Upgrades (WebSocket) are
// not carried.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	key, body, err := c.requestKey(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	st, sh, err := c.readyOwner(req.Context(), key)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if st.tls[sh.Ordinal] {
		closeBody(req)
		return nil, &ShardError{Shard: sh.Name, Ordinal: sh.Ordinal, Err: ErrShardUnreachable, Cause: errShardTLS}
	}
	out := req.Clone(req.Context())
	if body != nil {
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	if out.Host == "" {
		out.Host = req.URL.Host
	}
	out.URL.Scheme, out.URL.Host = "http", sh.Addr
	header.Prepare(out.Header, header.Forwarded{TLS: req.URL.Scheme == "https", Host: out.Host})
	if name, addr, moved := st.table.Previous([]byte(key), sh); moved {
		out.Header.Set(header.Previous, name)
		if addr != "" {
			out.Header.Set(header.PreviousAddress, addr)
		}
	}
	tr := c.pods.http1
	if sh.Protocol == watch.H2C {
		tr = c.pods.h2c
	}
	resp, err := tr.RoundTrip(out)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &ShardError{Shard: sh.Name, Ordinal: sh.Ordinal, Err: ErrShardUnreachable, Cause: err}
	}
	header.PrepareAnswer(resp.Header, sh.Name)
	return resp, nil
}

// errShardTLS: the pod expects TLS (section 14 of the design); the client
// does not speak it to pods yet, and plaintext would only be refused.
var errShardTLS = errors.New("the shard speaks TLS, which this client does not speak to pods yet")

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// requestKey is the request's key: WithKey's, else the key rules'. When a
// body rule needs the body, it is read (at most MaxBodyBytes) and
// returned, to be sent in place of req.Body.
func (c *Client) requestKey(req *http.Request) (key string, body []byte, err error) {
	if k, ok := req.Context().Value(keyContext{}).(string); ok && k != "" {
		return k, nil, nil
	}
	s := keys.AcquireScratch()
	defer keys.ReleaseScratch(s)
	hr := keys.HTTPRequest{Req: req}
	k, _, err := c.rules.Key(hr, s)
	if errors.Is(err, keys.ErrNeedBody) {
		if body, err = c.readBody(req); err != nil {
			return "", nil, err
		}
		hr.Buffered = body
		k, _, err = c.rules.Key(hr, s)
	}
	if err != nil {
		return "", nil, keyError(err)
	}
	return string(k), body, nil
}

// readBody buffers the body for a body rule, as the proxy does: at most
// MaxBodyBytes, else ErrBodyTooLarge.
func (c *Client) readBody(req *http.Request) ([]byte, error) {
	limit := c.cfg.MaxBodyBytes
	if req.Body == nil || req.Body == http.NoBody {
		return []byte{}, nil
	}
	if req.ContentLength > int64(limit) {
		return nil, &KeyError{Err: ErrBodyTooLarge}
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, int64(limit)+1))
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, &KeyError{Err: ErrBodyTooLarge}
	}
	return b, nil
}

// keyError maps the key rules' answer (the proxy's error table) to the
// Client's typed errors.
func keyError(err error) error {
	a := answer.For(err, "")
	ke := &KeyError{Rule: a.Body.Rule, Tried: a.Body.Tried}
	switch {
	case errors.Is(err, answer.ErrNoKey):
		ke.Err = ErrNoKey
	case errors.Is(err, answer.ErrAmbiguousKey):
		ke.Err = ErrAmbiguousKey
	case errors.Is(err, answer.ErrInvalidKey):
		ke.Err = ErrInvalidKey
	case errors.Is(err, answer.ErrBodyTooLarge):
		ke.Err = ErrBodyTooLarge
	default: // ErrBadBody, ErrBodyTooDeep
		ke.Err = ErrBadBody
	}
	return ke
}

// WaitOwner returns key's owner once it is ready, as RoundTrip waits for
// it: at once when it is, else after a topology change that makes it so,
// for at most Config.OwnerWait (the key is placed again on every change,
// so a scale that moves it waits for the new owner). Then the error is a
// *ShardError with ErrShardNotReady, or ctx's error.
func (c *Client) WaitOwner(ctx context.Context, key string) (Shard, error) {
	st, sh, err := c.readyOwner(ctx, key)
	if err != nil {
		return Shard{}, err
	}
	i := slices.IndexFunc(st.topo.Shards, func(s Shard) bool { return s.Ordinal == sh.Ordinal })
	if i < 0 {
		return Shard{Ordinal: sh.Ordinal, Name: sh.Name, Address: sh.Addr, Ready: true, Protocol: string(sh.Protocol), OwnsKeys: true}, nil
	}
	return st.topo.Shards[i], nil
}

// readyOwner returns the key's owner once it is ready, waiting up to
// OwnerWait for topology changes; the key is placed again on each, so a
// scale that moves it waits for the new owner.
func (c *Client) readyOwner(ctx context.Context, key string) (*state, *watch.Shard, error) {
	var timeout <-chan time.Time
	for {
		st := c.state.Load()
		if st.err != nil {
			return nil, nil, st.err
		}
		sh, _, ok := st.table.Owner([]byte(key))
		if !ok {
			return nil, nil, ErrNoShards
		}
		if sh.Ready && sh.Addr != "" {
			return st, sh, nil
		}
		if timeout == nil {
			if c.cfg.OwnerWait <= 0 {
				return nil, nil, &ShardError{Shard: sh.Name, Ordinal: sh.Ordinal, Err: ErrShardNotReady}
			}
			t := time.NewTimer(c.cfg.OwnerWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-st.next:
		case <-timeout:
			return nil, nil, &ShardError{Shard: sh.Name, Ordinal: sh.Ordinal, Err: ErrShardNotReady}
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}
