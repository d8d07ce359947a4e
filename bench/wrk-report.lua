-- wrk `done` hook for bench/e2e.sh: prints one line "WRK_JSON {...}" with the totals and
-- latency percentiles in microseconds. Only `done` is defined, so wrk keeps its fast static
-- request path (no Lua runs per request).
--
--   wrk -t1 -c64 -d10s --latency -s bench/wrk-report.lua http://127.0.0.1:8080/

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"bytes":%d,"duration_s":%.3f,"rps":%.2f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"min":%d,"max":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.bytes, secs, summary.requests / secs,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
