-- bench/wrk/saga.lua -- wrk script for bench/run.sh: starts one "apply" saga per request
-- (POST /v1/flows/apply/sagas, sagad answers when the saga has ended) and checks each answer.
--
-- Environment: SAGA_EXPECT = completed (happy, default) | compensated (fail);
--              SAGA_PREFER = optional Prefer header value (bench/run.sh --minimal).
-- An answer is "ok" when it is HTTP 200 and the saga's own status (the first "status" field of
-- the saga object) is SAGA_EXPECT; anything else counts as "unexpected" (wrong status, non-200,
-- unparsable). done() prints one line that bench/run.sh parses:
--     saga-check: ok=N unexpected=N non200=N wrong_status=N first=<status or http code>
-- The check is a plain string match on the body, so the driver stays cheap (no JSON decoding).
wrk.method = "POST"
wrk.body   = '{"studentId":"s-1","classId":"c-42","amount":100}'
wrk.headers["Content-Type"] = "application/json"
-- SAGA_PREFER=return=minimal: the saga without its history (docs/api.md), answered from memory
local prefer = os.getenv("SAGA_PREFER")
if prefer and prefer ~= "" then wrk.headers["Prefer"] = prefer end

local expect = os.getenv("SAGA_EXPECT") or "completed"
-- SAGA_LIMIT=N (bench/profile.sh): stop after N answers (those in flight still arrive)
local limit = tonumber(os.getenv("SAGA_LIMIT") or "0")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, unexpected, non200, wrong_status, first = 0, 0, 0, 0, ""
end

function response(status, headers, body)
  if limit > 0 and ok + unexpected + 1 >= limit then wrk.thread:stop() end
  if status ~= 200 then
    non200 = non200 + 1
    unexpected = unexpected + 1
    if first == "" then first = "http-" .. status end
    return
  end
  -- sagad's saga object has "status" right after "flow_version": the first match is the saga's.
  local st = string.match(body, '"status":"(%a+)"')
  if st == expect then
    ok = ok + 1
  else
    wrong_status = wrong_status + 1
    unexpected = unexpected + 1
    if first == "" then first = st or "no-status" end
  end
end

function done(summary, latency, requests)
  local t = { ok = 0, unexpected = 0, non200 = 0, wrong_status = 0, first = "" }
  for _, th in ipairs(threads) do
    t.ok = t.ok + (th:get("ok") or 0)
    t.unexpected = t.unexpected + (th:get("unexpected") or 0)
    t.non200 = t.non200 + (th:get("non200") or 0)
    t.wrong_status = t.wrong_status + (th:get("wrong_status") or 0)
    local f = th:get("first")
    if t.first == "" and f and f ~= "" then t.first = f end
  end
  io.write(string.format("saga-check: ok=%d unexpected=%d non200=%d wrong_status=%d first=%s\n",
    t.ok, t.unexpected, t.non200, t.wrong_status, t.first == "" and "-" or t.first))
  -- exact latency percentiles in microseconds, easier to parse than the --latency table
  io.write(string.format("saga-latency-us: p50=%d p99=%d max=%d mean=%.0f requests=%d duration_us=%d\n",
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean,
    summary.requests, summary.duration))
  local e = summary.errors
  io.write(string.format("saga-errors: connect=%d read=%d write=%d timeout=%d status=%d\n",
    e.connect, e.read, e.write, e.timeout, e.status))
end
