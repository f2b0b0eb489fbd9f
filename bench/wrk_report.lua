-- wrk script: request shape from the environment, a JSON summary at the end.
-- The headers are the ones Claude Code sends (wrk adds host and content-length:
-- 20 in all), so header parsing costs what it costs in real use.
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0")
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.path = os.getenv("BENCH_PATH") or "/"
wrk.headers["x-api-key"] = "bench-key"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["anthropic-beta"] = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,context-management-2025-06-27"
wrk.headers["user-agent"] = "claude-cli/2.1.330 (external, cli)"
wrk.headers["x-app"] = "cli"
wrk.headers["x-claude-code-session-id"] = "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab"
wrk.headers["x-stainless-arch"] = "x64"
wrk.headers["x-stainless-lang"] = "js"
wrk.headers["x-stainless-os"] = "Linux"
wrk.headers["x-stainless-package-version"] = "0.60.0"
wrk.headers["x-stainless-retry-count"] = "0"
wrk.headers["x-stainless-runtime"] = "node"
wrk.headers["x-stainless-runtime-version"] = "v22.19.0"
wrk.headers["x-stainless-timeout"] = "600"
wrk.headers["accept"] = "application/json"
wrk.headers["accept-encoding"] = "gzip, deflate, br, zstd"
wrk.headers["connection"] = "keep-alive"
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
