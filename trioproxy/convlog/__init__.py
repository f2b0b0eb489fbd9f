"""The conversation log (``log_bodies``): request and response bodies as
they left for the upstream and arrived from it, for an operator to read
back (the viewer, ``trioproxy log export``).

Theory of operation:

* On the loop, two watching stages (exchange/) keep *references* to the
  chunks as they pass (capture.py): no copy, no parse, up to
  ``log.max_body_bytes`` each way. Streaming is never held back.
* When the request is accounted for, the capture goes to the journal with
  the access line and the ledger row; a full queue drops the log row
  (counted), never the request.
* In the journal's writer thread (rows.py) the bodies are joined,
  compressed with zstd, an SSE answer rebuilt into its Message, search text
  extracted, and the batch inserted in one transaction.
* What is stored is what went upstream: with scrubbing on, the scrubbed
  request, and the answer before its placeholders were put back, so a
  secret never reaches the disk.
"""
