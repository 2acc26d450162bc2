package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/internal/watch/dns"
	"github.com/shard-proxy/shard-proxy/ring"
)

// options is everything the proxy is configured with, after flags and
// environment. Only this package reads either.
type options struct {
	demo       int
	shards     string
	kubeSvc    string
	sts        string
	namespace  string
	kubeconfig string
	port       string
	dnsSvc     string
	replicas   int
	domain     string
	dnsEvery   time.Duration

	listen       string
	adminListen  string
	ringName     string
	partitions   int
	key          string
	maxBody      byteSize
	maxReqBody   largeByteSize
	maxDepth     int
	upgrades     string
	upstreamTO   time.Duration
	headerTO     time.Duration
	protoName    string
	ownerWait    time.Duration
	ownerWaitMax int
	handoffFrom  int
	hotSample    int
	shutdownTO   time.Duration
	idleTrim     time.Duration
	tokenFile    string
	bcastConc    int
	bcastTimeout time.Duration
	logLevel     string
	logFormat    string
	tls          tlsOptions
	record       recordOptions

	// from maps flags set from the environment to their variable names.
	from map[string]string

	// Derived by validate.
	shardProto watch.Protocol
	ringCfg    ring.Config
	rules      []keys.Rule
}

// Defaults of the flags that no component owns.
const (
	defaultListen          = ":8080"
	defaultAdminListen     = ":9090"
	defaultShutdownTimeout = 15 * time.Second
	defaultIdleTrim        = time.Second
)

// byteSize is a flag value in bytes that also takes KiB, MiB and GiB suffixes.
type byteSize int

func (b *byteSize) String() string { return strconv.Itoa(int(*b)) }

func (b *byteSize) Set(s string) error {
	mult := 1
	num := s
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 || n > math.MaxInt32/mult {
		return fmt.Errorf("want a positive number of bytes up to 2GiB such as 4194304 or 4MiB")
	}
	*b = byteSize(n * mult)
	return nil
}

// largeByteSize is a flag value in bytes, 0 or more, with KiB, MiB, GiB
// and TiB suffixes, for limits beyond 2 GiB.
type largeByteSize int64

func (b *largeByteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *largeByteSize) Set(s string) error {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("want a number of bytes such as 0 (no limit), 104857600 or 100MiB")
	}
	*b = largeByteSize(n * mult)
	return nil
}

// intValue and durationValue are int and time.Duration flags whose parse
// errors say what would be right, instead of the flag package's bare
// "parse error".
type intValue struct{ p *int }

func (v intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("want a whole number")
	}
	*v.p = n
	return nil
}

type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("want a duration such as 30s, 500ms or 1m")
	}
	*v.p = d
	return nil
}

func intFlag(fs *flag.FlagSet, p *int, name string, def int, usage string) {
	*p = def
	fs.Var(intValue{p}, name, usage)
}

