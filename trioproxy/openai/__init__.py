"""Anthropic's Messages API to OpenAI's Chat Completions and back (sans-IO).

``request``: a Messages request body becomes a Chat Completions one, with a
note for every feature dropped on the way, or ``Untranslatable`` (a 400
naming the feature) for one that cannot be dropped without changing what
was asked. ``answer``: a Chat Completions JSON answer becomes one Message.
``stream``: Chat Completions SSE chunks become Anthropic's SSE events, chunk
by chunk as they arrive (nothing is held beyond one partial line).
``errors``: an OpenAI-style error answer becomes Anthropic's shape and
status.

What happens to each Anthropic feature is one table, ``FEATURES`` in
``request``, which docs/providers.md reproduces.
"""
