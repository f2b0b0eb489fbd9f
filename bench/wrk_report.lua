-- wrk script: request shape from the environment, a JSON summary at the end.
-- The headers are the ones Claude Code sends (wrk adds host and content-length:
-- 20 in all), so header parsing costs what it costs in real use.
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0")
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.path = os.getenv("BENCH_PATH") or "/"
-- BENCH_HEADERS: "name: value" lines (bench/loads.py CLAUDE_CODE_HEADERS).
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
if body_bytes > 0 then
  local prefix = '{"model":"claude-opus-4-7","max_tokens":64,"messages":[{"role":"user","content":"'
  local suffix = '"}]}'
  wrk.body = prefix .. string.rep("a", math.max(0, body_bytes - #prefix - #suffix)) .. suffix
  wrk.headers["content-type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
