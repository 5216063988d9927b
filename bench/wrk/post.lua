-- bench/wrk/post.lua -- the participants' own ceiling: one participant call per request
-- (POST /classes with a small JSON body), as /work/shared/bench/peers/wrk/post.lua.
wrk.method = "POST"
wrk.body   = '{"studentId":"s-1","classId":"c-42"}'
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  io.write(string.format("saga-latency-us: p50=%d p99=%d max=%d mean=%.0f requests=%d duration_us=%d\n",
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean,
    summary.requests, summary.duration))
  local e = summary.errors
  io.write(string.format("saga-errors: connect=%d read=%d write=%d timeout=%d status=%d\n",
    e.connect, e.read, e.write, e.timeout, e.status))
end