func durationFlag(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	fs.Var(durationValue{p}, name, usage)
}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("shard-proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	intFlag(fs, &o.demo, "demo", 0, "start N in-process demo shards (demo-0…) and route to them")
	fs.StringVar(&o.shards, "shards", "", "static shards: comma-separated http://host:port; ordinal = position, names shard-0…")
	fs.StringVar(&o.kubeSvc, "kube-service", "", "Kubernetes discovery: the headless Service of the StatefulSet")
	fs.StringVar(&o.sts, "statefulset", "", "StatefulSet name (default: the Service name)")
	fs.StringVar(&o.namespace, "namespace", "", "namespace (default: in-cluster namespace, else default)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&o.port, "port", "", "shard port: EndpointSlice port name or number (default: the only port)")
	fs.StringVar(&o.dnsSvc, "dns-service", "", "DNS discovery without API access: SVC.NAMESPACE of the headless Service")
	intFlag(fs, &o.replicas, "replicas", 0, "with --dns-service: the number of shards N")
	fs.StringVar(&o.domain, "cluster-domain", dns.DefaultClusterDomain, "with --dns-service: the cluster DNS domain")
	durationFlag(fs, &o.dnsEvery, "dns-interval", dns.DefaultInterval, "with --dns-service: how often every shard name is resolved again")

	durationFlag(fs, &o.ownerWait, "owner-wait", 0, "hold a request whose owner is not ready up to this long for it to become ready (0: 503 at once)")
	intFlag(fs, &o.ownerWaitMax, "owner-wait-max", proxy.DefaultOwnerWaitMax, "requests held for their owner at once; beyond it, 503 at once")
	intFlag(fs, &o.handoffFrom, "handoff-from", 0, "with --shards or --dns-service: the previous N while data moves (requests whose key moved carry X-Shard-Previous)")
	intFlag(fs, &o.hotSample, "hot-keys-sample", proxy.DefaultHotKeySample, "sample one request in N for /hotkeys (0: off)")
	fs.StringVar(&o.protoName, "shard-protocol", string(watch.HTTP1), "with --shards or --dns-service: http1, or h2c for shards that speak HTTP/2 over cleartext (gRPC)")
	fs.StringVar(&o.listen, "listen", defaultListen, "cleartext data plane address (\"\": none, with a TLS listener)")
	fs.StringVar(&o.adminListen, "admin-listen", defaultAdminListen, "admin plane address")
	fs.StringVar(&o.ringName, "ring", string(ring.Jump), "ring algorithm: jump, consistent or modulus")
	intFlag(fs, &o.partitions, "partitions", ring.DefaultPartitions, "partitions of the consistent ring")
	fs.StringVar(&o.key, "key", keys.DefaultRules, "key rules tried in order: header:NAME, query:NAME, cookie:NAME, path:TEMPLATE, body:FIELD")
	o.maxBody = proxy.DefaultMaxBodyBytes
	fs.Var(&o.maxBody, "max-body-bytes", "largest request body a body: key rule buffers (bytes, or with KiB/MiB/GiB); other bodies stream")
	fs.Var(&o.maxReqBody, "max-request-body-bytes", "largest request body of any request (bytes, or with KiB/MiB/GiB/TiB; 0: no limit); over it, 413 and no shard is contacted")
	intFlag(fs, &o.maxDepth, "max-body-depth", keys.DefaultMaxBodyDepth, "body: key rules: deepest JSON nesting read (deeper is 400)")
	fs.StringVar(&o.upgrades, "upgrade-protocols", strings.Join(proxy.DefaultUpgradeProtocols, ","), "protocols an Upgrade request may switch to, comma-separated (\"\": none); the Upgrade field of others is not forwarded")
	durationFlag(fs, &o.upstreamTO, "upstream-timeout", proxy.DefaultUpstreamTimeout, "bound on waiting for a shard: for its answer's head, and between reads of its body")
	durationFlag(fs, &o.headerTO, "client-header-timeout", proxy.DefaultClientHeaderTimeout, "bound on receiving a request head from its first byte (408 after)")
	durationFlag(fs, &o.shutdownTO, "shutdown-timeout", defaultShutdownTimeout, "on SIGTERM, how long in-flight requests may take to finish")
	durationFlag(fs, &o.idleTrim, "idle-trim", defaultIdleTrim, "after a burst, once the process has used almost no CPU this long, give free memory back to the system (0: never)")
	fs.StringVar(&o.tokenFile, "admin-token-file", "", "file holding the admin bearer token (re-read when it changes)")
	intFlag(fs, &o.bcastConc, "broadcast-concurrency", admin.DefaultBroadcastConcurrency, "broadcast: shards contacted at once")
	durationFlag(fs, &o.bcastTimeout, "broadcast-timeout", admin.DefaultBroadcastTimeout, "broadcast: default bound per shard (?timeout= overrides)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	tlsFlags(fs, &o.tls)
	recordFlags(fs, &o.record)
	return fs
}

// envName is the environment variable for a flag: --admin-listen is
// SHARD_PROXY_ADMIN_LISTEN.
func envName(flagName string) string {
	return "SHARD_PROXY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// serviceLink matches the variables Kubernetes injects for a Service
// (SHARD_PROXY_PORT=tcp://10.96.0.12:80 for a Service named shard-proxy);
// they are not flags.
var serviceLink = regexp.MustCompile(`^(tcp|udp|sctp)://`)

var flagError = regexp.MustCompile(`^invalid value "(.*)" for flag -(\S+): (.*)$`)

// parseFlags parses args, then fills every flag not given from its
// environment variable: the flag wins. It returns the names of the flags
// taken from the environment, mapped to their variables, so that later
// errors can name the variable the user actually set.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (fromEnv map[string]string, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		if m := flagError.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("--%s %q: %s", m[2], m[1], m[3])
		}
		return nil, errors.New(strings.TrimPrefix(err.Error(), "flag provided but not defined: ") + hintFor(err))
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with --; subcommands are locate, shards, plan, broadcast, broadcasts, top)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fromEnv = map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(envName(f.Name))
		if err != nil || set[f.Name] || v == "" || serviceLink.MatchString(v) {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)
		}
		fromEnv[f.Name] = envName(f.Name)
	})
	return fromEnv, err
}

