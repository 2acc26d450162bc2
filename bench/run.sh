#!/usr/bin/env bash
# Side-by-side benchmark of shard-proxy, HAProxy, nginx and Caddy as sharding
# proxies, with direct-to-shard as the ceiling. See bench/README.md.
#
#   bash bench/run.sh            measure, write bench/results/latest.{md,png,tsv}
#   bash bench/run.sh profile    CPU profile, allocations and syscalls per request
#                                of shard-proxy's data plane under the header
#                                load (BENCH_PROFILE_SCENARIO), in bench/results/
#   bash bench/run.sh memory     streaming and memory: time to first byte, big
#                                downloads and uploads, slow and idle clients, a
#                                shard lying about Content-Length; shard-proxy,
#                                HAProxy and nginx side by side, in
#                                bench/results/memory.md
#   bash bench/run.sh accesslog  header-key req/s and allocations per request of
#                                shard-proxy's data plane with 100% access logging
#                                to a file, and tracing at 1% and 100% sampling,
#                                against both off, alternating in the same run, in
#                                bench/results/accesslog.md
#   bash bench/run.sh grpc       gRPC unary calls (and plain HTTP/2 GETs with
#                                h2load) through shard-proxy, HAProxy and nginx
#                                over h2c, in bench/results/grpc.md; the
#                                systems shard-proxy-log (100% access log to a
#                                file), shard-proxy-trace1 and -trace100
#                                (--tracing otlp at 1% and 100% sampling, to an
#                                OTLP/HTTP sink on the load CPU) are measured
#                                against shard-proxy in the same round
#   bash bench/run.sh fixedrate  open-loop runs of shard-proxy load at 50% and
#                                90% of the slowest proxy's saturation rate,
#                                p50/p99/p99.9 side by side, in
#                                bench/results/fixedrate.md (bench/fixedrate.sh)
#   bash bench/run.sh generator  can one core of shard-proxy load keep
#                                BENCH_GEN_RATE req/s? bench/results/generator.md
#   bash bench/run.sh broadcast  admin broadcast to BENCH_BCAST_SHARDS shards over
#                                a BENCH_BCAST_RTT link: one keyed request, a lone
#                                broadcast, rounds of concurrent ones with the new
#                                shard connections each made, in
#                                bench/results/broadcast.md (bench/cmd/broadcast)
#   bash bench/run.sh publish    the three-round comparison of every system and
#                                key (BENCH_ROUNDS=3 unless set), copied to
#                                bench/RESULTS.md and bench/results.png
#
# SHARD_PROXY_BIN=/path measures that shard-proxy binary instead of building
# one from this checkout.
#
# Every proxy runs alone on BENCH_PROXY_CPU; the four nginx shards and wrk
# share BENCH_LOAD_CPU. All knobs are environment variables (defaults below).
set -euo pipefail

: "${BENCH_DURATION:=10}"        # seconds measured per system and scenario
: "${BENCH_WARMUP:=2}"           # seconds of unmeasured load before each measurement
: "${BENCH_CONNECTIONS:=64}"     # wrk connections
BENCH_ROUNDS_SET=${BENCH_ROUNDS:-}
: "${BENCH_ROUNDS:=1}"           # repeat everything; the summary takes medians (publish: 3)
: "${BENCH_SCENARIOS:=header path body}"
: "${BENCH_SYSTEMS:=shard-proxy haproxy nginx caddy direct}"
: "${BENCH_CADDY_VERSION:=v2.11.9}" # go install'ed into $(go env GOPATH)/bin when no caddy is found
: "${BENCH_PROXY_CPU:=1}"
: "${BENCH_LOAD_CPU:=0}"
: "${BENCH_PORT:=18080}"         # proxy listens here; shards on +1..+4, admin on +10
: "${BENCH_OUT:=bench/results}"
: "${BENCH_SEED:=42}"
: "${BENCH_CANDIDATE:=}"         # another checkout of shard-proxy, measured as "candidate" (A/B)
: "${BENCH_PROFILE_SCENARIO:=header}"  # the load that "run.sh profile" runs under
: "${SHARD_PROXY_BIN:=}"         # measure this binary instead of building ./cmd/shard-proxy
# "run.sh memory" (see the README for what each test does)
: "${BENCH_MEM_SYSTEMS:=shard-proxy haproxy nginx}"
: "${BENCH_MEM_TESTS:=stream sse download download50 upload slowupload idle h2idle hugecl hung h2stall slowshard blackhole}"
: "${BENCH_MEM_BYTES:=64MiB}"    # one download, each of the concurrent downloads, the upload
: "${BENCH_MEM_MAX_BODY_MIB:=128}" # shard-proxy --max-body-bytes, nginx client_max_body_size
: "${BENCH_AL_MODES:=off file trace1 trace100}" # "run.sh accesslog": off, 100% access log to a file, tracing at 1% and 100%
: "${BENCH_SP_ARGS:=}"           # extra shard-proxy flags in memory mode (word-split)
: "${BENCH_STREAM_CHUNKS:=10}" "${BENCH_STREAM_GAP:=200ms}"
: "${BENCH_DOWNLOADS:=50}"       # concurrent downloads
: "${BENCH_AFTER:=5}"            # seconds after the downloads end when RSS is read again
: "${BENCH_SLOW_CLIENTS:=500}" "${BENCH_SLOW_BYTES:=4MiB}" "${BENCH_SLOW_CHUNK:=64KiB}" "${BENCH_SLOW_GAP:=100ms}"
: "${BENCH_IDLE_CONNS:=20000}" "${BENCH_IDLE_PROCS:=4}"
# "h2idle": idle h2c connections (one stream each, then idle), held by BENCH_IDLE_PROCS processes. Fewer than
# "idle": an HTTP/2 connection costs a proxy more, and 5,000 is enough for the growth to swamp the noise
: "${BENCH_H2IDLE_CONNS:=5000}"
: "${BENCH_HUGECL_STALL:=3s}"
: "${BENCH_HUNG_CLIENTS:=5000}" "${BENCH_HUNG_HOLD:=5s}" # "hung": requests a shard holds at once, and how long
# "h2stall": HTTP/2 client connections at window 0, streams each, answer size, stall, when RSS is read after
: "${BENCH_H2STALL_CONNS:=50}" "${BENCH_H2STALL_STREAMS:=100}" "${BENCH_H2STALL_BYTES:=1MiB}" "${BENCH_H2STALL_HOLD:=5s}" "${BENCH_H2STALL_AFTER:=2s}"
# "slowshard", "blackhole": clients (one pool per shard), their requests/s in all (0: back to back), each phase's length,
# the slow shard's delay, which shard (0-3) stalls
: "${BENCH_STALL_CLIENTS:=200}" "${BENCH_STALL_RATE:=2000}" "${BENCH_STALL_DURATION:=10s}" "${BENCH_STALL_DELAY:=5s}" "${BENCH_STALL_SHARD:=3}"
: "${BENCH_HAPROXY_NODELAY:=1}"  # HAProxy "option http-no-delay" (see config/haproxy-memory.cfg)
: "${BENCH_RSS_GUARD_MIB:=8192}" # SIGKILL a proxy whose RSS passes this, so it cannot take the machine down
: "${BENCH_MEM_TIMEOUT:=90}"     # seconds one test may take before it is cut short
# "run.sh grpc"
: "${BENCH_GRPC_SYSTEMS:=shard-proxy haproxy nginx direct}"
: "${BENCH_GRPC_SCENARIOS:=grpc h2}" # grpc: unary calls (grpcload); h2: plain HTTP/2 GETs (h2load)
: "${BENCH_GRPC_CALLERS:=64}"    # concurrent calls (h2: streams in all)
: "${BENCH_GRPC_CONNS:=4}"       # client connections they share (1: one multiplexed client)
: "${BENCH_GRPC_PAYLOAD:=32}"    # bytes of payload in each request and each answer
: "${BENCH_H2_UPSTREAM:=http1}"  # h2 scenario, proxy to shards: http1, or h2c (nginx cannot: n/a)
# "run.sh broadcast"
: "${BENCH_BCAST_SHARDS:=256}" "${BENCH_BCAST_RTT:=20ms}" "${BENCH_BCAST_CONCURRENT:=20}" "${BENCH_BCAST_ROUNDS:=3}"
# The machine is shared (builds, other tests). Raising the benchmark's own
# processes' priority keeps that load from stealing the pinned cores in the
# middle of a measurement; it applies to every system alike. Needs root.
if [ "$(id -u)" -eq 0 ]; then : "${BENCH_NICE:=-19}"; else : "${BENCH_NICE:=0}"; fi

MODE=${1:-compare}
CLK_TCK=$(getconf CLK_TCK)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH="$ROOT/bench"

LISTEN=$BENCH_PORT
ADMIN=$((BENCH_PORT + 10))
SHARD_PORTS=($((BENCH_PORT + 1)) $((BENCH_PORT + 2)) $((BENCH_PORT + 3)) $((BENCH_PORT + 4)))
SHARDS_FLAG=$(printf 'http://127.0.0.1:%s,' "${SHARD_PORTS[@]}")
SHARDS_FLAG=${SHARDS_FLAG%,}

