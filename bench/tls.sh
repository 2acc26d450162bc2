#!/usr/bin/env bash
# HTTPS side by side: shard-proxy's TLS listener and HAProxy's "bind ...
# ssl" in front of the same four nginx shards, in the same run. ECDSA P-256
# certificate, TLS 1.3, each proxy alone on BENCH_PROXY_CPU, the shards and
# wrk on BENCH_LOAD_CPU (as bench/run.sh pins them).
#
#   bash bench/tls.sh      writes bench/results/tls.md
#
# Scenarios: "keepalive" (wrk, BENCH_CONNECTIONS keep-alive connections, a
# random X-Shard-Key per request: req/s and p99) and "handshake" (every
# request with Connection: close: a new connection and a full TLS 1.3
# handshake each; wrk does not resume sessions) and "idle" (bench/cmd/tlsidle
# opens BENCH_TLS_IDLE_CONNS TLS connections, one request each, leaves them
# open: the proxy's RSS growth per connection). The summary takes the
# median of BENCH_ROUNDS rounds; the systems' order rotates every round.
set -euo pipefail

: "${BENCH_DURATION:=10}" "${BENCH_WARMUP:=2}" "${BENCH_CONNECTIONS:=64}" "${BENCH_ROUNDS:=3}"
: "${BENCH_SYSTEMS:=shard-proxy haproxy}" "${BENCH_PROXY_CPU:=1}" "${BENCH_LOAD_CPU:=0}"
: "${BENCH_PORT:=18480}" "${BENCH_OUT:=bench/results}" "${BENCH_SEED:=42}" "${SHARD_PROXY_BIN:=}"
: "${BENCH_TLS_IDLE_CONNS:=5000}"
if [ "$(id -u)" -eq 0 ]; then : "${BENCH_NICE:=-19}"; else : "${BENCH_NICE:=0}"; fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH="$ROOT/bench"
LISTEN=$BENCH_PORT ADMIN=$((BENCH_PORT + 10))
SHARD_PORTS=($((BENCH_PORT + 1)) $((BENCH_PORT + 2)) $((BENCH_PORT + 3)) $((BENCH_PORT + 4)))
SHARDS_FLAG=$(printf 'http://127.0.0.1:%s,' "${SHARD_PORTS[@]}")
SHARDS_FLAG=${SHARDS_FLAG%,}
ON_PROXY_CPU=(nice -n "$BENCH_NICE" taskset -c "$BENCH_PROXY_CPU")
ON_LOAD_CPU=(nice -n "$BENCH_NICE" taskset -c "$BENCH_LOAD_CPU")

log() { printf '[bench-tls %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

TMP=$(mktemp -d /tmp/shard-proxy-bench-tls.XXXXXX)
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
	local i
	for i in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	die "nothing listens on 127.0.0.1:$1 after 5s"
}

render() {
	local tmpl=$1 out=$2 i args=(-e "s|@DIR@|$TMP|g" -e "s|@LISTEN@|$LISTEN|g")
	for i in 0 1 2 3; do args+=(-e "s|@P$i@|${SHARD_PORTS[$i]}|g"); done
	sed "${args[@]}" "$tmpl" >"$out"
}

for cmd in nginx haproxy wrk taskset curl openssl; do
	command -v "$cmd" >/dev/null || die "$cmd is missing (bash bench/run.sh installs nginx, haproxy, wrk)"
done

# An ECDSA P-256 CA and a certificate for 127.0.0.1 that both proxies serve.
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/ca.key" 2>/dev/null
openssl req -x509 -new -key "$TMP/ca.key" -subj /CN=bench-ca -days 2 -out "$TMP/ca.crt" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/tls.key" 2>/dev/null
openssl req -new -key "$TMP/tls.key" -subj /CN=127.0.0.1 -out "$TMP/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$TMP/san.ext"
openssl x509 -req -in "$TMP/tls.csr" -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" -CAcreateserial -days 2 \
	-extfile "$TMP/san.ext" -out "$TMP/tls.crt" 2>/dev/null
cat "$TMP/tls.crt" "$TMP/tls.key" >"$TMP/proxy.pem"

if [ -n "$SHARD_PROXY_BIN" ]; then cp "$SHARD_PROXY_BIN" "$TMP/shard-proxy"; else
	log "building shard-proxy"
	CGO_ENABLED=0 go build -o "$TMP/shard-proxy" ./cmd/shard-proxy
fi

log "building bench/cmd/tlsidle"
go build -C "$BENCH" -o "$TMP/tlsidle" ./cmd/tlsidle

mkdir -p "$TMP/backends_body"
render "$BENCH/config/backends.conf" "$TMP/backends.conf"
"${ON_LOAD_CPU[@]}" nginx -c "$TMP/backends.conf" -g 'daemon off;' &
PIDS+=($!)
for p in "${SHARD_PORTS[@]}"; do wait_port "$p"; done

