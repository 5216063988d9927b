-- bench/wrk/start.lua -- wrk script for bench/waiting.sh: starts sagas without waiting for them
-- (POST .../sagas?wait=none with Prefer: respond-async, return=minimal: sagad answers 202 once
-- the start is durable) until SAGA_COUNT answers were 202, then stops (the answers in flight
-- at that moment still arrive, so a few more sagas than SAGA_COUNT may start).
-- done() prints: start-check: accepted=N other=N first=<http code of the first other answer>
wrk.method = "POST"
wrk.body   = '{"studentId":"s-1","classId":"c-42","amount":100}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "respond-async, return=minimal"

local limit = tonumber(os.getenv("SAGA_COUNT") or "100000")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  accepted, other, first = 0, 0, "-"
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  else
    other = other + 1
    if first == "-" then first = tostring(status) end
  end
  if accepted >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local a, o, f = 0, 0, "-"
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    o = o + t:get("other")
    if f == "-" then f = t:get("first") end
  end
  io.write(string.format("start-check: accepted=%d other=%d first=%s requests=%d duration_us=%d\n",
    a, o, f, summary.requests, summary.duration))
end