# Command prefixes that pin a process to its CPU at the benchmark's
# priority. Arrays, not functions: "${ON_PROXY_CPU[@]}" cmd & makes $! the
# PID of cmd itself (nice and taskset exec it), whose RSS is measured.
ON_PROXY_CPU=(nice -n "$BENCH_NICE" taskset -c "$BENCH_PROXY_CPU")
ON_LOAD_CPU=(nice -n "$BENCH_NICE" taskset -c "$BENCH_LOAD_CPU")

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- prerequisites -----------------------------------------------------------

install_missing() {
	local missing=() cmd pkg
	for pair in nginx:nginx haproxy:haproxy wrk:wrk taskset:util-linux curl:curl; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	install_caddy
	[ ${#missing[@]} -eq 0 ] && return
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	log "installing ${missing[*]}"
	$sudo apt-get update -qq
	# policy-rc.d may refuse to start the packaged services; we start our own.
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# Debian starts the packaged daemons where it can; they would compete
	# for the cores, so stop them.
	for svc in nginx haproxy; do
		command -v systemctl >/dev/null 2>&1 && $sudo systemctl stop "$svc" >/dev/null 2>&1 || true
	done
}

# install_caddy: CADDY is the caddy binary, built with go install when it is
# neither on PATH nor in $(go env GOPATH)/bin and a comparison measures it.
install_caddy() {
	CADDY=$(command -v caddy 2>/dev/null || true)
	[ -z "$CADDY" ] && command -v go >/dev/null && [ -x "$(go env GOPATH)/bin/caddy" ] && CADDY=$(go env GOPATH)/bin/caddy
	[ -n "$CADDY" ] && return
	case " $BENCH_SYSTEMS " in *" caddy "*) ;; *) return ;; esac
	[ "$MODE" = compare ] || [ "$MODE" = publish ] || return 0
	log "installing caddy $BENCH_CADDY_VERSION with go install (a few minutes)"
	go install "github.com/caddyserver/caddy/v2/cmd/caddy@$BENCH_CADDY_VERSION" || die "go install caddy@$BENCH_CADDY_VERSION failed"
	CADDY=$(go env GOPATH)/bin/caddy
}

# caddy_version: ", caddy vX" when the comparison measures caddy: the module
# version the binary was built from.
caddy_version() {
	case "$MODE/ $BENCH_SYSTEMS " in compare/*" caddy "* | publish/*" caddy "*) ;; *) return ;; esac
	[ -n "${CADDY:-}" ] || { echo ", caddy (not installed)"; return; }
	echo ", caddy $(go version -m "$CADDY" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/caddyserver/caddy/v2" {print $3}')"
}

# --- process handling ----------------------------------------------------------

TMP=$(mktemp -d /tmp/shard-proxy-bench.XXXXXX)
PIDS=()

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid PID: stop one process we started and forget it.
stop_pid() {
	local pid=$1 p keep=()
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
	PIDS=("${keep[@]+"${keep[@]}"}")
}

# wait_port PORT: until something listens there, for up to 30 s (a process
# at nice -19 on a busy machine can take a while to start).
wait_port() {
	local port=$1 i
	for i in $(seq 1 600); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	die "nothing listens on 127.0.0.1:$port after 30s"
}

port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# render TEMPLATE OUT [KEY=VALUE...]: fill @KEY@ placeholders.
render() {
	local tmpl=$1 out=$2 kv args=() i
	shift 2
	args=(-e "s|@DIR@|$TMP|g" -e "s|@LISTEN@|$LISTEN|g")
	for i in 0 1 2 3; do args+=(-e "s|@P$i@|${SHARD_PORTS[$i]}|g"); done
	for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
	sed "${args[@]}" "$tmpl" >"$out"
}

start_backends() {
	mkdir -p "$TMP/backends_body"
	render "$BENCH/config/backends.conf" "$TMP/backends.conf"
	"${ON_LOAD_CPU[@]}" nginx -c "$TMP/backends.conf" -g 'daemon off;' &
	PIDS+=($!)
	for p in "${SHARD_PORTS[@]}"; do wait_port "$p"; done
}

# --- systems -------------------------------------------------------------------

# key_rule SCENARIO: shard-proxy's --key for the scenario.
key_rule() {
	case $1 in
	header) echo "header:X-Shard-Key" ;;
	path) echo "path:/accounts/{key}" ;;
	body) echo "body:account.id" ;;
	esac
}

# unsupported SYSTEM SCENARIO: prints why the pair cannot be measured, if so.
unsupported() {
	case $1/$2 in
	nginx/body) echo "unsupported: nginx cannot hash on a JSON body field without the njs or lua module" ;;
	caddy/body) echo "unsupported: Caddy cannot hash on a JSON body field without a plugin" ;;
	haproxy/body) [ -n "$HAPROXY_BODY" ] || echo "unsupported: this HAProxy rejects req.body,json_query ($HAPROXY_BODY_ERR)" ;;
	esac
}

# haproxy_balance SCENARIO: the balance line equivalent to shard-proxy's rule.
haproxy_balance() {
	case $1 in
	header) echo "balance hdr(X-Shard-Key)" ;;
	# The third /-separated field of /accounts/<key>[/...] is the key, as
	# shard-proxy's path:/accounts/{key} takes it (balance hash: HAProxy 2.6+).
	path) echo "balance hash path,field(3,/)" ;;
	body) echo "balance hash req.body,json_query('\$.account.id')" ;;
	esac
}

render_haproxy() {
	local buffer=
	[ "$1" = body ] && buffer="option http-buffer-request"
	render "$BENCH/config/haproxy.cfg" "$2" "BALANCE=$(haproxy_balance "$1")" "BUFFER=$buffer"
}

# HAProxy 2.6 has json_query; older ones do not. Check once, so the body
# scenario says why it is missing instead of failing.
check_haproxy_body() {
	HAPROXY_BODY=yes HAPROXY_BODY_ERR=
	render_haproxy body "$TMP/haproxy-check.cfg"
	if ! HAPROXY_BODY_ERR=$(haproxy -c -q -f "$TMP/haproxy-check.cfg" 2>&1); then
		HAPROXY_BODY= HAPROXY_BODY_ERR=$(echo "$HAPROXY_BODY_ERR" | grep -m1 -i alert || echo "config check failed")
	fi
}

# start_system SYSTEM SCENARIO: start the proxy pinned on the proxy CPU; sets
# TARGET (port wrk hits) and MEASURED_PID (process whose RSS is reported).
start_system() {
	local sys=$1 sc=$2
	TARGET=$LISTEN MEASURED_PID=
	port_free "$LISTEN" || die "port $LISTEN is taken (set BENCH_PORT)"
	case $sys in
	direct)
		TARGET=${SHARD_PORTS[0]}
		return
		;;
	shard-proxy | candidate)
		"${ON_PROXY_CPU[@]}" "$TMP/$sys" --shards "$SHARDS_FLAG" \
			--listen "127.0.0.1:$LISTEN" --admin-listen "127.0.0.1:$ADMIN" \
			--key "$(key_rule "$sc")" --log-level warn 2>>"$TMP/$sys.log" &
		MEASURED_PID=$!
		;;
	haproxy)
		render_haproxy "$sc" "$TMP/haproxy.cfg"
		"${ON_PROXY_CPU[@]}" haproxy -db -f "$TMP/haproxy.cfg" 2>>"$TMP/haproxy.log" &
		MEASURED_PID=$!
		;;
	nginx)
		mkdir -p "$TMP/nginx_body" "$TMP/nginx_proxy"
		local key='$http_x_shard_key'
		[ "$sc" = path ] && key='$account_from_path'
		render "$BENCH/config/nginx.conf" "$TMP/nginx.conf" "HASHKEY=$key"
		# master_process off: the one process is the worker, so its PID is
		# the one to measure and to stop.
		"${ON_PROXY_CPU[@]}" nginx -c "$TMP/nginx.conf" -g 'daemon off; master_process off;' &
		MEASURED_PID=$!
		;;
	caddy)
		[ -n "${CADDY:-}" ] || die "caddy is not installed (go install github.com/caddyserver/caddy/v2/cmd/caddy@$BENCH_CADDY_VERSION)"
		local hdr=X-Shard-Key
		[ "$sc" = path ] && hdr=X-Shard-Path-Key
		render "$BENCH/config/Caddyfile" "$TMP/Caddyfile" "HASHHEADER=$hdr"
		# Caddy's storage and config dirs go to the run's temp dir.
		XDG_DATA_HOME=$TMP/caddy XDG_CONFIG_HOME=$TMP/caddy "${ON_PROXY_CPU[@]}" \
			"$CADDY" run --config "$TMP/Caddyfile" --adapter caddyfile 2>>"$TMP/caddy.log" &
		MEASURED_PID=$!
		;;
	esac
	PIDS+=("$MEASURED_PID")
	wait_port "$LISTEN"
}

# sanity SYSTEM SCENARIO: a few keys through the system before loading it:
# every answer 200, a key always lands on the same shard, and keys spread.
sanity() {
	local sys=$1 sc=$2 k b shards="" i
	for i in $(seq 1 12); do
		k=$((1000000000 + RANDOM * 30011 + i))
		local first=""
		for _ in 1 2; do
			b=$(request "$sc" "$k") || die "$sys/$sc: key $k: $b"
			[ -z "$first" ] && first=$b
			[ "$b" = "$first" ] || die "$sys/$sc: key $k went to $first, then to $b"
		done
		shards="$shards $first"
	done
	local spread
	spread=$(tr ' ' '\n' <<<"$shards" | sort -u | grep -c . || true)
	if [ "$sys" != direct ] && [ "$spread" -lt 2 ]; then
		die "$sys/$sc: 12 keys all went to shard$shards; the key is not being hashed"
	fi
}

# request SCENARIO KEY: one request like wrk's; prints the answering shard port.
request() {
	local sc=$1 k=$2 out url="http://127.0.0.1:$TARGET"
	case $sc in
	header) out=$(curl -sS -o /dev/null -D - -H "X-Shard-Key: $k" "$url/" 2>&1) ;;
	path) out=$(curl -sS -o /dev/null -D - "$url/accounts/$k" 2>&1) ;;
	body) out=$(curl -sS -o /dev/null -D - -H 'Content-Type: application/json' \
		--data "{\"type\":\"deposit\",\"account\":{\"region\":\"eu\",\"id\":\"$k\"},\"note\":\"x\"}" "$url/" 2>&1) ;;
	esac
	local status
	status=$(awk 'NR==1 {print $2}' <<<"$out")
	[ "$status" = 200 ] || { echo "status ${status:-none}: $(head -c 200 <<<"$out")"; return 1; }
	awk -F': ' 'tolower($1)=="x-backend" {gsub("\r",""); print $2}' <<<"$out"
}

# load SCENARIO SECONDS: run wrk on the load CPU against TARGET, print its BENCH line.
load() {
	BENCH_SCENARIO=$1 BENCH_SEED=$BENCH_SEED "${ON_LOAD_CPU[@]}" \
		wrk -t1 -c"$BENCH_CONNECTIONS" -d"$2s" --timeout 5s -s "$BENCH/wrk/shard.lua" \
		"http://127.0.0.1:$TARGET/" | grep '^BENCH ' || die "wrk printed no BENCH line"
}

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# hwm PID: peak resident set in KiB.
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# rotate N WORDS...: WORDS starting at the (N-1)th, wrapping around.
rotate() {
	local n=$1
	shift
	local words=("$@") i
	for ((i = 0; i < ${#words[@]}; i++)); do
		echo "${words[$(((n - 1 + i) % ${#words[@]}))]}"
	done
}

# cpu_ticks PID: CPU time (user + system, all threads) used so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

measure() {
	local round=$1 sys=$2 sc=$3 why line
	why=$(unsupported "$sys" "$sc")
	if [ -n "$why" ]; then
		log "round $round: $sys/$sc: $why"
		printf '%s\t%s\t%s\t0\t0\t0\t0\t0\t0\t0\t0\t%s\n' "$round" "$sys" "$sc" "$why" >>"$TSV"
		return
	fi
	start_system "$sys" "$sc"
	sanity "$sys" "$sc"
	[ "$BENCH_WARMUP" -gt 0 ] && load "$sc" "$BENCH_WARMUP" >/dev/null
	local load1 t0=0 t1=0 w0 w1
	load1=$(cut -d' ' -f1 /proc/loadavg)
	[ -n "$MEASURED_PID" ] && t0=$(cpu_ticks "$MEASURED_PID")
	w0=$(date +%s%N)
	line=$(load "$sc" "$BENCH_DURATION")
	w1=$(date +%s%N)
	[ -n "$MEASURED_PID" ] && t1=$(cpu_ticks "$MEASURED_PID")
	local rss=0
	[ -n "$MEASURED_PID" ] && rss=$(hwm "$MEASURED_PID")
	[ -n "$MEASURED_PID" ] && stop_pid "$MEASURED_PID"
	local errs=0 e
	for e in connect read write status timeout; do errs=$((errs + $(field "err_$e" "$line"))); done
	# CPU time per request and the share of its core the proxy got: the
	# first is what the proxy costs, and it holds steady when other load
	# takes the core away, which req/s does not.
	local cpu_us util
	cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$(field requests "$line")" 'BEGIN { printf "%.2f", (n > 0) ? t * 1e6 / hz / n : 0 }')
	util=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v ns=$((w1 - w0)) 'BEGIN { printf "%.3f", t / hz / (ns / 1e9) }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' "$round" "$sys" "$sc" \
		"$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" \
		"$errs" "$rss" "$cpu_us" "$util" "$load1" >>"$TSV"
	log "round $round: $(awk -v sys="$sys" -v sc="$sc" -v rps="$(field rps "$line")" \
		-v p50="$(field p50_us "$line")" -v p99="$(field p99_us "$line")" -v errs="$errs" -v rss="$rss" \
		-v cpu="$cpu_us" -v util="$util" -v l="$load1" \
		'BEGIN { printf "%-11s %-6s %6.0f req/s  p50 %6.3f ms  p99 %7.3f ms  errors %d", sys, sc, rps, p50/1000, p99/1000, errs
			if (rss > 0) printf "  CPU %5.1f us/req (%3.0f%% of a core)  peak RSS %4.1f MiB", cpu, util*100, rss/1024
			printf "  load %s", l }')"
}

machine() {
	local virt=""
	grep -qw hypervisor /proc/cpuinfo && virt=", virtual machine"
	echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1) (family $(sed -n 's/^cpu family\s*: //p' /proc/cpuinfo | head -1), model $(sed -n 's/^model\s*: //p' /proc/cpuinfo | head -1), $(sed -n 's/^cpu MHz\s*: \([0-9]*\).*/\1/p' /proc/cpuinfo | head -1) MHz$virt), kernel $(uname -r)"
	echo "- pinning: each proxy alone on CPU $BENCH_PROXY_CPU; wrk (1 thread) and the 4 nginx shards (1 worker) on CPU $BENCH_LOAD_CPU; all at nice $BENCH_NICE"
	echo "- load: wrk, $BENCH_CONNECTIONS keep-alive connections, ${BENCH_WARMUP}s warm-up then ${BENCH_DURATION}s measured, a random key on every request (seed $BENCH_SEED)"
	echo "- versions: $(shard_proxy_version), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3)$(caddy_version), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(go version | cut -d' ' -f3)"
}

