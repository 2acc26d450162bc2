# Sourced by run.sh for "run.sh fixedrate" and "run.sh generator"; uses its
# helpers (start_backends, start_system, sanity, stop_pid, machine, ...).
#
# fixedrate: open-loop runs of shard-proxy load at fixed rates through
# shard-proxy, HAProxy and nginx in the same run. First each system's
# saturation rate (closed loop, BENCH_CONNECTIONS at a time, as wrk
# measures it); then, for each share in BENCH_FR_LOADS of the slowest
# system's saturation rate, every system at that same rate, with latency
# measured from each request's due time (no coordinated omission). Writes
# bench/results/fixedrate.md and the JSON reports in fixedrate/.
#
# generator: shard-proxy load alone on BENCH_LOAD_CPU against one nginx
# shard on BENCH_PROXY_CPU at BENCH_GEN_RATE requests a second: can one
# core of the generator keep the schedule? Writes bench/results/generator.md.

: "${BENCH_FR_SYSTEMS:=shard-proxy haproxy nginx}"
: "${BENCH_FR_LOADS:=50 90}"          # percent of the slowest system's saturation rate
: "${BENCH_FR_KEYS:=uniform:100000}"  # shard-proxy load --keys
: "${BENCH_GEN_RATE:=50000}"          # generator mode: requests a second
: "${BENCH_FR_MAX_CONNS:=1000}"       # --max-connections: past it requests leave late (and say so)

# fr_load ARGS...: shard-proxy load on the load CPU, JSON report on stdout.
fr_load() {
	"${ON_LOAD_CPU[@]}" "$TMP/shard-proxy" load -q -o json --seed "$BENCH_SEED" --keys "$BENCH_FR_KEYS" \
		-H 'X-Shard-Key: {key}' --max-connections "$BENCH_FR_MAX_CONNS" "$@" "http://127.0.0.1:$TARGET/"
}

# fr_saturation SYSTEM: sets SAT to the closed-loop rate SYSTEM sustains,
# in req/s.
fr_saturation() {
	start_system "$1" header
	sanity "$1" header
	fr_load --concurrency "$BENCH_CONNECTIONS" --duration "${BENCH_WARMUP}s" >/dev/null
	fr_load --concurrency "$BENCH_CONNECTIONS" --duration "${BENCH_DURATION}s" >"$FR_DIR/$1-saturation.json"
	[ -n "$MEASURED_PID" ] && stop_pid "$MEASURED_PID"
	SAT=$(jq -r '.all.rate | floor' "$FR_DIR/$1-saturation.json")
}