func hintFor(err error) string {
	if strings.HasPrefix(err.Error(), "flag provided but not defined") {
		return ": unknown flag (see shard-proxy --help)"
	}
	return ""
}

// name is how errors refer to a flag: --ring, or SHARD_PROXY_RING when the
// value came from there.
func (o *options) name(flagName string) string {
	if env, ok := o.from[flagName]; ok {
		return env
	}
	return "--" + flagName
}

// validate checks combinations and derives the ring and key configuration.
func (o *options) validate() error {
	if err := o.validateSource(); err != nil {
		return err
	}
	if err := o.validateLimits(); err != nil {
		return err
	}
	if err := o.validateTLS(); err != nil {
		return err
	}
	if err := o.record.validate(o.name); err != nil {
		return err
	}
	return o.derive()
}

// maxDemoShards bounds --demo: each demo shard is a listener in this process.
const maxDemoShards = 1024

// validateSource checks that exactly one discovery source is given, with
// only the flags that go with it.
func (o *options) validateSource() error {
	sources := 0
	for _, set := range []bool{o.demo != 0, o.shards != "", o.kubeSvc != "", o.dnsSvc != ""} {
		if set {
			sources++
		}
	}
	switch {
	case sources == 0:
		return errors.New("no shards to route to: give one of --demo N, --shards URL,..., --kube-service NAME or --dns-service SVC.NAMESPACE")
	case sources > 1:
		return errors.New("give exactly one of --demo, --shards, --kube-service, --dns-service")
	case o.demo < 0 || o.demo > maxDemoShards:
		return fmt.Errorf("--demo %d: want a number of shards from 1 to %d", o.demo, maxDemoShards)
	case o.dnsSvc != "" && o.replicas <= 0:
		return errors.New("--dns-service needs --replicas N (the StatefulSet's spec.replicas)")
	case o.dnsSvc == "" && o.replicas != 0:
		return errors.New("--replicas goes with --dns-service (with --kube-service N comes from the StatefulSet)")
	case o.kubeSvc == "" && o.dnsSvc == "" && (o.sts != "" || o.port != ""):
		return errors.New("--statefulset and --port go with --kube-service or --dns-service")
	case o.kubeSvc == "" && (o.namespace != "" || o.kubeconfig != ""):
		return errors.New("--namespace and --kubeconfig go with --kube-service")
	case o.dnsSvc != "" && !validDNSService(o.dnsSvc):
		return fmt.Errorf("--dns-service %q: want SVC.NAMESPACE, e.g. web.default", o.dnsSvc)
	case o.dnsSvc != "" && !validPortNumber(o.port):
		return fmt.Errorf("--port %q: --dns-service needs the shards' port number, e.g. --port 8080", o.port)
	}
	return nil
}