# bench_build OUT PKG: build a program of the bench module. A throw-away
# workspace with the main module makes it compile against the main module's
# current requirements, so bench/go.sum going stale when the main module
# gains a dependency cannot break the benchmark.
bench_build() {
	[ -f "$TMP/go.work" ] || (cd "$TMP" && go work init "$ROOT" "$BENCH")
	(cd "$BENCH" && GOWORK="$TMP/go.work" go build -o "$1" "$2")
}

# build_candidate VAR: with BENCH_CANDIDATE set, builds $TMP/candidate from
# that checkout and adds "candidate" to the systems list named VAR.
build_candidate() {
	[ -n "$BENCH_CANDIDATE" ] || return 0
	log "building the candidate from $BENCH_CANDIDATE"
	(cd "$BENCH_CANDIDATE" && go build -o "$TMP/candidate" ./cmd/shard-proxy)
	case " ${!1} " in *" candidate "*) ;; *) printf -v "$1" '%s candidate' "${!1}" ;; esac
}

# build_shard_proxy: $TMP/shard-proxy, from SHARD_PROXY_BIN if set, else
# built from this checkout.
build_shard_proxy() {
	if [ -n "$SHARD_PROXY_BIN" ]; then
		[ -x "$SHARD_PROXY_BIN" ] || die "SHARD_PROXY_BIN=$SHARD_PROXY_BIN is not an executable"
		log "measuring shard-proxy from $SHARD_PROXY_BIN"
		cp "$SHARD_PROXY_BIN" "$TMP/shard-proxy"
	else
		go build -o "$TMP/shard-proxy" ./cmd/shard-proxy
	fi
}

# shard_proxy_version: what the versions line says about shard-proxy.
shard_proxy_version() {
	local rev
	rev=$(go version -m "$TMP/shard-proxy" 2>/dev/null | awk '$2 == "vcs.revision" {r = substr($3, 1, 7)} $2 == "vcs.modified" && $3 == "true" {m = "+dirty"} END {if (r != "") print r m}')
	if [ -n "$SHARD_PROXY_BIN" ] && [ -f "$TMP/shard-proxy" ]; then
		echo "shard-proxy ${rev:-$SHARD_PROXY_BIN} (SHARD_PROXY_BIN, built $(date -u -r "$SHARD_PROXY_BIN" +%Y-%m-%dT%H:%MZ))"
	else
		echo "shard-proxy $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+dirty')"
	fi
}

build() {
	log "building shard-proxy and the report tool"
	build_shard_proxy
	bench_build "$TMP/report" ./cmd/report
	build_candidate BENCH_SYSTEMS
}

# publish: the comparison that bench/RESULTS.md and the README chart
# (bench/results.png) are made from: three rounds unless BENCH_ROUNDS says
# otherwise, every system and key, copied into place at the end.
publish() {
	BENCH_ROUNDS=${BENCH_ROUNDS_SET:-3}
	compare
	cp "$BENCH_OUT/latest.md" "$BENCH/RESULTS.md"
	cp "$BENCH_OUT/latest.png" "$BENCH/results.png"
	log "wrote $BENCH/RESULTS.md and $BENCH/results.png"
}

