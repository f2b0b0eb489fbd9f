"""Amazon Bedrock's dialect of the Messages API, sans-IO.

Bedrock serves Claude's Messages API with four differences, each a pure
function here:

* the request (``request.py``): the model in the path
  (``/model/{id}/invoke`` or ``/invoke-with-response-stream``), the body
  without ``model`` and ``stream`` but with ``anthropic_version`` and the
  ``anthropic_beta`` list that Anthropic takes as a header, and without the
  fields (and their betas) Bedrock rejects;
* the streamed answer (``stream.py``): AWS's binary event stream, each
  ``chunk`` event carrying one of Anthropic's SSE events base64-encoded in
  JSON; translated to SSE as frames arrive;
* the errors (``errors.py``): AWS's exception names and statuses, mapped to
  Anthropic's error shape and status, their words kept;
* token counting: ``/model/{id}/count-tokens`` with the invoke body wrapped.

Signing (SigV4) and credentials are I/O and live in ``upstream/aws.py``.
"""
