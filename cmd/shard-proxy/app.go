package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/memtrim"
	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/internal/watch/demo"
	"github.com/shard-proxy/shard-proxy/internal/watch/dns"
	"github.com/shard-proxy/shard-proxy/internal/watch/kube"
	"github.com/shard-proxy/shard-proxy/internal/watch/static"
)

// app is one running proxy. It builds every component, starts every
// goroutine, and stops them all in order; nothing it starts outlives
// Shutdown (but discovery, see srcDone).
type app struct {
	opts   *options
	log    *slog.Logger
	proxy  *proxy.Proxy
	admin  *admin.Server
	source watch.Source
	rec    *recorders

	dataLn, adminLn net.Listener
	tlsLn           net.Listener // nil without --tls-cert-file
	adminSrv        *http.Server
	tls             *tlsSetup
	stopTLS         context.CancelFunc

	wg         sync.WaitGroup // the servers
	errs       chan error     // a component that failed for good
	stopSource context.CancelFunc
	// srcDone is closed when discovery returns. It is not in wg: client-go
	// waits out its retry backoff (up to 30 s) before it notices a
	// cancellation while the API server is unreachable, and shutdown must
	// not wait for that beyond --shutdown-timeout.
	srcDone chan struct{}
	// stopTrim ends the memory trimmer; trimDone is closed when it has.
	stopTrim context.CancelFunc
	trimDone <-chan struct{}
}

// newApp builds the components and opens the listeners; nothing runs yet.
// On an error, whatever it built is released.
func newApp(o *options, log *slog.Logger) (_ *app, err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tlsSet, err := loadTLS(o, reg, log)
	if err != nil {
		return nil, err
	}
	rec, err := openRecorders(&o.record, reg, log)
	if err != nil {
		return nil, err
	}
	px, err := proxy.New(proxy.Config{
		Ring: o.ringCfg, Keys: o.rules, MaxBodyBytes: int(o.maxBody), UpstreamTimeout: o.upstreamTO,
		MaxRequestBodyBytes: int64(o.maxReqBody), MaxBodyDepth: o.maxDepth, UpgradeProtocols: upgradeList(o.upgrades),
		ClientHeaderTimeout: o.headerTO, OwnerWait: o.ownerWait, OwnerWaitMax: o.ownerWaitMax,
		HotKeySample: hotKeySample(o.hotSample),
		Registerer:   reg, Logger: log, AccessLog: rec.accessLog(), Tracer: rec.tracerOf(),
		OnTLSHandshake: func(outcome string) { tlsSet.metrics.Handshake("data", outcome) },
		ShardTLS:       tlsSet.shard,
	})
	if err != nil {
		rec.close(context.Background())
		return nil, err
	}
	a := &app{opts: o, log: log, proxy: px, rec: rec, tls: tlsSet, errs: make(chan error, 4), srcDone: make(chan struct{})}
	defer func() {
		if err != nil {
			a.closeListeners()
			px.Close()
			rec.close(context.Background())
		}
	}()
	if a.source, err = newSource(o, px, log); err != nil {
		return nil, err
	}
	var auth *admin.TokenAuth
	if o.tokenFile != "" {
		if auth, err = admin.NewTokenAuth(o.tokenFile, log); err != nil {
			return nil, err
		}
	}
	a.admin = admin.New(admin.Config{
		Tables: px, HotKeys: px, Changes: px, Gatherer: reg, Registerer: reg, Auth: auth, Logger: log, ShardTLS: tlsSet.shard,
		Broadcast: admin.BroadcastConfig{Concurrency: o.bcastConc, Timeout: o.bcastTimeout, MaxBodyBytes: int(o.maxBody),
			Tracer: rec.provider()},
	})
	if err = a.listenData(o); err != nil {
		return nil, err
	}
	if a.adminLn, err = net.Listen("tcp", o.adminListen); err != nil {
		return nil, fmt.Errorf("--admin-listen: %w", err)
	}
	a.adminSrv = &http.Server{Handler: a.admin, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsSet.admin}
	if tlsSet.admin != nil {
		a.adminSrv.ErrorLog = stdlog.New(handshakeErrors{tlsSet.metrics, log}, "", 0)
	}
	if tlsSet.adminMTLS {
		a.adminSrv.Handler = requireClientCert(a.admin)
	}
	return a, nil
}