compare() {
	build
	mkdir -p "$BENCH_OUT"
	TSV="$BENCH_OUT/latest.tsv"
	echo "# round system scenario rps p50_us p99_us errors hwm_kib cpu_us_per_req cpu_util load1 note" >"$TSV"
	check_haproxy_body
	start_backends
	local started load_start
	started=$(date -u +%Y-%m-%dT%H:%MZ)
	load_start=$(cut -d' ' -f1-3 /proc/loadavg)
	local round sc sys
	for round in $(seq 1 "$BENCH_ROUNDS"); do
		for sc in $BENCH_SCENARIOS; do
			# Rotate who goes first each round, so that no system always
			# follows the same neighbour or meets the same phase of the
			# machine's other load.
			for sys in $(rotate "$round" $BENCH_SYSTEMS); do
				measure "$round" "$sys" "$sc"
			done
		done
	done
	{
		echo "# shard-proxy side-by-side benchmark"
		echo
		echo "- run: $started, $BENCH_ROUNDS round(s); load average (1/5/15 min) at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
		machine
		echo "- ratios compare each system with HAProxy on the same scenario in the same round; absolute numbers drift with the machine's other load"
		echo
		"$TMP/report" -in "$TSV" -png "$BENCH_OUT/latest.png"
	} >"$BENCH_OUT/latest.md.tmp"
	mv "$BENCH_OUT/latest.md.tmp" "$BENCH_OUT/latest.md"
	log "wrote $BENCH_OUT/latest.md and $BENCH_OUT/latest.png"
	cat "$BENCH_OUT/latest.md"
}

profile() {
	local PSC=$BENCH_PROFILE_SCENARIO
	log "building the profiling harness"
	bench_build "$TMP/profile" ./cmd/profile
	mkdir -p "$BENCH_OUT"
	local out="$BENCH_OUT"
	start_backends
	port_free "$LISTEN" || die "port $LISTEN is taken (set BENCH_PORT)"
	"${ON_PROXY_CPU[@]}" "$TMP/profile" -shards "$SHARDS_FLAG" -listen "127.0.0.1:$LISTEN" \
		-key "$(key_rule "$PSC")" -cpuprofile "$out/cpu.pprof" \
		-heapbase "$TMP/heap-base.pprof" -heapprofile "$out/heap.pprof" >"$TMP/profile.out" &
	local pid=$!
	PIDS+=("$pid")
	wait_port "$LISTEN"
	TARGET=$LISTEN
	sanity shard-proxy "$PSC"
	load "$PSC" "$BENCH_WARMUP" >/dev/null
	kill -USR1 "$pid"
	local line load1 perfpid=
	load1=$(cut -d' ' -f1 /proc/loadavg)
	# Syscalls per request tell how much of the kernel time is the proxy's
	# own doing; perf (Debian's linux-perf) is optional.
	if command -v perf >/dev/null 2>&1; then
		perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_epoll_pwait \
			-p "$pid" -o "$TMP/perf.csv" -- sleep "$BENCH_DURATION" 2>/dev/null &
		perfpid=$!
	fi
	line=$(load "$PSC" "$BENCH_DURATION")
	[ -n "$perfpid" ] && { wait "$perfpid" || true; }
	kill -TERM "$pid"
	wait "$pid" || true
	stop_pid "$pid"
	local perline=""
	if [ -s "$TMP/perf.csv" ]; then
		perline=$(awk -F, -v n="$(field requests "$(cat "$TMP/profile.out")")" '
			$1 ~ /^[0-9.]+$/ { name = $3; sub(/^(raw_)?syscalls:sys_enter_?/, "", name); if (name == "") name = "syscalls"
				printf "%s %s=%.3f", sep, name, (name == "task-clock") ? $1 * 1000 / n : $1 / n; sep = "," }
			END { print "" }' "$TMP/perf.csv")
	fi
	{
		echo "# shard-proxy data-plane profile, $PSC key"
		echo
		machine
		echo "- load average (1 min) when measured: $load1"
		echo "- wrk: $line"
		echo "- harness: $(cat "$TMP/profile.out")"
		[ -n "$perline" ] && echo "- per request (perf stat, task-clock in µs):$perline"
		echo
		echo '## CPU (top 30 by flat time)'
		echo
		echo '```'
		go tool pprof -top -nodecount=30 "$TMP/profile" "$out/cpu.pprof" 2>/dev/null
		echo '```'
		echo
		echo '## CPU (top 30 by cumulative time)'
		echo
		echo '```'
		go tool pprof -top -cum -nodecount=30 "$TMP/profile" "$out/cpu.pprof" 2>/dev/null
		echo '```'
		echo
		echo '## Allocations in the measured window (objects, sampled)'
		echo
		echo '```'
		go tool pprof -top -sample_index=alloc_objects -nodecount=20 -base "$TMP/heap-base.pprof" \
			"$TMP/profile" "$out/heap.pprof" 2>/dev/null
		echo '```'
	} >"$out/profile.md"
	log "wrote $out/profile.md, $out/cpu.pprof and $out/heap.pprof"
	cat "$out/profile.md"
}

# --- accesslog mode ----------------------------------------------------------------
#
# The profile harness (the data plane in-process, as cmd/shard-proxy wires
# it) with and without --access-log to a file, alternating, BENCH_ROUNDS
# times; the harness counts requests and allocations in the measured window.

accesslog_run() { # accesslog_run off|file|trace1|trace100: one window; prints "rps allocs_per_req cpu_us_per_req"
	local mode=$1 args=() pid line
	case $mode in
	file) args=(-access-log "$TMP/access.log") ;;
	trace1) args=(-trace-ratio 0.01) ;;   # --tracing otlp at the default sampling
	trace100) args=(-trace-ratio 1) ;;
	esac
	port_free "$LISTEN" || die "port $LISTEN is taken (set BENCH_PORT)"
	"${ON_PROXY_CPU[@]}" "$TMP/profile" -shards "$SHARDS_FLAG" -listen "127.0.0.1:$LISTEN" -key "$(key_rule header)" \
		-cpuprofile "$TMP/al-cpu.pprof" -heapbase "$TMP/al-base.pprof" -heapprofile "$TMP/al-heap.pprof" \
		"${args[@]}" >"$TMP/al.out" 2>>"$TMP/al.log" &
	pid=$!
	PIDS+=("$pid")
	wait_port "$LISTEN"
	TARGET=$LISTEN
	load header "$BENCH_WARMUP" >/dev/null
	kill -USR1 "$pid"
	line=$(load header "$BENCH_DURATION")
	kill -TERM "$pid"
	wait "$pid" || true
	stop_pid "$pid"
	echo "$(field rps "$line") $(field allocs_per_req "$(cat "$TMP/al.out")") $(field cpu_us_per_req "$(cat "$TMP/al.out")")"
}

accesslog() {
	log "building the profiling harness"
	bench_build "$TMP/profile" ./cmd/profile
	mkdir -p "$BENCH_OUT"
	start_backends
	local started round mode r rows="" lines rps allocs cpu
	started=$(date -u +%Y-%m-%dT%H:%MZ)
	for round in $(seq 1 "$BENCH_ROUNDS"); do
		for mode in $(rotate "$round" $BENCH_AL_MODES); do
			rm -f "$TMP/access.log"
			r=$(accesslog_run "$mode")
			lines=0
			[ "$mode" = file ] && lines=$(wc -l <"$TMP/access.log")
			read -r rps allocs cpu <<<"$r"
			rows+="| $round | $mode | $rps | $allocs | $cpu | $lines |"$'\n'
			log "round $round, access log $mode: rps allocs/req = $r, lines $lines"
		done
	done
	{
		echo "# shard-proxy access log cost, header key"
		echo
		echo "- run: $started, $BENCH_ROUNDS round(s), ${BENCH_DURATION}s each, wrk -c$BENCH_CONNECTIONS; load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
		machine
		echo
		echo "| round | access log | req/s | allocs/request | CPU µs/request | lines written |"
		echo "|---|---|---|---|---|---|"
		printf '%s' "$rows"
		echo
		printf '%s' "$rows" | awk -F'|' '{gsub(/ /, "", $3); r[$3] += $4; c[$3] += $6; n[$3]++}
			END { for (m in n) if (m != "off" && n["off"]) printf "- %s/off: req/s ratio %.3f, CPU per request ratio %.3f (means of the rounds)\n", m, (r[m] / n[m]) / (r["off"] / n["off"]), (c[m] / n[m]) / (c["off"] / n["off"]) }'
	} >"$BENCH_OUT/accesslog.md"
	log "wrote $BENCH_OUT/accesslog.md"
	cat "$BENCH_OUT/accesslog.md"
}

# --- memory mode ------------------------------------------------------------------
#
# Every system is restarted for every test, so its VmHWM is that test's peak
# and no test inherits another's heap. The shards are bench/cmd/shard (one
# process, four ports) and the load is bench/cmd/memload, both on the load
# CPU; memload reads the proxy's /proc/PID/status itself and prints one
# BENCH line per test, collected in memory.txt.

