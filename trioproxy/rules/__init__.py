"""Rules about a request, kept apart from how it is carried (all pure).

Who may call (``access.py``, ``auth.py``), what the upstream request head
looks like (``upstream_head.py``), what a body says about itself
(``traits.py``), how a body is edited without re-serialising it
(``jsonedit.py``, ``transform.py``), demotion (``demote.py``) and CORS
(``cors.py``). The exchange calls these; none of them awaits, reads a clock
or touches a socket.
"""
