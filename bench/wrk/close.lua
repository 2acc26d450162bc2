-- wrk script for bench/tls.sh's handshake scenario: every request carries
-- a random X-Shard-Key and "Connection: close", so every request is a new
-- connection and a new (full: wrk does not resume sessions) TLS handshake.
-- done() prints the same BENCH line as shard.lua.
local seed = tonumber(os.getenv("BENCH_SEED") or "42")
local threads = {}

function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

local head

function init(args)
   math.randomseed(seed + (thread_id or 0))
   head = "GET / HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port .. "\r\nConnection: close\r\nX-Shard-Key: "
end

function request()
   return head .. tostring(math.random(1000000000, 1999999999)) .. "\r\n\r\n"
end

function done(summary, latency, requests)
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "BENCH requests=%d seconds=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