memory_build() {
	log "building shard-proxy, the shard and the load tool"
	build_shard_proxy
	bench_build "$TMP/memload" ./cmd/memload
	bench_build "$TMP/shard" ./cmd/shard
	build_candidate BENCH_MEM_SYSTEMS
	# Today's shard-proxy buffers bodies up to --max-body-bytes (4 MiB by
	# default): give it room for the upload tests, as nginx gets
	# client_max_body_size. A build without the flag gets none.
	local sys
	for sys in shard-proxy candidate; do
		[ -x "$TMP/$sys" ] || continue
		# (--help exits non-zero: no pipe, pipefail would see it.)
		if grep -q -- '-max-body-bytes' <<<"$("$TMP/$sys" --help 2>&1 || true)"; then
			eval "SP_MEM_ARGS_${sys//-/_}=(--max-body-bytes ${BENCH_MEM_MAX_BODY_MIB}MiB $BENCH_SP_ARGS)"
		else
			eval "SP_MEM_ARGS_${sys//-/_}=($BENCH_SP_ARGS)"
		fi
	done
}

# memory_fd_limit: the idle test needs as many descriptors in the proxy as
# it holds connections, plus some. Raise the limit as far as allowed; if it
# stays below, hold fewer connections and say so (IDLE_NOTE).
memory_fd_limit() {
	local most=$((BENCH_IDLE_CONNS > BENCH_H2IDLE_CONNS ? BENCH_IDLE_CONNS : BENCH_H2IDLE_CONNS))
	local want=$((most + 512)) soft
	soft=$(ulimit -n)
	if [ "$soft" != unlimited ] && [ "$soft" -lt "$want" ]; then
		ulimit -n "$want" 2>/dev/null || { ulimit -Hn "$want" && ulimit -n "$want"; } 2>/dev/null ||
			ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
		soft=$(ulimit -n)
	fi
	IDLE_CONNS=$BENCH_IDLE_CONNS H2IDLE_CONNS=$BENCH_H2IDLE_CONNS IDLE_NOTE=
	if [ "$soft" != unlimited ] && [ "$soft" -lt "$want" ]; then
		local t n
		for t in idle h2idle; do
			local -n conns="${t^^}_CONNS" asked="BENCH_${t^^}_CONNS"
			[ "$conns" -gt $((soft - 512)) ] || continue
			conns=$((soft - 512))
			case " $BENCH_MEM_TESTS " in *" $t "*)
				n="the open-file limit here is $soft and could not be raised (hard limit $(ulimit -Hn)), so the $t test holds $conns connections, not $asked"
				IDLE_NOTE="${IDLE_NOTE:+$IDLE_NOTE; }$n"
				log "$n"
				;;
			esac
		done
	fi
	most=$((IDLE_CONNS > H2IDLE_CONNS ? IDLE_CONNS : H2IDLE_CONNS))
	# Room for the connections beyond the idle tests' (to the shards).
	MEM_MAXCONN=$((most + 1024))
	# nginx starts closing idle keep-alive connections to make room once
	# fewer than 1/16 of its worker_connections are free: keep above that.
	NGINX_CONNS=$((most + most / 8 + 1024))
}

start_memory_shards() {
	local addrs
	addrs=$(printf '127.0.0.1:%s,' "${SHARD_PORTS[@]}")
	"${ON_LOAD_CPU[@]}" "$TMP/shard" -listen "${addrs%,}" 2>>"$TMP/shard.log" &
	PIDS+=($!)
	for p in "${SHARD_PORTS[@]}"; do wait_port "$p"; done
}

# running PID: the process exists and is not a zombie. (bash reaps its
# children on its own, so /proc/PID can vanish at any moment: one read.)
running() {
	local state
	state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || true
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# mem_stop PID: stop a proxy, by SIGKILL if it does not go within 5 s;
# sets MEM_RC to its exit status.
mem_stop() {
	local pid=$1 i
	kill "$pid" 2>/dev/null || true
	for i in $(seq 1 50); do
		running "$pid" || break
		sleep 0.1
	done
	if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
	MEM_RC=0
	wait "$pid" 2>/dev/null || MEM_RC=$?
	stop_pid "$pid"
}

# await_listen: take the proxy just started in the background ($!) as
# MEASURED_PID and wait up to 5 s for it to accept on LISTEN; 1 if it died
# or does not.
await_listen() {
	local i
	MEASURED_PID=$!
	PIDS+=("$MEASURED_PID")
	for i in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$LISTEN") 2>/dev/null && break
		running "$MEASURED_PID" || break
		sleep 0.05
	done
	running "$MEASURED_PID" && ! port_free "$LISTEN"
}

# last_lines LOG: the last two non-blank lines of LOG, for an error message.
last_lines() { grep -v '^\s*$' "$1" | tail -2; }

# quote S: S as a double-quoted value of a BENCH line, on one line.
quote() {
	local s
	s=$(tr '\n\t' '  ' <<<"$1" | sed 's/ *$//')
	s=${s//\\/\\\\}
	printf '"%s"' "${s//\"/\\\"}"
}

# mem_start SYSTEM LOG [TEST]: start the proxy on the proxy CPU and check that it
# routes; sets MEASURED_PID, or MEM_ERR and returns 1. For h2stall and h2idle, HAProxy
# and nginx listen for h2c with prior knowledge (shard-proxy takes both on
# one port), and the check speaks it.
mem_start() {
	local sys=$1 plog=$2 t=${3:-} h2=
	case $t in h2stall | h2idle) h2=yes ;; esac
	MEASURED_PID= MEM_ERR=
	TARGET=$LISTEN
	port_free "$LISTEN" || { MEM_ERR="port $LISTEN is taken"; return 1; }
	case $sys in
	shard-proxy | candidate)
		local -n args="SP_MEM_ARGS_${sys//-/_}"
		"${ON_PROXY_CPU[@]}" "$TMP/$sys" --shards "$SHARDS_FLAG" \
			--listen "127.0.0.1:$LISTEN" --admin-listen "127.0.0.1:$ADMIN" \
			--key header:X-Shard-Key --log-level warn "${args[@]}" 2>>"$plog" &
		;;
	haproxy)
		local nodelay=
		[ "$BENCH_HAPROXY_NODELAY" = 1 ] && nodelay="option http-no-delay"
		render "$BENCH/config/haproxy-memory.cfg" "$TMP/haproxy-memory.cfg" "MAXCONN=$MEM_MAXCONN" "NODELAY=$nodelay" \
			"BINDOPTS=${h2:+proto h2}"
		"${ON_PROXY_CPU[@]}" haproxy -db -f "$TMP/haproxy-memory.cfg" 2>>"$plog" &
		;;
	nginx)
		mkdir -p "$TMP/nginx_body" "$TMP/nginx_proxy"
		render "$BENCH/config/nginx-memory.conf" "$TMP/nginx-memory.conf" \
			"WORKER_CONNECTIONS=$NGINX_CONNS" "MAX_BODY=${BENCH_MEM_MAX_BODY_MIB}m" "HTTP2=${h2:+http2}"
		"${ON_PROXY_CPU[@]}" nginx -c "$TMP/nginx-memory.conf" -g 'daemon off; master_process off;' 2>>"$plog" &
		;;
	*)
		MEM_ERR="unknown system $sys"
		return 1
		;;
	esac
	if ! await_listen; then
		MEM_ERR="did not start: $(last_lines "$plog")"
		mem_stop "$MEASURED_PID"
		return 1
	fi
	# The routing check of the side-by-side runs; in a subshell, so that a
	# failure costs this test, not the run. Over h2c for h2stall and h2idle: curl is
	# wrapped in the subshell only, so request() stays as it is.
	if ! (
		[ -z "$h2" ] || curl() { command curl --http2-prior-knowledge "$@"; }
		sanity "$sys" header
	) 2>"$TMP/sanity.err"; then
		MEM_ERR="sanity check failed: $(sed 's/^\[bench [0-9:]*\] error: //' "$TMP/sanity.err" | tail -1)"
		mem_stop "$MEASURED_PID"
		return 1
	fi
}

