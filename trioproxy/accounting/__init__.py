"""Watching what flows through, never changing it: token usage per response,
and the one structured log line per request."""
