package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// Reconnection and liveness of the watch.
const (
	// retryMin and retryMax bound the wait before reconnecting: a lost
	// watch is back within a second of the admin port being back.
	retryMin = 50 * time.Millisecond
	retryMax = time.Second
	// idleLimit drops a stream that carried nothing, not even the 15 s
	// heartbeat, for this long (a half-open connection).
	idleLimit = 45 * time.Second
	// maxEventBytes bounds one event's data (1000 shards are ~150 KiB).
	maxEventBytes = 16 << 20
)

// shardsDoc is the /shards document (each watch event's data).
type shardsDoc struct {
	Ring        string `json:"ring"`
	Partitions  int    `json:"partitions"`
	Replicas    int    `json:"replicas"`
	Fingerprint string `json:"fingerprint"`
	Generation  uint64 `json:"generation"`
	HandoffFrom int    `json:"handoff_from"`
	Shards      []struct {
		Ordinal  int    `json:"ordinal"`
		Name     string `json:"name"`
		Address  string `json:"address"`
		Ready    bool   `json:"ready"`
		Protocol string `json:"protocol"`
		OwnsKeys bool   `json:"owns_keys"`
		// TLS is "off", "verified" or "unverified" (shard TLS, when the
		// proxy speaks it); "" from proxies without shard TLS.
		TLS string `json:"tls"`
	} `json:"shards"`
}

func adminTransport(cfg Config) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: min(cfg.Timeout, 5*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       cfg.TLS,
		TLSHandshakeTimeout:   min(cfg.Timeout, 10*time.Second),
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     cfg.TLS != nil,
	}
}

// run keeps a watch open until ctx ends, reconnecting after a pause that
// grows to retryMax; the last topology stays in force meanwhile.
func (c *Client) run(ctx context.Context) {
	defer close(c.done)
	defer c.pods.close()
	defer c.http.CloseIdleConnections()
	pause := retryMin
	for {
		got, err := c.watchOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrUnauthorized) {
			c.failFirst(err) // New fails at once; later, the error stays visible in WatchErr
		}
		if got {
			pause = retryMin
		}
		c.setErr(err)
		c.log.Debug("shard-proxy client: topology watch lost, reconnecting", "admin", c.admin.Redacted(), "error", err, "in", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, retryMax)
	}
}

func (c *Client) setErr(err error) {
	if err == nil {
		c.lastErr.Store(nil)
		return
	}
	c.lastErr.Store(&errBox{err})
}

// failFirst makes New return err, if it still waits.
func (c *Client) failFirst(err error) {
	c.once.Do(func() {
		c.fatal = err
		close(c.first)
	})
}

// watchOnce reads one watch stream to its end; got tells whether it
// carried a topology.
func (c *Client) watchOnce(ctx context.Context) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.admin.String()+"/shards?watch=1", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("watching %s: %w", c.admin.Redacted(), err)
	}
	defer resp.Body.Close()
	if err := watchStatus(resp); err != nil {
		return false, err
	}
	idle := time.AfterFunc(idleLimit, cancel)
	defer idle.Stop()
	err = readEvents(bufio.NewReaderSize(resp.Body, 64<<10), func(event, data string) error {
		idle.Reset(idleLimit)
		if event != "topology" {
			return nil // a heartbeat, or an event this client does not know
		}
		if err := c.apply(data); err != nil {
			return err
		}
		got = true
		return nil // an unknown ring is in force as an error; the stream goes on
	})
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("watch stream idle for %v: %w", idleLimit, err)
	}
	return got, err
}

// watchStatus turns a refused watch into an error.
func watchStatus(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%w: %s", ErrUnauthorized, msg)
	}
	return fmt.Errorf("watch answered %s: %s", resp.Status, msg)
}

