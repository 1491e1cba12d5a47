-- wrk script: POST one 1-recipient JSON job to /mail/send.
--   wrk -t2 -c64 -d10s --latency -s bench/post.lua http://127.0.0.1:PORT/mail/send
-- Optional script arguments (after "--"):
--   1: stop after this many responses in total (0 = run for -d only); split evenly
--      over the threads, each thread stops itself once it has its share.
--   2: number of wrk threads (-t), needed to split the limit.
-- done() prints one line "WRKJSON {...}" with the summary, read by bench/run.sh.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"from":"bench@example.org","to":["rcpt@example.net"],"subject":"bench","body":"hello"}'

local req = nil
local limit = 0
local seen = 0

function init(args)
  local total = tonumber(args[1] or "0") or 0
  local threads = tonumber(args[2] or "1") or 1
  if total > 0 then
    limit = math.ceil(total / threads)
  else
    response = nil -- wrk then skips parsing responses (faster)
  end
  req = wrk.format()
end

function request()
  return req
end

function response(status, headers, body)
  seen = seen + 1
  if seen >= limit then
    wrk.thread:stop()
  end
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
