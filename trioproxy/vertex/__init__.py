"""Google Cloud Vertex AI's dialect of the Messages API, sans-IO.

Claude on Vertex takes the Messages request almost as it is:

* the request (``request.py``): the model in the path
  (``.../publishers/anthropic/models/{model}:rawPredict`` or
  ``:streamRawPredict``), the body without ``model`` but with
  ``anthropic_version: "vertex-2023-10-16"`` (``stream`` stays: it chooses
  nothing here but the answer's form), and without the fields (and betas)
  the cloud rejects, as for Bedrock; token counting at
  ``.../models/count-tokens:rawPredict`` with the model kept in the body;
* the answer: a stream is SSE and passes byte for byte, a JSON Message is
  Anthropic's; errors from Google's front (``{"error": {"code", "message",
  "status"}}``) become Anthropic's shape (``errors.py``), and Anthropic-shaped
  ones pass as they are.

Tokens (google-auth) are I/O and live in ``upstream/gcp.py``.
"""
