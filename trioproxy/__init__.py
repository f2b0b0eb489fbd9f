"""trioproxy: a streaming reverse proxy for the Anthropic Claude API, on Trio.

A request travels listener -> connection -> transport -> exchange (stages) -> upstream -> back.
`proto/` holds the sans-IO protocol cores; everything that awaits lives outside it.
"""

__version__ = "0.1.0"
