-- wrk script for the benchmark's load measures: sends one request (method and headers from the
-- environment) over and over, and when the run ends prints one line of JSON that bench/ parses:
-- requests, seconds, errors by kind, and latency percentiles in microseconds.
--
--   WRK_METHOD=HEAD WRK_ACCEPT='...' wrk -t2 -c50 -d10s -s bench/wrk-report.lua URL
--
-- Writes: WRK_BODY_FILE is sent as each request's body, with WRK_CONTENT_TYPE; WRK_UNIQUE=1
-- makes every request's path its own, URL's path + "-THREAD-N" (e.g. a new tag each time:
-- WRK_METHOD=PUT ... http://HOST/v2/NAME/manifests/w1). WRK_PATHS=P1,P2,... sends those paths
-- round robin instead of URL's (one client pulling an image: its manifest, then its blobs).
--
-- Any response that is not 2xx/3xx counts in errors.status: the harness treats that as a broken
-- measure (a wrong URL or header), not as a slow registry.

wrk.method = os.getenv("WRK_METHOD") or "GET"
local accept = os.getenv("WRK_ACCEPT")
if accept and accept ~= "" then
  wrk.headers["Accept"] = accept
end
local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  local content_type = os.getenv("WRK_CONTENT_TYPE")
  if content_type and content_type ~= "" then
    wrk.headers["Content-Type"] = content_type
  end
end

local paths = os.getenv("WRK_PATHS")
if paths and paths ~= "" then
  local list, i = {}, 0
  for p in string.gmatch(paths, "[^,]+") do
    list[#list + 1] = p
  end
  function request()
    i = i % #list + 1
    return wrk.format(nil, list[i])
  end
elseif os.getenv("WRK_UNIQUE") == "1" then
  local threads = 0
  function setup(thread)
    threads = threads + 1
    thread:set("id", threads)
  end
  local n = 0
  function request()
    n = n + 1
    return wrk.format(nil, wrk.path .. "-" .. id .. "-" .. n)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"seconds":%.6f,"rps":%.2f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, seconds, summary.requests / seconds,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