# mem_measure SYSTEM TEST N: one test on a freshly started system (the N-th
# system of the run: it picks the idle test's source addresses).
mem_measure() {
	local sys=$1 t=$2 n=$3 args=()
	case $t in
	stream) args=(stream -path "/stream?chunks=$BENCH_STREAM_CHUNKS&gap=$BENCH_STREAM_GAP") ;;
	sse) args=(stream -test sse -path "/sse?events=$BENCH_STREAM_CHUNKS&gap=$BENCH_STREAM_GAP") ;;
	download) args=(download -bytes "$BENCH_MEM_BYTES") ;;
	download50) args=(download -test download50 -bytes "$BENCH_MEM_BYTES" -clients "$BENCH_DOWNLOADS" -after "${BENCH_AFTER}s") ;;
	upload) args=(upload -bytes "$BENCH_MEM_BYTES") ;;
	slowupload) args=(slowupload -clients "$BENCH_SLOW_CLIENTS" -bytes "$BENCH_SLOW_BYTES" -chunk "$BENCH_SLOW_CHUNK" -gap "$BENCH_SLOW_GAP") ;;
	# Each system's workers connect from their own loopback addresses, so
	# that the previous system's TIME_WAIT sockets are not in the way.
	idle) args=(idle -conns "$IDLE_CONNS" -procs "$BENCH_IDLE_PROCS" -src-base $((2 + n * BENCH_IDLE_PROCS))) ;;
	# From addresses of its own (127.0.0.128 up), clear of the idle test's.
	h2idle) args=(idle -test h2idle -proto h2 -conns "$H2IDLE_CONNS" -procs "$BENCH_IDLE_PROCS"
		-src-base $((128 + n * BENCH_IDLE_PROCS))) ;;
	hugecl) args=(hugecl -stall "$BENCH_HUGECL_STALL") ;;
	hung) args=(hung -clients "$BENCH_HUNG_CLIENTS" -hold "$BENCH_HUNG_HOLD") ;;
	h2stall) args=(h2stall -conns "$BENCH_H2STALL_CONNS" -streams "$BENCH_H2STALL_STREAMS" -bytes "$BENCH_H2STALL_BYTES"
		-hold "$BENCH_H2STALL_HOLD" -after "$BENCH_H2STALL_AFTER") ;;
	slowshard | blackhole)
		local mode=slow
		[ "$t" = blackhole ] && mode=blackhole
		args=(stallshard -test "$t" -mode "$mode" -stall "127.0.0.1:${SHARD_PORTS[$BENCH_STALL_SHARD]}"
			-clients "$BENCH_STALL_CLIENTS" -rate "$BENCH_STALL_RATE" -duration "$BENCH_STALL_DURATION" -delay "$BENCH_STALL_DELAY")
		;;
	*)
		log "unknown memory test $t (want some of: stream sse download download50 upload slowupload idle h2idle hugecl hung h2stall slowshard blackhole)"
		return
		;;
	esac
	local plog="$TMP/$sys-$t.log" line
	if ! mem_start "$sys" "$plog" "$t"; then
		log "$sys/$t: $MEM_ERR"
		echo "BENCH system=$sys test=$t note=$(quote "$MEM_ERR")" >>"$MEM_RAW"
		return
	fi
	line=$(CLK_TCK=$CLK_TCK timeout --foreground -k 5 "$BENCH_MEM_TIMEOUT" "${ON_LOAD_CPU[@]}" "$TMP/memload" "${args[@]}" \
		-system "$sys" -addr "127.0.0.1:$LISTEN" -pid "$MEASURED_PID" -guard-mib "$BENCH_RSS_GUARD_MIB" \
		-timeout "$((BENCH_MEM_TIMEOUT - 10))s" 2>>"$TMP/memload.log" | grep '^BENCH ' | tail -1) || true
	local died=
	running "$MEASURED_PID" || died=yes
	mem_stop "$MEASURED_PID"
	if [ -z "$line" ]; then
		line="BENCH system=$sys test=$t note=$(quote "the load tool gave no result within ${BENCH_MEM_TIMEOUT}s: $(tail -1 "$TMP/memload.log")")"
	elif [ -n "$died" ]; then
		# What the proxy said on its way out (Go's "fatal error: ...",
		# HAProxy's or nginx's alert), for the notes.
		line="$line exit_status=$MEM_RC last_words=$(quote "$(awk 'NF && tolower($0) ~ /fatal|panic|alert|emerg|crit|out of memory|killed/ {print; found = 1; exit}
			NF {last = $0} END {if (!found) print last}' "$plog")")"
	fi
	echo "$line" >>"$MEM_RAW"
	log "$sys/$t: ${line#BENCH }"
}