func (a *app) closeListeners() {
	for _, ln := range []net.Listener{a.dataLn, a.tlsLn, a.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// Start runs discovery and both servers. A component that fails for good
// reports on Err.
func (a *app) Start() {
	o := a.opts
	a.log.Info("shard-proxy starting",
		"listen", addr(a.dataLn), "tls_listen", addr(a.tlsLn), "admin_listen", a.adminLn.Addr().String(),
		"ring", string(o.ringCfg.Algorithm), "key", o.key, "source", sourceName(o),
		"max_body_bytes", int(o.maxBody), "upstream_timeout", o.upstreamTO.String(),
		"admin_auth", o.tokenFile != "", "admin_tls", a.tls.admin != nil, "shard_tls", a.tls.shard != nil)
	srcCtx, stop := context.WithCancel(context.Background())
	a.stopSource = stop
	a.rec.start()
	go func() {
		defer close(a.srcDone)
		if err := a.source.Run(srcCtx, a.proxy.Apply); err != nil {
			a.errs <- fmt.Errorf("discovery: %w", err)
		}
	}()
	tlsCtx, stopTLS := context.WithCancel(context.Background())
	a.stopTLS = stopTLS
	a.wg.Go(func() { a.tls.watch(tlsCtx) })
	trimCtx, stopTrim := context.WithCancel(context.Background())
	a.stopTrim = stopTrim
	a.trimDone = (&memtrim.Trimmer{Quiet: o.idleTrim, OnTrim: func(before, after uint64) {
		a.log.Debug("quiet: memory given back", "held_mib", before>>20, "now_mib", after>>20)
	}}).Start(trimCtx)
	if a.dataLn != nil {
		a.wg.Go(func() {
			if err := a.proxy.Serve(a.dataLn); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
				a.errs <- fmt.Errorf("data plane: %w", err)
			}
		})
	}
	if a.tlsLn != nil {
		a.wg.Go(func() {
			if err := a.proxy.ServeTLS(a.tlsLn, a.tls.data); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
				a.errs <- fmt.Errorf("TLS data plane: %w", err)
			}
		})
	}
	a.wg.Go(func() {
		serve := a.adminSrv.Serve
		if a.adminSrv.TLSConfig != nil {
			serve = func(ln net.Listener) error { return a.adminSrv.ServeTLS(ln, "", "") }
		}
		if err := serve(a.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.errs <- fmt.Errorf("admin plane: %w", err)
		}
	})
}

// Err reports a component that failed for good.
func (a *app) Err() <-chan error { return a.errs }

// Shutdown stops everything in order: readiness turns 503, the data
// listener closes and in-flight requests get the timeout to finish, then
// discovery (after the data plane: demo shards must outlive requests to
// them), then the admin plane.
func (a *app) Shutdown(timeout time.Duration) {
	a.admin.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := a.proxy.Shutdown(ctx); err != nil {
		a.log.Warn("in-flight requests did not finish in time", "err", err)
	}
	// A shutdown that comes before Serve registered the listener does not
	// close it; closing it here ends Serve either way.
	for _, ln := range []net.Listener{a.dataLn, a.tlsLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	a.stopSource()
	a.stopTLS()
	a.stopTrim()
	<-a.trimDone
	_ = a.adminSrv.Shutdown(ctx)
	a.admin.Close()
	a.proxy.Close()
	a.rec.close(ctx) // after the data plane: every request's line and span
	a.wg.Wait()
	select {
	case <-a.srcDone:
	case <-ctx.Done():
		a.log.Warn("discovery did not stop within the shutdown timeout; exiting without it")
	}
	a.log.Info("stopped")
}

// run serves until ctx ends or a component fails, then shuts down.
// onLogger, if set, is given the logger first (main routes library logs).
func run(ctx context.Context, o *options, logw io.Writer, onLogger func(*slog.Logger)) error {
	log := newLogger(o, logw)
	if onLogger != nil {
		onLogger(log)
	}
	a, err := newApp(o, log)
	if err != nil {
		return err
	}
	a.Start()
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", o.shutdownTO.String())
	case runErr = <-a.Err():
		log.Error("stopping", "err", runErr)
	}
	a.Shutdown(o.shutdownTO)
	return runErr
}

func sourceName(o *options) string {
	switch {
	case o.demo > 0:
		return fmt.Sprintf("demo(%d)", o.demo)
	case o.shards != "":
		return "static"
	case o.kubeSvc != "":
		return "kubernetes"
	default:
		return "dns"
	}
}

// newSource builds the one discovery source the options name.
func newSource(o *options, px *proxy.Proxy, log *slog.Logger) (watch.Source, error) {
	switch {
	case o.demo > 0:
		extract := px.Keys()
		return &demo.Source{N: o.demo, Key: func(r *http.Request, body []byte) string {
			return extract.KeyString(keys.HTTPRequest{Req: r, Buffered: body})
		}}, nil
	case o.shards != "":
		src, err := static.Parse(o.shards, o.shardProto)
		if err == nil {
			src.HandoffFrom = o.handoffFrom
			if o.tls.shardTLS {
				src.AllTLS()
			}
		}
		return src, err
	case o.kubeSvc != "":
		client, ns, err := kube.NewClient(o.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kube-service: %w", err)
		}
		if o.namespace != "" {
			ns = o.namespace
		}
		return &kube.Source{
			Client: client, Namespace: ns, Service: o.kubeSvc, StatefulSet: o.sts, Port: o.port, Logger: log,
			ServerName: o.tls.shardName, Domain: o.domain,
		}, nil
	default:
		svc, ns, _ := dns.ParseService(o.dnsSvc)
		port, _ := strconv.Atoi(o.port)
		return &dns.Source{
			Service: svc, Namespace: ns, StatefulSet: o.sts, Replicas: o.replicas, Port: port,
			Domain: o.domain, Interval: o.dnsEvery, Protocol: o.shardProto, HandoffFrom: o.handoffFrom, Logger: log,
			TLS: o.tls.shardTLS, ServerName: o.tls.shardName,
		}, nil
	}
}

// hotKeySample maps --hot-keys-sample (0: off) to proxy.Config's (negative: off).
func hotKeySample(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// upgradeList is the --upgrade-protocols list: "" allows none.
func upgradeList(v string) []string {
	out := []string{}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
