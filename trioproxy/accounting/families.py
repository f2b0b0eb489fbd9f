"""Every metric family ``/metrics`` exposes: its type, labels and meaning,
declared once. The exposition (metrics.py, admin/snapshot.py) takes each
family's type and help from here, and the documentation's metrics
reference is generated from it; a test checks every exposed sample's
labels against the declared ones."""

from __future__ import annotations

from typing import NamedTuple


class Family(NamedTuple):
    kind: str  # counter, gauge or histogram
    help: str
    labels: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "trioproxy_requests_total": Family(
        "counter",
        "Proxied requests by status class and code, caller, model, streaming, provider and origin (upstream: the provider's answer; proxy: the proxy's own)",
        ("class", "code", "caller", "model", "stream", "provider", "origin"),
    ),
    "trioproxy_tokens_total": Family(
        "counter",
        "Tokens by type (input, cache_creation_input, cache_read_input, output)",
        ("type", "caller", "model", "provider"),
    ),
    "trioproxy_body_bytes_total": Family(
        "counter",
        "Request (in) and response (out) body bytes",
        ("direction",),
    ),
    "trioproxy_stream_errors_total": Family(
        "counter",
        "event: error inside 200 streams",
        (),
    ),
    "trioproxy_stream_pings_total": Family(
        "counter",
        "Keep-alive `event: ping`s written while an upstream stream was silent",
        (),
    ),
    "trioproxy_demoted_total": Family(
        "counter",
        "Non-streaming requests sent upstream as streams and answered as JSON",
        (),
    ),
    "trioproxy_body_retention_skipped_total": Family(
        "counter",
        "Requests forwarded without a kept copy of their body (limits.retained_body_bytes): not retried, not failed over",
        (),
    ),
    "trioproxy_client_disconnects_total": Family(
        "counter",
        "Clients gone before the response ended",
        (),
    ),
    "trioproxy_upstream_retries_total": Family(
        "counter",
        "Requests sent again on a fresh upstream connection",
        (),
    ),
    "trioproxy_scrub_hits_total": Family(
        "counter",
        "Values replaced by placeholders, by detector",
        ("detector",),
    ),
    "trioproxy_scrub_skipped_total": Family(
        "counter",
        "Request bodies passed unscrubbed while scrubbing is on, by reason",
        ("reason",),
    ),
    "trioproxy_caller_limited_total": Family(
        "counter",
        "Requests refused by a caller's own limit, by caller and reason (expired, model, unpriced_model, rpm, tpm, max_concurrent, budget)",
        ("caller", "reason"),
    ),
    "trioproxy_telemetry_dropped_total": Family(
        "counter",
        "Spans dropped because the export queue was full (the OpenTelemetry collector down or slow); requests never wait for it",
        (),
    ),
    "trioproxy_telemetry_relay_total": Family(
        "counter",
        "Callers' own OTLP exports through the relay, by signal (metrics, logs, traces) and outcome (accepted, refused, dropped; forwarded or failed, per collector)",
        ("signal", "outcome"),
    ),
    "trioproxy_alerts_total": Family(
        "counter",
        "Alerts to alerts.webhook_urls by kind (budget, breaker, credential, worker) and outcome (sent, failed, dropped: the queue was full; duplicate: another process posted it)",
        ("kind", "outcome"),
    ),
    "trioproxy_route_requests_total": Family(
        "counter",
        "Requests that matched a [[routes]] rule, by rule",
        ("route",),
    ),
    "trioproxy_caller_spend_usd_total": Family(
        "counter",
        "Estimated spend by caller, priced with the price database (genai-prices) and [pricing]",
        ("caller",),
    ),
    "trioproxy_request_duration_seconds": Family(
        "histogram",
        "Whole request, to the end of the response",
        (),
    ),
    "trioproxy_time_to_headers_seconds": Family(
        "histogram",
        "Until the upstream's response headers",
        (),
    ),
    "trioproxy_time_to_first_token_seconds": Family(
        "histogram",
        "Until the first byte of a successful Messages answer reached the client (a stream's first event), by provider and model",
        ("provider", "model"),
    ),
    "trioproxy_requests_in_flight": Family(
        "gauge",
        "Requests being handled now, by client protocol",
        ("protocol",),
    ),
    "trioproxy_client_connections": Family(
        "gauge",
        "Open client connections by protocol",
        ("protocol",),
    ),
    "trioproxy_draining": Family(
        "gauge",
        "1 while draining",
        (),
    ),
    "trioproxy_uptime_seconds": Family(
        "gauge",
        "Seconds since start",
        (),
    ),
    "trioproxy_workers": Family(
        "gauge",
        "Worker processes whose counts are in this view",
        (),
    ),
    "trioproxy_log_rows_total": Family(
        "counter",
        "Conversation-log rows (log_bodies) by outcome: written; dropped (too many bodies waiting for the writer); lost (the database refused them)",
        ("outcome",),
    ),
    "trioproxy_upstream_connections": Family(
        "gauge",
        "Upstream connections by provider and state (h1_idle, h1_active, h2, opening)",
        ("provider", "state"),
    ),
    "trioproxy_upstream_h2_streams": Family(
        "gauge",
        "HTTP/2 streams in use on upstream connections, by provider",
        ("provider",),
    ),
    "process_cpu_seconds_total": Family(
        "counter",
        "User and system CPU time, seconds (every worker's)",
        (),
    ),
    "process_resident_memory_bytes": Family(
        "gauge",
        "Resident memory, bytes (every worker's)",
        (),
    ),
    "process_open_fds": Family(
        "gauge",
        "Open file descriptors (every worker's)",
        (),
    ),
    "process_max_fds": Family(
        "gauge",
        "The limit on open file descriptors of one process",
        (),
    ),
    "process_start_time_seconds": Family(
        "gauge",
        "When the oldest process of the view started, seconds since the epoch",
        (),
    ),
    "trioproxy_build_info": Family(
        "gauge",
        "1, labelled with the running version",
        ("version",),
    ),
    "trioproxy_caller_budget_remaining": Family(
        "gauge",
        "What is left of a caller's budget in its window, by caller and unit (usd or tokens)",
        ("caller", "unit"),
    ),
    "trioproxy_provider_available": Family(
        "gauge",
        "1 when the provider can be tried now (not open, cooling down or over quota)",
        ("provider",),
    ),
    "trioproxy_provider_breaker_state": Family(
        "gauge",
        "Circuit breaker: 0 closed, 1 half-open, 2 open",
        ("provider",),
    ),
    "trioproxy_provider_consecutive_failures": Family(
        "gauge",
        "Consecutive failed requests (each counted once, its retries included)",
        ("provider",),
    ),
    "trioproxy_provider_in_flight": Family(
        "gauge",
        "Requests on the provider now",
        ("provider",),
    ),
    "trioproxy_provider_quota_used_tokens": Family(
        "gauge",
        "Tokens counted in the current quota window (providers with a quota)",
        ("provider",),
    ),
    "trioproxy_provider_quota_limit_tokens": Family(
        "gauge",
        "Token budget of the quota window",
        ("provider",),
    ),
    "trioproxy_provider_retries_total": Family(
        "counter",
        "Attempts retried on the same provider (connection errors; 503 while another provider could serve)",
        ("provider",),
    ),
    "trioproxy_provider_failovers_total": Family(
        "counter",
        "Requests that failed over away from the provider",
        ("provider",),
    ),
    "trioproxy_state_store_up": Family(
        "gauge",
        "1 while the shared state store answers (0: serving on the local view)",
        (),
    ),
}
