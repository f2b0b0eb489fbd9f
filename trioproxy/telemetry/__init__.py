"""OpenTelemetry traces of each request (``[telemetry]``): the trace
context a request carries (context.py, pure), what the exchange notes on
the way (note.py), the spans built from it once the request is over
(spans.py), and their export in the SDK's batch processor thread
(exporter.py). Nothing of it waits on the collector."""
