-- wrk script of loadtests/bench.py: POST /eval {"code": "1+1"}, checks every answer's body, and
-- prints one JSON line of results at the end (wrk's threads each have their own Lua state, so
-- each counts its own wrong answers and done() adds them up).
wrk.method = "POST"
wrk.path = "/eval"
wrk.body = '{"code": "1+1"}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrong = 0
end

function response(status, headers, body)
  -- ours and the peer's both answer {"status": "ok", "result": {"text/plain": "2"}, ...}
  if status ~= 200 or not body:find('"text/plain"%s*:%s*"2"') or not body:find('"status"%s*:%s*"ok"') then
    wrong = wrong + 1
  end
end

function done(summary, latency, requests)
  local wrong_total = 0
  for _, thread in ipairs(threads) do
    wrong_total = wrong_total + thread:get("wrong")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "wrong": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, wrong_total, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
