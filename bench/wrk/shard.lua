-- wrk script for the side-by-side runs: every request carries a random shard
-- key, drawn from the same seeded sequence for every system, so each proxy
-- routes the same keys. BENCH_SCENARIO selects where the key goes:
--   header  GET / with X-Shard-Key: <key>
--   path    GET /accounts/<key>
--   body    POST / with a 1 KiB JSON body whose account.id is <key>
-- done() prints one "BENCH k=v ..." line for run.sh to parse.

local scenario = os.getenv("BENCH_SCENARIO") or "header"
local seed = tonumber(os.getenv("BENCH_SEED") or "42")
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "1024")

local threads = {}

function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

local host, head, tail

-- Keys are ten-digit decimal strings, so every request of a scenario has
-- the same length and the body's Content-Length is fixed.
local function key()
   return tostring(math.random(1000000000, 1999999999))
end

function init(args)
   math.randomseed(seed + (thread_id or 0))
   host = wrk.host .. ":" .. wrk.port
   if scenario == "header" then
      head = "GET / HTTP/1.1\r\nHost: " .. host .. "\r\nX-Shard-Key: "
      tail = "\r\n\r\n"
   elseif scenario == "path" then
      head = "GET /accounts/"
      tail = " HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
   elseif scenario == "body" then
      -- The key sits after some fields and before a padding field, so a
      -- parser has to walk part of the document to find it and validate
      -- the rest.
      local before = '{"type":"deposit","currency":"EUR","amount":1250,"account":{"region":"eu-west","id":"'
      local after_fixed = '","tier":"gold"},"items":[{"sku":"A-100","qty":2},{"sku":"B-220","qty":1}],"note":"'
      local closing = '"}'
      local pad = body_bytes - #before - 10 - #after_fixed - #closing
      if pad < 0 then pad = 0 end
      local after = after_fixed .. string.rep("x", pad) .. closing
      local len = #before + 10 + #after
      head = "POST / HTTP/1.1\r\nHost: " .. host ..
         "\r\nContent-Type: application/json\r\nContent-Length: " .. len ..
         "\r\n\r\n" .. before
      tail = after
   else
      error("BENCH_SCENARIO must be header, path or body, got " .. scenario)
   end
end

function request()
   return head .. key() .. tail
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
