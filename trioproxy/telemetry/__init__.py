"""OpenTelemetry (``[telemetry]``): the spans built from what the exchange
noted on the way (accounting/trace_note.py; the W3C trace context is
proto/tracecontext.py) once a request is over (spans.py), their export in
the SDK's batch processor thread (exporter.py), metrics over OTLP
(meters.py), and the relay of callers' own telemetry (stamp.py,
relay.py). Nothing of it waits on the collector."""