// readEvents reads server-sent events and calls fn with each event's name
// and data (heartbeat comments as event ""), until the stream ends.
func readEvents(br *bufio.Reader, fn func(event, data string) error) error {
	var event string
	var data strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = errClosed
			}
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if err := fn(event, data.String()); err != nil {
				return err
			}
			event = ""
			data.Reset()
		case name == "":
			if err := fn("", ""); err != nil { // a comment: the stream is alive
				return err
			}
		case name == "event":
			event = value
		case name == "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			if data.Len() > maxEventBytes {
				return fmt.Errorf("watch event over %d bytes", maxEventBytes)
			}
		}
	}
}

// apply builds the routing state of one /shards document and swaps it in.
// An unknown ring, or a ring whose fingerprint is not the proxy's, is put
// in force as an error (Owner and RoundTrip return it, WatchErr shows it)
// until a topology the client can route by comes: routing by a guess would
// misroute. Only a document that does not parse ends the stream.
func (c *Client) apply(data string) error {
	var doc shardsDoc
	if err := json.Unmarshal([]byte(data), &doc); err != nil {
		return fmt.Errorf("watch event: %w", err)
	}
	var prev *table.Table
	if old := c.state.Load(); old != nil {
		prev = old.table
	}
	t, err := buildTable(&doc, prev)
	st := &state{table: t, topo: topologyOf(&doc), err: err, next: make(chan struct{})}
	for _, sh := range doc.Shards {
		if sh.TLS != "" && sh.TLS != "off" {
			if st.tls == nil {
				st.tls = map[int]bool{}
			}
			st.tls[sh.Ordinal] = true
		}
	}
	if err != nil {
		st.table = nil
	}
	c.setErr(err) // before the swap wakes anyone
	if old := c.state.Swap(st); old != nil {
		close(old.next)
	}
	c.once.Do(func() {
		c.fatal = err
		close(c.first)
	})
	if err != nil {
		c.log.Warn("shard-proxy client: cannot route by the proxy's topology", "admin", c.admin.Redacted(), "error", err)
	}
	return nil
}

// buildTable is the proxy's own table (ring and shards) from doc.
func buildTable(doc *shardsDoc, prev *table.Table) (*table.Table, error) {
	alg, err := ring.ParseAlgorithm(doc.Ring)
	if err != nil {
		return nil, fmt.Errorf("%w %q in the watch stream (generation %d): this client knows %v",
			ErrUnknownRing, doc.Ring, doc.Generation, ring.Algorithms())
	}
	topo := watch.Topology{Replicas: doc.Replicas, HandoffFrom: doc.HandoffFrom}
	for _, s := range doc.Shards {
		p, err := watch.ParseProtocol(s.Protocol)
		if err != nil {
			p = watch.HTTP1
		}
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: s.Ordinal, Name: s.Name, Addr: s.Address, Ready: s.Ready, Protocol: p})
	}
	t, err := table.Build(ring.Config{Algorithm: alg, Partitions: doc.Partitions}, topo, prev)
	if err != nil {
		return nil, fmt.Errorf("watch event (generation %d): %w", doc.Generation, err)
	}
	if t.Fingerprint != doc.Fingerprint {
		return nil, fmt.Errorf("%w: %s here, %s at the proxy (generation %d)", ErrFingerprintMismatch, t.Fingerprint, doc.Fingerprint, doc.Generation)
	}
	return t, nil
}

func topologyOf(doc *shardsDoc) Topology {
	t := Topology{Ring: doc.Ring, Partitions: doc.Partitions, Replicas: doc.Replicas, Fingerprint: doc.Fingerprint,
		Generation: doc.Generation, HandoffFrom: doc.HandoffFrom, Shards: make([]Shard, 0, len(doc.Shards))}
	for _, s := range doc.Shards {
		t.Shards = append(t.Shards, Shard{Ordinal: s.Ordinal, Name: s.Name, Address: s.Address, Ready: s.Ready && s.Address != "",
			Protocol: s.Protocol, OwnsKeys: s.OwnsKeys})
	}
	return t
}
