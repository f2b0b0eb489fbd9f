"""Alerts to the operator's chat (``alerts.webhook_urls``): what they say
and when (events.py, pure), and how they are sent (sender.py: off the
request path, once per crossing across every process, retried)."""