// validateLimits checks the numbers and durations; each message suggests
// the default.
func (o *options) validateLimits() error {
	switch {
	case o.dnsEvery <= 0:
		return fmt.Errorf("--dns-interval %s: want a positive duration such as %s", o.dnsEvery, dns.DefaultInterval)
	case o.partitions <= 0:
		return fmt.Errorf("--partitions %d: want a positive number (default %d)", o.partitions, ring.DefaultPartitions)
	case o.upstreamTO <= 0:
		return fmt.Errorf("--upstream-timeout %s: want a positive duration such as %s", o.upstreamTO, proxy.DefaultUpstreamTimeout)
	case o.shutdownTO < 0:
		return fmt.Errorf("--shutdown-timeout %s: want a duration such as %s", o.shutdownTO, defaultShutdownTimeout)
	case o.idleTrim < 0:
		return fmt.Errorf("--idle-trim %s: want a duration such as %s, or 0 to never trim", o.idleTrim, defaultIdleTrim)
	case o.headerTO <= 0:
		return fmt.Errorf("--client-header-timeout %s: want a positive duration such as %s", o.headerTO, proxy.DefaultClientHeaderTimeout)
	case o.ownerWait < 0:
		return fmt.Errorf("--owner-wait %s: want a duration such as 15s, or 0 to answer 503 at once", o.ownerWait)
	case o.hotSample < 0:
		return fmt.Errorf("--hot-keys-sample %d: want N >= 1 (one request in N), or 0 for off", o.hotSample)
	case o.ownerWaitMax <= 0:
		return fmt.Errorf("--owner-wait-max %d: want a positive number (default %d)", o.ownerWaitMax, proxy.DefaultOwnerWaitMax)
	case o.maxDepth < 1 || o.maxDepth > 10000:
		return fmt.Errorf("--max-body-depth %d: want a nesting depth from 1 to 10000 (default %d)", o.maxDepth, keys.DefaultMaxBodyDepth)
	case o.handoffFrom < 0 || o.handoffFrom > 4096:
		return fmt.Errorf("--handoff-from %d: want the previous N, from 1 to 4096 (0: none)", o.handoffFrom)
	case o.handoffFrom > 0 && o.shards == "" && o.dnsSvc == "":
		return errors.New("--handoff-from goes with --shards or --dns-service (in Kubernetes, annotate the StatefulSet with shard-proxy.io/handoff-from)")
	case o.bcastConc <= 0:
		return fmt.Errorf("--broadcast-concurrency %d: want a positive number (default %d)", o.bcastConc, admin.DefaultBroadcastConcurrency)
	case o.bcastTimeout <= 0:
		return fmt.Errorf("--broadcast-timeout %s: want a positive duration such as %s", o.bcastTimeout, admin.DefaultBroadcastTimeout)
	case o.logFormat != "text" && o.logFormat != "json":
		return fmt.Errorf("%s %q: want text or json", o.name("log-format"), o.logFormat)
	}
	return nil
}

// derive parses what the components take: the log level, the ring
// configuration and the key rules; and checks that the token file exists.
func (o *options) derive() error {
	if _, err := parseLevel(o.logLevel); err != nil {
		return fmt.Errorf("%s %w", o.name("log-level"), err)
	}
	alg, err := ring.ParseAlgorithm(o.ringName)
	if err != nil {
		return fmt.Errorf("%s: %w", o.name("ring"), err)
	}
	o.ringCfg = ring.Config{Algorithm: alg, Partitions: o.partitions}
	if o.shardProto, err = watch.ParseProtocol(o.protoName); err != nil {
		return fmt.Errorf("%s %w", o.name("shard-protocol"), err)
	}
	if o.shardProto == watch.H2C && o.shards == "" && o.dnsSvc == "" {
		return fmt.Errorf("%s goes with --shards or --dns-service (in Kubernetes the port's appProtocol says it)", o.name("shard-protocol"))
	}
	if o.rules, err = keys.ParseRules(o.key); err != nil {
		return fmt.Errorf("%s: %w", o.name("key"), err)
	}
	if o.tokenFile != "" {
		if _, err := os.Stat(o.tokenFile); err != nil {
			return fmt.Errorf("%s: %w", o.name("admin-token-file"), err)
		}
	}
	return nil
}

func validDNSService(s string) bool {
	_, _, err := dns.ParseService(s)
	return err == nil
}

func validPortNumber(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, `shard-proxy routes each request to the shard that owns its key.

Usage:
  shard-proxy [flags]                     run the proxy
  shard-proxy locate KEY [client flags]   which shard owns KEY; with --replicas M,
                                          also which would own it with M shards
  shard-proxy shards [client flags]       the shard table
  shard-proxy plan --replicas M [client flags]
                                          the share of keys that moves with M shards,
                                          from which shard to which
  shard-proxy broadcast METHOD PATH [--data @file|-] [client flags]
                                          send a request to every shard, and report
  shard-proxy broadcast --retry ID [client flags]
                                          send broadcast ID again to the shards
                                          that failed in it
  shard-proxy broadcasts [client flags]   the last 100 broadcasts, newest first
  shard-proxy top [--interval 2s] [-n 5] [--once] [client flags]
                                          per-shard request rate, 5xx share, p99
                                          and hot keys, refreshing
  shard-proxy load [flags] URL            load test: {key} in URL and headers,
                                          a report per shard (load -h)

Every flag can also be set as SHARD_PROXY_<FLAG> (--admin-listen is
SHARD_PROXY_ADMIN_LISTEN); the flag wins.

Flags:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
