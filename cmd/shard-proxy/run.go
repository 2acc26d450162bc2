package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/klog/v2"

	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(o *options, w io.Writer) *slog.Logger {
	level, _ := parseLevel(o.logLevel)
	hopts := &slog.HandlerOptions{Level: level}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// run wires the components and serves until ctx ends, then shuts down:
// readiness turns 503, the data listener closes, in-flight requests get
// --shutdown-timeout to finish.
func run(ctx context.Context, o *options, logw io.Writer) error {
	log := newLogger(o, logw)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	px, err := proxy.New(proxy.Config{
		Keys:            o.rules,
		MaxBodyBytes:    int(o.maxBody),
		UpstreamTimeout: o.upstreamTO,
		Registerer:      reg,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	src, err := newSource(o, px, log)
	if err != nil {
		return err
	}
	var auth *admin.TokenAuth
	if o.tokenFile != "" {
		if auth, err = admin.NewTokenAuth(o.tokenFile, log); err != nil {
			return err
		}
	}
	// The proxy is the one place that holds the table: the admin plane
	// reads the very snapshot the data plane routes with.
	adm := admin.New(admin.Config{
		Tables:     px,
		Gatherer:   reg,
		Registerer: reg,
		Auth:       auth,
		Broadcast: admin.BroadcastConfig{
			Concurrency:  o.bcastConc,
			Timeout:      o.bcastTimeout,
			MaxBodyBytes: int(o.maxBody),
		},
		Logger: log,
	})

	dataLn, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", o.adminListen)
	if err != nil {
		dataLn.Close()
		return fmt.Errorf("--admin-listen: %w", err)
	}
	log.Info("shard-proxy starting",
		"listen", dataLn.Addr().String(), "admin_listen", adminLn.Addr().String(),
		"ring", string(o.ringCfg.Algorithm), "key", o.key, "source", sourceName(o),
		"max_body_bytes", int(o.maxBody), "upstream_timeout", o.upstreamTO.String(),
		"admin_auth", o.tokenFile != "")

	publish := func(topo watch.Topology) {
		prev := px.Load()
		t, err := table.Build(o.ringCfg, topo, prev)
		if err != nil {
			log.Error("topology rejected; keeping the previous one", "err", err)
			return
		}
		px.Update(t)
		log.Info("topology applied", "replicas", t.Replicas(), "ready", t.Ready(),
			"fingerprint", t.Fingerprint, "ring_rebuilt", !table.SameRing(prev, t),
			"shards", shardSummary(t))
	}

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	srcCtx, stopSource := context.WithCancel(context.Background())
	defer stopSource()
	// Discovery has its own done channel rather than the WaitGroup: client-go
	// waits out its retry backoff (up to 30 s) before it notices a
	// cancellation while the API server is unreachable, and shutdown must not
	// wait for that beyond --shutdown-timeout.
	srcDone := make(chan struct{})
	go func() {
		defer close(srcDone)
		if err := src.Run(srcCtx, publish); err != nil {
			errs <- fmt.Errorf("discovery: %w", err)
		}
	}()
	dataSrv := px.Server()
	wg.Go(func() {
		if err := dataSrv.Serve(dataLn); err != nil {
			errs <- fmt.Errorf("data plane: %w", err)
		}
	})
	adminSrv := &http.Server{Handler: adm, ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() {
		if err := adminSrv.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("admin plane: %w", err)
		}
	})

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", o.shutdownTO.String())
	case runErr = <-errs:
		log.Error("stopping", "err", runErr)
	}
	adm.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTO)
	defer cancel()
	if err := dataSrv.ShutdownWithContext(sctx); err != nil {
		log.Warn("in-flight requests did not finish in time", "err", err)
	}
	// A shutdown that comes before Serve registered the listener does not
	// close it; closing it here ends Serve either way.
	_ = dataLn.Close()
	stopSource() // after the data plane: demo shards must outlive requests to them
	_ = adminSrv.Shutdown(sctx)
	adm.Close()
	px.Close()
	wg.Wait()
	select {
	case <-srcDone:
	case <-sctx.Done():
		log.Warn("discovery did not stop within the shutdown timeout; exiting without it")
	}
	log.Info("stopped")
	return runErr
}

func shardSummary(t *table.Table) string {
	var b strings.Builder
	for i, s := range t.Shards {
		if i > 0 {
			b.WriteByte(' ')
		}
		state := "ready"
		if !s.Ready {
			state = "not-ready"
		}
		fmt.Fprintf(&b, "%s=%s(%s)", s.Name, s.Addr, state)
		if i == 15 && len(t.Shards) > 16 {
			fmt.Fprintf(&b, " …%d more", len(t.Shards)-16)
			break
		}
	}
	return b.String()
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
		keys := px.Extractor()
		return &watch.Demo{N: o.demo, Key: keys.KeyString}, nil
	case o.shards != "":
		return watch.ParseStatic(o.shards)
	case o.kubeSvc != "":
		// client-go logs through klog; route it into our structured log.
		klog.SetSlogLogger(log.With("component", "client-go"))
		client, ns, err := watch.NewKubeClient(o.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kube-service: %w", err)
		}
		if o.namespace != "" {
			ns = o.namespace
		}
		return &watch.Kube{
			Client: client, Namespace: ns, Service: o.kubeSvc, StatefulSet: o.sts, Port: o.port, Logger: log,
		}, nil
	case o.dnsSvc != "":
		svc, ns, _ := watch.ParseDNSService(o.dnsSvc)
		port, _ := strconv.Atoi(o.port)
		return &watch.DNS{
			Service: svc, Namespace: ns, StatefulSet: o.sts, Replicas: o.replicas, Port: port,
			Domain: o.domain, Interval: o.dnsEvery, Logger: log,
		}, nil
	}
	return nil, fmt.Errorf("%s discovery is not available in this build", sourceName(o))
}
