-- wrk script: POST one batch of 1-recipient jobs to /mail/batch.
--   wrk -t2 -c16 -d10s --latency -s bench/batch.lua http://127.0.0.1:PORT/mail/batch [-- JOBS]
-- Optional script argument (after "--"): jobs per batch, 1..100 (default 100). Every job is
-- the one bench/post.lua sends to /mail/send.
-- done() prints one line "WRKJSON {...}" with the summary, as post.lua's (done() runs in wrk's
-- main Lua state, which never sees the arguments: run.sh knows the batch size);
-- jobs/s = jobs per batch x 2xx responses / duration.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local job = '{"from":"bench@example.org","to":["rcpt@example.net"],"subject":"bench","body":"hello"}'
local per = 100
local req = nil

local function body(n)
  local jobs = {}
  for i = 1, n do jobs[i] = job end
  return '{"jobs":[' .. table.concat(jobs, ",") .. ']}'
end

function init(args)
  per = tonumber(args[1] or "100") or 100
  wrk.body = body(per)
  req = wrk.format()
end

function request()
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f,"non2xx":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.status, e.connect, e.read, e.write, e.timeout))
end