# fr_row SYSTEM LABEL JSON: one table row from a report.
fr_row() {
	jq -r --arg sys "$1" --arg what "$2" '[$sys, $what, (.all.rate | floor), .all.latency.p50_ms, .all.latency.p99_ms,
		.all.latency.p99_9_ms, .all.latency.max_ms, (.late.count // 0), ((.all.errors // {}) | add // 0),
		(.all.requests - (.all.status["200"] // 0)), (.connections // 0)] | @tsv' "$3"
}

fixedrate() {
	build_shard_proxy
	build_candidate BENCH_FR_SYSTEMS
	mkdir -p "$BENCH_OUT"
	FR_DIR="$BENCH_OUT/fixedrate"
	rm -rf "$FR_DIR"
	mkdir -p "$FR_DIR"
	start_backends
	local started load_start sys slowest=0 slowest_sys pct rate rows=() round=0
	started=$(date -u +%Y-%m-%dT%H:%MZ)
	load_start=$(cut -d' ' -f1-3 /proc/loadavg)
	for sys in $BENCH_FR_SYSTEMS; do
		fr_saturation "$sys"
		log "$sys saturates at $SAT req/s (closed loop, $BENCH_CONNECTIONS connections)"
		rows+=("$(fr_row "$sys" saturation "$FR_DIR/$sys-saturation.json")")
		if [ "$slowest" -eq 0 ] || [ "$SAT" -lt "$slowest" ]; then slowest=$SAT slowest_sys=$sys; fi
	done
	for pct in $BENCH_FR_LOADS; do
		rate=$((slowest * pct / 100))
		round=$((round + 1))
		# Rotate who goes first at each rate, as the other modes do.
		for sys in $(rotate "$round" $BENCH_FR_SYSTEMS); do
			start_system "$sys" header
			sanity "$sys" header
			fr_load --rate "$rate" --duration "${BENCH_WARMUP}s" >/dev/null
			fr_load --rate "$rate" --duration "${BENCH_DURATION}s" --report "$FR_DIR/$sys-$pct.html" >"$FR_DIR/$sys-$pct.json"
			[ -n "$MEASURED_PID" ] && stop_pid "$MEASURED_PID"
			rows+=("$(fr_row "$sys" "$pct% = $rate/s" "$FR_DIR/$sys-$pct.json")")
			log "$sys at $rate req/s: $(tail -1 <<<"${rows[-1]}")"
		done
	done
	{
		echo "# Fixed-rate latency: shard-proxy, HAProxy and nginx at the same open-loop rates"
		echo
		echo "- run: $started; load average (1/5/15 min) at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg); the machine is shared with other work"
		machine | sed -n 1p
		echo "- pinning: each proxy alone on CPU $BENCH_PROXY_CPU; shard-proxy load and the 4 nginx shards (1 worker) on CPU $BENCH_LOAD_CPU; all at nice $BENCH_NICE"
		echo "- load: shard-proxy load, keys $BENCH_FR_KEYS in X-Shard-Key (seed $BENCH_SEED); saturation: closed loop, $BENCH_CONNECTIONS at a time; then open loop at ${BENCH_FR_LOADS// /% and }% of the slowest saturation ($slowest_sys, $slowest req/s), latency from each request's due time; ${BENCH_WARMUP}s warm-up, ${BENCH_DURATION}s measured"
		echo "- versions: $(shard_proxy_version), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3), $(go version | cut -d' ' -f3)"
		echo "- late: requests that left more than 1 ms after their due time (the generator's own delay, included in the latency); the JSON and HTML reports are in fixedrate/"
		echo
		echo "| system | load | req/s | p50 ms | p99 ms | p99.9 ms | max ms | late | errors | non-200 | connections |"
		echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		printf '%s\n' "${rows[@]}" | awk -F'\t' '{ printf "| %s | %s | %s | %.3f | %.3f | %.3f | %.3f | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }'
	} >"$BENCH_OUT/fixedrate.md"
	log "wrote $BENCH_OUT/fixedrate.md"
	cat "$BENCH_OUT/fixedrate.md"
}

generator() {
	build_shard_proxy
	mkdir -p "$BENCH_OUT"
	local be="$TMP/gen-backend.conf" port=${SHARD_PORTS[0]}
	mkdir -p "$TMP/backends_body"
	render "$BENCH/config/backends.conf" "$be"
	"${ON_PROXY_CPU[@]}" nginx -c "$be" -g 'daemon off;' &
	PIDS+=($!)
	wait_port "$port"
	local out="$BENCH_OUT/generator.json" load_start
	load_start=$(cut -d' ' -f1-3 /proc/loadavg)
	"${ON_LOAD_CPU[@]}" "$TMP/shard-proxy" load -q --keys uniform:100000 --rate "$BENCH_GEN_RATE" --duration 2s \
		"http://127.0.0.1:$port/accounts/{key}" >/dev/null
	"${ON_LOAD_CPU[@]}" "$TMP/shard-proxy" load -q -o json --keys uniform:100000 --rate "$BENCH_GEN_RATE" \
		--duration "${BENCH_DURATION}s" "http://127.0.0.1:$port/accounts/{key}" >"$out"
	{
		echo "# Can one core of shard-proxy load keep a fixed rate?"
		echo
		echo "- run: $(date -u +%Y-%m-%dT%H:%MZ); load average (1/5/15 min) at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg); the machine is shared with other work"
		machine | sed -n 1p
		echo "- shard-proxy load pinned alone on CPU $BENCH_LOAD_CPU (GOMAXPROCS 1 follows the pinning), one nginx worker answering \"ok\" on CPU $BENCH_PROXY_CPU; nice $BENCH_NICE; $(shard_proxy_version)"
		echo "- \`shard-proxy load --rate $BENCH_GEN_RATE --duration ${BENCH_DURATION}s --keys uniform:100000 http://127.0.0.1:$port/accounts/{key}\` after a 2 s warm-up"
		echo
		jq -r '"| asked | sent | achieved req/s | late > 1 ms | lateness p99 ms | p50 ms | p99 ms | p99.9 ms | connections | generator CPU | µs a request |",
			"|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
			"| \(.rate) | \(.sent) | \(.all.rate | floor) | \(.late.count) | \(.late.p99_ms) | \(.all.latency.p50_ms) | \(.all.latency.p99_ms) | \(.all.latency.p99_9_ms) | \(.connections) | \(100 * .generator_cpu_s / .elapsed_s | floor)% of a core | \(1e6 * .generator_cpu_s / .sent * 10 | floor / 10) |"' "$out"
	} >"$BENCH_OUT/generator.md"
	log "wrote $BENCH_OUT/generator.md"
	cat "$BENCH_OUT/generator.md"
}
