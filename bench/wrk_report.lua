-- wrk script: request shape from the environment, a JSON summary at the end.
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0")
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.path = os.getenv("BENCH_PATH") or "/"
wrk.headers["x-api-key"] = "bench-key"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["anthropic-beta"] = "claude-code-20250219,interleaved-thinking-2025-05-14"
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