start() {
	case $1 in
	shard-proxy)
		"${ON_PROXY_CPU[@]}" "$TMP/shard-proxy" --shards "$SHARDS_FLAG" --listen "" \
			--tls-listen "127.0.0.1:$LISTEN" --tls-cert-file "$TMP/tls.crt" --tls-key-file "$TMP/tls.key" \
			--admin-listen "127.0.0.1:$ADMIN" --log-level warn 2>>"$TMP/shard-proxy.log" &
		;;
	haproxy)
		render "$BENCH/config/haproxy-tls.cfg" "$TMP/haproxy.cfg"
		"${ON_PROXY_CPU[@]}" haproxy -db -f "$TMP/haproxy.cfg" 2>>"$TMP/haproxy.log" &
		;;
	*) die "unknown system $1" ;;
	esac
	PID=$!
	PIDS+=("$PID")
	wait_port "$LISTEN"
	local s
	s=$(curl -sS --cacert "$TMP/ca.crt" -o /dev/null -w '%{http_code} %{scheme}' -H 'X-Shard-Key: 1234567890' "https://127.0.0.1:$LISTEN/")
	[ "$s" = "200 HTTPS" ] || die "$1: sanity request answered '$s'"
}

stop() {
	kill "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$PID" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# load SCRIPT SECONDS: wrk's BENCH line.
load() {
	BENCH_SCENARIO=header BENCH_SEED=$BENCH_SEED "${ON_LOAD_CPU[@]}" \
		wrk -t1 -c"$BENCH_CONNECTIONS" -d"$2s" --timeout 5s -s "$BENCH/wrk/$1" \
		"https://127.0.0.1:$LISTEN/" | grep '^BENCH ' || die "wrk printed no BENCH line"
}
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

RAW="$TMP/raw.tsv"
: >"$RAW"
systems=($BENCH_SYSTEMS)
for round in $(seq 1 "$BENCH_ROUNDS"); do
	for i in "${!systems[@]}"; do
		sys=${systems[$(((i + round - 1) % ${#systems[@]}))]}
		start "$sys"
		line=$("${ON_LOAD_CPU[@]}" "$TMP/tlsidle" -addr "127.0.0.1:$LISTEN" -pid "$PID" -conns "$BENCH_TLS_IDLE_CONNS" -seed "$BENCH_SEED")
		stop
		printf '%s\t%s\tidle\t%s\t%s\t%s\t0\n' "$round" "$sys" "$(field per_conn_bytes "$line")" "$(field held "$line")" \
			"$(($(field conns "$line") - $(field held "$line")))" >>"$RAW"
		log "round $round $sys idle: $(field per_conn_bytes "$line") bytes per idle TLS connection ($(field held "$line") held)"
		for sc in keepalive handshake; do
			script=shard.lua
			[ "$sc" = handshake ] && script=close.lua
			start "$sys"
			load "$script" "$BENCH_WARMUP" >/dev/null
			line=$(load "$script" "$BENCH_DURATION")
			rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
			stop
			errs=$(($(field err_connect "$line") + $(field err_read "$line") + $(field err_write "$line") + $(field err_status "$line") + $(field err_timeout "$line")))
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$sys" "$sc" "$(field rps "$line")" "$(field p99_us "$line")" "$errs" "$rss" >>"$RAW"
			log "round $round $sys $sc: $(field rps "$line") req/s, p99 $(field p99_us "$line") us, errors $errs"
		done
	done
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
med() { awk -F'\t' -v s="$1" -v c="$2" -v k="$3" '$2==s && $3==c {print $k}' "$RAW" | median; }

mkdir -p "$BENCH_OUT"
OUT="$BENCH_OUT/tls.md"
{
	echo "# HTTPS: shard-proxy and HAProxy, same run"
	echo
	echo "- $(date -u +%Y-%m-%dT%H:%MZ), $BENCH_ROUNDS round(s) of ${BENCH_DURATION}s (after ${BENCH_WARMUP}s warm-up), medians"
	echo "- TLS 1.3, ECDSA P-256; wrk (1 thread, $BENCH_CONNECTIONS connections) and 4 nginx shards on CPU $BENCH_LOAD_CPU, each proxy alone on CPU $BENCH_PROXY_CPU, nice $BENCH_NICE"
	echo "- versions: $("$TMP/shard-proxy" --version 2>/dev/null || echo shard-proxy), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(openssl version | cut -d' ' -f1-2), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
	echo
	echo "| system | keep-alive req/s | keep-alive p99 (µs) | new handshakes/s | handshake p99 (µs) | bytes per idle TLS connection | peak RSS under load (KiB) |"
	echo "|---|---|---|---|---|---|---|"
	for sys in "${systems[@]}"; do
		echo "| $sys | $(med "$sys" keepalive 4) | $(med "$sys" keepalive 5) | $(med "$sys" handshake 4) | $(med "$sys" handshake 5) | $(med "$sys" idle 4) ($BENCH_TLS_IDLE_CONNS held: $(med "$sys" idle 5)) | $(med "$sys" keepalive 7) |"
	done
	if [[ " ${systems[*]} " == *" shard-proxy "* && " ${systems[*]} " == *" haproxy "* ]]; then
		echo
		awk -v a="$(med shard-proxy keepalive 4)" -v b="$(med haproxy keepalive 4)" -v c="$(med shard-proxy keepalive 5)" -v d="$(med haproxy keepalive 5)" \
			-v e="$(med shard-proxy handshake 4)" -v f="$(med haproxy handshake 4)" \
			'BEGIN {printf "shard-proxy / HAProxy: keep-alive req/s %.2fx, p99 %.2fx, handshakes/s %.2fx\n", a/b, c/d, e/f}'
	fi
	echo
	echo "Errors (all rounds): $(awk -F'\t' '{s+=$6} END {print s+0}' "$RAW")"
} >"$OUT"
cat "$OUT"