memory() {
	memory_build
	memory_fd_limit
	mkdir -p "$BENCH_OUT"
	MEM_RAW="$BENCH_OUT/memory.txt"
	: >"$MEM_RAW"
	start_memory_shards
	local started load_start t sys ti=0 n
	started=$(date -u +%Y-%m-%dT%H:%MZ)
	load_start=$(cut -d' ' -f1-3 /proc/loadavg)
	for t in $BENCH_MEM_TESTS; do
		ti=$((ti + 1))
		n=0
		# Rotate who goes first from test to test.
		for sys in $(rotate "$ti" $BENCH_MEM_SYSTEMS); do
			mem_measure "$sys" "$t" "$n"
			n=$((n + 1))
		done
	done
	local sp_args="${SP_MEM_ARGS_shard_proxy[*]}"
	{
		echo "# shard-proxy streaming and memory benchmark"
		echo
		echo "- run: $started; load average (1/5/15 min) at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
		machine | sed -n 1p
		echo "- pinning: each proxy alone on CPU $BENCH_PROXY_CPU, restarted for every test (its peak RSS is that test's); the four shards (bench/cmd/shard, one process) and the load (bench/cmd/memload) on CPU $BENCH_LOAD_CPU; all at nice $BENCH_NICE"
		echo "- versions: $(shard_proxy_version), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3), $(go version | cut -d' ' -f3)"
		echo "- shard-proxy: \`--key header:X-Shard-Key${sp_args:+ $sp_args}\`; HAProxy: config/haproxy-memory.cfg (nbthread 1, tune.bufsize 16384, maxconn $MEM_MAXCONN, $([ "$BENCH_HAPROXY_NODELAY" = 1 ] && echo "option http-no-delay, " || echo "no http-no-delay (its default), ")streams bodies); nginx: config/nginx-memory.conf (defaults: proxy_buffering and proxy_request_buffering on; client_max_body_size ${BENCH_MEM_MAX_BODY_MIB}m, worker_connections $NGINX_CONNS)"
		echo "- routing as the header scenario: every request carries X-Shard-Key, hashed onto the four shards"
		echo "- peak RSS is VmHWM of the proxy process at the end of the test; \"RSS after\" and the idle test's figures are VmRSS. A proxy whose RSS passes ${BENCH_RSS_GUARD_MIB} MiB is killed (the RSS guard)"
		[ -n "$IDLE_NOTE" ] && echo "- $IDLE_NOTE"
		case " $BENCH_MEM_TESTS " in *" h2stall "* | *" h2idle "*)
			echo "- h2stall, h2idle: HAProxy with \`bind ... proto h2\`, nginx with \`listen ... http2\` (h2c with prior knowledge, HTTP/1.1 to the shards, otherwise the configs above); shard-proxy as above (it takes h2c on the same port)" ;;
		esac
		case " $BENCH_MEM_TESTS " in *" slowshard "* | *" blackhole "*)
			echo "- slowshard, blackhole: the stalled shard is shard $BENCH_STALL_SHARD (port ${SHARD_PORTS[$BENCH_STALL_SHARD]}); $BENCH_STALL_CLIENTS clients at $BENCH_STALL_RATE requests/s in all (0: back to back), phases of $BENCH_STALL_DURATION" ;;
		esac
		echo "- ratios compare each system with HAProxy in the same run; the raw lines are in memory.txt"
		echo
		"$TMP/memload" report -in "$MEM_RAW"
	} >"$BENCH_OUT/memory.md.tmp"
	mv "$BENCH_OUT/memory.md.tmp" "$BENCH_OUT/memory.md"
	# What the proxies and the load tool said, per test, for a closer look.
	rm -rf "$BENCH_OUT/memory-logs"
	mkdir -p "$BENCH_OUT/memory-logs"
	cp "$TMP"/*.log "$BENCH_OUT/memory-logs/" 2>/dev/null || true
	log "wrote $BENCH_OUT/memory.md (proxy and load-tool logs in $BENCH_OUT/memory-logs/)"
	cat "$BENCH_OUT/memory.md"
}

# --- gRPC mode --------------------------------------------------------------------
#
# gRPC unary calls through each proxy over HTTP/2 with prior knowledge (h2c),
# to four gRPC shards (bench/cmd/grpcshard, one process), the load from
# bench/cmd/grpcload; then, if h2load is there, plain HTTP/2 GETs through the
# same proxies to four plain nginx shards (config/backends-h2.conf), which
# the proxies reach over HTTP/1.1 (BENCH_H2_UPSTREAM=h2c: over h2c; nginx
# cannot). Shards and load on the load CPU, the proxy alone on the proxy
# CPU, as in the side-by-side runs. Each system is started for each scenario and checked
# with grpcload's sanity check first; one that fails to start or route is
# reported n/a with the reason, and the run goes on. grpcload measures the
# proxy's CPU time and peak RSS over the measured window itself (-pid) and
# prints one BENCH line per measurement, collected in grpc.txt.

# The plain shards of the h2 scenario: HTTP/1.1 on +11..+14 (the admin port
# is +10), the same shards over h2c on +15..+18.
H2_PORTS=($((BENCH_PORT + 11)) $((BENCH_PORT + 12)) $((BENCH_PORT + 13)) $((BENCH_PORT + 14)))
H2C_PORTS=($((BENCH_PORT + 15)) $((BENCH_PORT + 16)) $((BENCH_PORT + 17)) $((BENCH_PORT + 18)))
OTLP_SINK=$((BENCH_PORT + 19)) # the OTLP/HTTP receiver of the shard-proxy-trace* systems (grpcload otlpsink)

grpc_build() {
	log "building shard-proxy, the gRPC shard and the gRPC load tool"
	build_shard_proxy
	bench_build "$TMP/grpcload" ./cmd/grpcload
	bench_build "$TMP/grpcshard" ./cmd/grpcshard
	build_candidate BENCH_GRPC_SYSTEMS
	# h2load (Debian's nghttp2-client) is optional: without it the h2
	# scenario is skipped, and grpc.md says so.
	H2_NOTE=
	case " $BENCH_GRPC_SCENARIOS " in *" h2 "*)
		if ! command -v h2load >/dev/null 2>&1; then
			local sudo=
			[ "$(id -u)" -eq 0 ] || sudo=sudo
			log "installing nghttp2-client (h2load)"
			{ $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nghttp2-client; } >"$TMP/apt.log" 2>&1 || true
		fi
		if ! command -v h2load >/dev/null 2>&1; then
			H2_NOTE="h2load (Debian package nghttp2-client) is not installed and could not be: the plain HTTP/2 scenario was skipped"
			log "$H2_NOTE"
			BENCH_GRPC_SCENARIOS=$(tr ' ' '\n' <<<"$BENCH_GRPC_SCENARIOS" | { grep -vx h2 || true; } | tr '\n' ' ')
		fi
		;;
	esac
}

start_grpc_shards() {
	local g
	g=$(printf '127.0.0.1:%s,' "${SHARD_PORTS[@]}")
	"${ON_LOAD_CPU[@]}" "$TMP/grpcshard" -grpc "${g%,}" 2>>"$TMP/grpcshard.log" &
	PIDS+=($!)
	for p in "${SHARD_PORTS[@]}"; do wait_port "$p"; done
	case " $BENCH_GRPC_SCENARIOS " in *" h2 "*)
		mkdir -p "$TMP/backends_body"
		render "$BENCH/config/backends-h2.conf" "$TMP/backends-h2.conf" \
			"H0=${H2_PORTS[0]}" "H1=${H2_PORTS[1]}" "H2=${H2_PORTS[2]}" "H3=${H2_PORTS[3]}" \
			"C0=${H2C_PORTS[0]}" "C1=${H2C_PORTS[1]}" "C2=${H2C_PORTS[2]}" "C3=${H2C_PORTS[3]}"
		"${ON_LOAD_CPU[@]}" nginx -c "$TMP/backends-h2.conf" -g 'daemon off;' 2>>"$TMP/backends-h2.log" &
		PIDS+=($!)
		for p in "${H2_PORTS[@]}" "${H2C_PORTS[@]}"; do wait_port "$p"; done
		;;
	esac
	case " $BENCH_GRPC_SYSTEMS " in *" shard-proxy-trace"*)
		# The tracing systems' collector: reads and drops every batch, on
		# the load CPU.
		"${ON_LOAD_CPU[@]}" "$TMP/grpcload" otlpsink -listen "127.0.0.1:$OTLP_SINK" 2>>"$TMP/otlpsink.log" &
		OTLP_SINK_PID=$!
		PIDS+=($!)
		wait_port "$OTLP_SINK"
		;;
	esac
}

# grpc_start SYSTEM SCENARIO LOG: start the proxy on the proxy CPU; sets
# TARGET and MEASURED_PID (none for direct), or GRPC_ERR and returns 1.
grpc_start() {
	local sys=$1 sc=$2 plog=$3 ports proto=h2c
	MEASURED_PID= GRPC_ERR=
	TARGET=$LISTEN
	ports=("${SHARD_PORTS[@]}")
	if [ "$sc" = h2 ]; then
		case $BENCH_H2_UPSTREAM in
		http1) ports=("${H2_PORTS[@]}") proto=http1 ;;
		h2c) ports=("${H2C_PORTS[@]}") ;;
		*) GRPC_ERR="BENCH_H2_UPSTREAM=$BENCH_H2_UPSTREAM: want http1 or h2c"; return 1 ;;
		esac
	fi
	if [ "$sys" = direct ]; then
		# h2load straight to shard 0, over h2c as through the proxies.
		TARGET=${ports[0]}
		[ "$sc" = h2 ] && TARGET=${H2C_PORTS[0]}
		return 0
	fi
	if [ "$sys/$proto/$sc" = nginx/h2c/h2 ]; then
		GRPC_ERR="unsupported: nginx's proxy_pass cannot speak HTTP/2 to a shard (BENCH_H2_UPSTREAM=h2c)"
		return 1
	fi
	port_free "$LISTEN" || { GRPC_ERR="port $LISTEN is taken"; return 1; }
	case $sys in
	shard-proxy | candidate | shard-proxy-log | shard-proxy-trace1 | shard-proxy-trace100)
		# shard-proxy-log: the same binary with 100% access logging to a
		# file; -trace1, -trace100: with --tracing otlp at 1% (the default)
		# and 100% sampling, exporting over OTLP/HTTP to the sink
		local shards key=header:x-shard-key bin=$sys extra=() env=()
		shards=$(printf 'http://127.0.0.1:%s,' "${ports[@]}")
		[ "$sc" = h2 ] && key='path:/accounts/{key}'
		case $sys in
		shard-proxy-log) bin=shard-proxy extra=(--access-log "$TMP/grpc-access.log") ;;
		shard-proxy-trace*)
			local ratio=0.01
			[ "$sys" = shard-proxy-trace100 ] && ratio=1
			bin=shard-proxy extra=(--tracing otlp)
			env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_SINK" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
				OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=$ratio)
			;;
		esac
		env "${env[@]}" "${ON_PROXY_CPU[@]}" "$TMP/$bin" --shards "${shards%,}" --shard-protocol "$proto" \
			--listen "127.0.0.1:$LISTEN" --admin-listen "127.0.0.1:$ADMIN" \
			--key "$key" --log-level warn "${extra[@]}" 2>>"$plog" &
		;;
	haproxy)
		local balance="balance hdr(x-shard-key)" hproto="proto h2"
		[ "$sc" = h2 ] && balance="balance hash path,field(3,/)"
		[ "$proto" = http1 ] && hproto=
		render "$BENCH/config/haproxy-grpc.cfg" "$TMP/haproxy-grpc.cfg" "BALANCE=$balance" "PROTO=$hproto" \
			"S0=${ports[0]}" "S1=${ports[1]}" "S2=${ports[2]}" "S3=${ports[3]}"
		"${ON_PROXY_CPU[@]}" haproxy -db -f "$TMP/haproxy-grpc.cfg" 2>>"$plog" &
		;;
	nginx)
		mkdir -p "$TMP/nginx_body" "$TMP/nginx_proxy"
		render "$BENCH/config/nginx-grpc.conf" "$TMP/nginx-grpc.conf" \
			"G0=${SHARD_PORTS[0]}" "G1=${SHARD_PORTS[1]}" "G2=${SHARD_PORTS[2]}" "G3=${SHARD_PORTS[3]}" \
			"H0=${H2_PORTS[0]}" "H1=${H2_PORTS[1]}" "H2=${H2_PORTS[2]}" "H3=${H2_PORTS[3]}"
		"${ON_PROXY_CPU[@]}" nginx -c "$TMP/nginx-grpc.conf" -g 'daemon off; master_process off;' 2>>"$plog" &
		;;
	*)
		GRPC_ERR="unknown system $sys (want some of: shard-proxy haproxy nginx direct candidate shard-proxy-log shard-proxy-trace1 shard-proxy-trace100)"
		return 1
		;;
	esac
	if ! await_listen; then
		mem_stop "$MEASURED_PID"
		GRPC_ERR="did not start (exit status $MEM_RC): $(last_lines "$plog")"
		return 1
	fi
}

# grpc_measure ROUND SYSTEM SCENARIO: start, sanity check, warm-up and
# measured window (both inside grpcload), stop; one BENCH line to GRPC_RAW.
grpc_measure() {
	local round=$1 sys=$2 sc=$3 plog="$TMP/$2-$3.log" line direct= h2= args=()
	[ "$sys" = direct ] && direct=-direct
	[ "$sc" = h2 ] && h2=-h2
	local head="BENCH round=$round scenario=$sc system=$sys"
	case $sc in grpc | h2) ;; *)
		log "unknown gRPC-mode scenario $sc (want some of: grpc h2)"
		return 0
		;;
	esac
	if ! grpc_start "$sys" "$sc" "$plog"; then
		log "round $round: $sys/$sc: $GRPC_ERR"
		echo "$head note=$(quote "$GRPC_ERR")" >>"$GRPC_RAW"
		return 0
	fi
	local out
	if ! out=$("${ON_LOAD_CPU[@]}" "$TMP/grpcload" sanity $h2 $direct -addr "127.0.0.1:$TARGET" -seed "$BENCH_SEED" 2>&1); then
		out="sanity check failed: $(tail -1 <<<"$out" | sed 's/^grpcload sanity: //')"
		log "round $round: $sys/$sc: $out"
		echo "$head note=$(quote "$out")" >>"$GRPC_RAW"
		[ -z "$MEASURED_PID" ] || mem_stop "$MEASURED_PID"
		return 0
	fi
	echo "$sys/$sc round $round: $out" >>"$TMP/grpcload.log"
	args=(-round "$round" -system "$sys" -addr "127.0.0.1:$TARGET" -seed "$BENCH_SEED"
		-warmup "${BENCH_WARMUP}s" -duration "${BENCH_DURATION}s" -pid "${MEASURED_PID:-0}")
	local streams=$(((BENCH_GRPC_CALLERS + BENCH_GRPC_CONNS - 1) / BENCH_GRPC_CONNS))
	if [ "$sc" = h2 ]; then
		args=(h2 "${args[@]}" -clients "$BENCH_GRPC_CONNS" -streams "$streams")
	else
		args=(load "${args[@]}" -callers "$BENCH_GRPC_CALLERS" -conns "$BENCH_GRPC_CONNS"
			-req-bytes "$BENCH_GRPC_PAYLOAD" -resp-bytes "$BENCH_GRPC_PAYLOAD")
	fi
	line=$(CLK_TCK=$CLK_TCK timeout --foreground -k 5 $((BENCH_WARMUP + BENCH_DURATION + 60)) \
		"${ON_LOAD_CPU[@]}" "$TMP/grpcload" "${args[@]}" 2>>"$TMP/grpcload.log" | grep '^BENCH ' | tail -1) || true
	local died=
	if [ -n "$MEASURED_PID" ]; then
		running "$MEASURED_PID" || died=yes
		mem_stop "$MEASURED_PID"
	fi
	if [ -z "$line" ]; then
		line="$head note=$(quote "the load tool gave no result: $(tail -1 "$TMP/grpcload.log")")"
	elif [ -n "$died" ]; then
		line="$line note=$(quote "the proxy died during the run (exit status $MEM_RC): $(grep -v '^\s*$' "$plog" | tail -1)")"
	fi
	echo "$line" >>"$GRPC_RAW"
	log "round $round: $sys/$sc: ${line#BENCH }"
}

grpc() {
	grpc_build
	mkdir -p "$BENCH_OUT"
	GRPC_RAW="$BENCH_OUT/grpc.txt"
	: >"$GRPC_RAW"
	start_grpc_shards
	local started load_start round sc sys
	started=$(date -u +%Y-%m-%dT%H:%MZ)
	load_start=$(cut -d' ' -f1-3 /proc/loadavg)
	for round in $(seq 1 "$BENCH_ROUNDS"); do
		for sc in $BENCH_GRPC_SCENARIOS; do
			# Rotate who goes first each round, as the side-by-side runs do.
			for sys in $(rotate "$round" $BENCH_GRPC_SYSTEMS); do
				grpc_measure "$round" "$sys" "$sc"
			done
		done
	done
	local streams=$(((BENCH_GRPC_CALLERS + BENCH_GRPC_CONNS - 1) / BENCH_GRPC_CONNS)) h2v= sink=
	command -v h2load >/dev/null 2>&1 && h2v=", $(h2load --version 2>&1 | head -1)"
	if [ -n "${OTLP_SINK_PID:-}" ]; then
		stop_pid "$OTLP_SINK_PID" # it prints what it took
		sink="- tracing: shard-proxy-trace1 and -trace100 run \`--tracing otlp\` with OTEL_TRACES_SAMPLER_ARG 0.01 and 1, exporting over OTLP/HTTP (the SDK's batch processor, its defaults) to \`grpcload otlpsink\` on CPU $BENCH_LOAD_CPU, which reads and drops every batch; it took $(sed -n 's/^otlpsink: //p' "$TMP/otlpsink.log" | tail -1)"
	fi
	{
		echo "# shard-proxy gRPC and HTTP/2 benchmark"
		echo
		echo "- run: $started, $BENCH_ROUNDS round(s); load average (1/5/15 min) at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
		machine | sed -n 1p
		echo "- pinning: each proxy alone on CPU $BENCH_PROXY_CPU, started afresh for each scenario; the shards (gRPC: bench/cmd/grpcshard, one process; h2: one nginx worker) and the load (bench/cmd/grpcload, GOMAXPROCS 1; h2load, 1 thread) on CPU $BENCH_LOAD_CPU; all at nice $BENCH_NICE"
		echo "- gRPC load: grpcload, $BENCH_GRPC_CALLERS concurrent callers (closed loop, one unary call at a time each) over $BENCH_GRPC_CONNS client connection(s), ${BENCH_GRPC_PAYLOAD}-byte payloads both ways, a random ten-digit key in the x-shard-key metadata of every call (seed $BENCH_SEED); ${BENCH_WARMUP}s warm-up then ${BENCH_DURATION}s measured; latency from a log-linear histogram (±1.6%)"
		case " $BENCH_GRPC_SCENARIOS " in *" h2 "*)
			echo "- HTTP/2 load: h2load -c $BENCH_GRPC_CONNS -m $streams -t 1 over h2c, GET /accounts/<key> cycling through 4096 keys from the same generator; ${BENCH_WARMUP}s warm-up run, then ${BENCH_DURATION}s measured with --log-file, which gives the percentiles; the proxies speak $([ "$BENCH_H2_UPSTREAM" = h2c ] && echo "h2c (BENCH_H2_UPSTREAM=h2c)" || echo "HTTP/1.1") to the shards (config/backends-h2.conf: nginx answering \"ok\"); direct is h2load over h2c to shard 0" ;;
		esac
		[ -n "$H2_NOTE" ] && echo "- $H2_NOTE"
		echo "- versions: $(shard_proxy_version), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3), grpc-go $(go version -m "$TMP/grpcload" | awk '$2 == "google.golang.org/grpc" {print $3}')$h2v, $(go version | cut -d' ' -f3)"
		echo "- shard-proxy: \`--shard-protocol h2c --key header:x-shard-key\` (h2: \`--shard-protocol $BENCH_H2_UPSTREAM --key path:/accounts/{key}\`); HAProxy: config/haproxy-grpc.cfg (nbthread 1, bind ... proto h2, gRPC servers proto h2, balance hdr(x-shard-key) or hash path,field(3,/), hash-type consistent); nginx: config/nginx-grpc.conf (listen ... http2, grpc_pass to the gRPC shards with hash \$http_x_shard_key consistent, one upstream connection per call in flight; the h2 GETs over proxy_pass, HTTP/1.1 to the shards)"
		echo "- every system adds X-Forwarded-For/-Proto/-Host and names the shard in X-Shard; before each measurement 12 keys go through it twice: every answer OK, each key on the same shard both times, the keys on more than one shard"
		echo "- CPU µs/call is the proxy's own CPU time (user + system, all threads) over the measured window ÷ the calls completed in it; core used is its share of its core; peak RSS is its VmHWM after the run"
		echo "- ratios compare with HAProxy, and with the better of HAProxy and nginx on each figure (higher calls/s, lower p99, lower CPU), in the same round; the raw lines are in grpc.txt"
		[ -z "$sink" ] || echo "$sink"
		echo
		"$TMP/grpcload" report -in "$GRPC_RAW"
	} >"$BENCH_OUT/grpc.md.tmp"
	mv "$BENCH_OUT/grpc.md.tmp" "$BENCH_OUT/grpc.md"
	rm -rf "$BENCH_OUT/grpc-logs"
	mkdir -p "$BENCH_OUT/grpc-logs"
	cp "$TMP"/*.log "$BENCH_OUT/grpc-logs/" 2>/dev/null || true
	log "wrote $BENCH_OUT/grpc.md (proxy and load-tool logs in $BENCH_OUT/grpc-logs/)"
	cat "$BENCH_OUT/grpc.md"
}

# broadcast: the admin plane's broadcast over a slow link (bench/cmd/broadcast).
# The shards, their links and the caller share the load CPU; shard-proxy is
# alone on the proxy CPU.
broadcast() {
	log "building shard-proxy and the broadcast bench"
	build_shard_proxy
	bench_build "$TMP/broadcast" ./cmd/broadcast
	mkdir -p "$BENCH_OUT"
	port_free "$LISTEN" || die "port $LISTEN is taken (set BENCH_PORT)"
	"${ON_LOAD_CPU[@]}" "$TMP/broadcast" -proxy "$TMP/shard-proxy" -proxy-wrap "${ON_PROXY_CPU[*]}" \
		-port "$LISTEN" -shards "$BENCH_BCAST_SHARDS" -rtt "$BENCH_BCAST_RTT" \
		-concurrent "$BENCH_BCAST_CONCURRENT" -rounds "$BENCH_BCAST_ROUNDS" >"$BENCH_OUT/broadcast.md.tmp"
	{
		cat "$BENCH_OUT/broadcast.md.tmp"
		echo
		machine | grep -v '^- load:\|^- pinning:'
		echo "- pinning: shard-proxy alone on CPU $BENCH_PROXY_CPU; the shards, their links and the caller (one process) on CPU $BENCH_LOAD_CPU; all at nice $BENCH_NICE"
	} >"$BENCH_OUT/broadcast.md"
	rm -f "$BENCH_OUT/broadcast.md.tmp"
	log "wrote $BENCH_OUT/broadcast.md"
	cat "$BENCH_OUT/broadcast.md"
}

install_missing
command -v go >/dev/null || die "go is not on PATH"
case $MODE in
compare) compare ;;
publish) publish ;;
broadcast) broadcast ;;
profile) profile ;;
accesslog) accesslog ;;
memory) memory ;;
grpc) grpc ;;
fixedrate | generator)
	command -v jq >/dev/null || die "jq is not installed (Debian: apt-get install jq)"
	. "$BENCH/fixedrate.sh"
	$MODE
	;;
*) die "unknown mode $MODE: want compare (default), publish, profile, memory, grpc, broadcast, fixedrate or generator" ;;
esac
