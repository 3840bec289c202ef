-- wrk script for the benchmark's load measures: sends one request (method and headers from the
-- environment) over and over, and when the run ends prints one line of JSON that bench/ parses:
-- requests, seconds, errors by kind, and latency percentiles in microseconds.
--
--   WRK_METHOD=HEAD WRK_ACCEPT='...' wrk -t2 -c50 -d10s -s bench/wrk-report.lua URL
--
-- Any response that is not 2xx/3xx counts in errors.status: the harness treats that as a broken
-- measure (a wrong URL or header), not as a slow registry.

wrk.method = os.getenv("WRK_METHOD") or "GET"
local accept = os.getenv("WRK_ACCEPT")
if accept and accept ~= "" then
  wrk.headers["Accept"] = accept
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
