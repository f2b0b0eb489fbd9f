"""nginx configurations the bench generates: an origin and a reverse proxy."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# A Messages answer as the API sends one: 671 bytes of JSON with 14 headers
# (nginx's own five, and nine of the API's: request-id, rate limits...).
_TEXT = "Here is the change you asked for: the handler now returns early when the cache is warm. "
SMALL_JSON = (
    '{"id":"msg_01Bench000000000000000000","type":"message","role":"assistant",'
    '"model":"claude-sonnet-4-6","content":[{"type":"text","text":"'
    + (_TEXT * 4)[:345]
    + '"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,'
    '"cache_creation_input_tokens":0,"cache_read_input_tokens":48213,"output_tokens":112,'
    '"service_tier":"standard"}}'
)
API_HEADERS = """
      add_header request-id req_011CBench0000000000000000;
      add_header anthropic-organization-id 00000000-0000-0000-0000-000000000000;
      add_header anthropic-ratelimit-requests-limit 4000;
      add_header anthropic-ratelimit-requests-remaining 3999;
      add_header anthropic-ratelimit-requests-reset 2026-11-30T12:00:01Z;
      add_header anthropic-ratelimit-tokens-limit 2000000;
      add_header anthropic-ratelimit-tokens-remaining 1997905;
      add_header anthropic-ratelimit-tokens-reset 2026-11-30T12:00:01Z;
      add_header via "1.1 google";"""

COMMON = """
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
master_process on;
pid {dir}/{name}.pid;
error_log {dir}/{name}.error.log warn;
events {{ worker_connections 32768; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {dir}/{name}-body;
  proxy_temp_path {dir}/{name}-proxy;
  fastcgi_temp_path {dir}/{name}-fcgi;
  uwsgi_temp_path {dir}/{name}-uwsgi;
  scgi_temp_path {dir}/{name}-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  types {{ text/event-stream sse; application/json json; }}
  {body}
}}
"""

ORIGIN = """
  server {{
    listen 127.0.0.1:{port};
    listen 127.0.0.1:{h2port} http2;  # cleartext prior knowledge (nginx 1.22 syntax)
    listen 127.0.0.1:{tlsport} ssl http2;  # h2 over TLS, as api.anthropic.com
    ssl_certificate {dir}/origin-cert.pem;
    ssl_certificate_key {dir}/origin-key.pem;
    http2_max_concurrent_streams 256;
    client_max_body_size 2m;
    client_body_buffer_size 1m;
    location = /v1/messages {{
      default_type application/json;{api_headers}
      return 200 '{small}';
    }}
    # /upload reads the whole body before answering (request buffering on an
    # internal hop): answering early would make the proxies under test cut
    # their uploads, which is not what scenario C measures.
    location = /upload {{
      client_body_buffer_size 1m;
      proxy_pass http://127.0.0.1:{port}/uploaded;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
    location = /uploaded {{ default_type application/json; return 200 '{{"ok":true}}'; }}
    location /static/ {{ root {dir}; sendfile on; }}
  }}
"""

PROXY = """
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port};
    listen 127.0.0.1:{h2port} http2;
    client_max_body_size 40m;
    proxy_buffering off;
    proxy_request_buffering off;
    proxy_http_version 1.1;
    location / {{
      proxy_pass http://origin;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:{origin};
    }}
  }}
"""


@dataclass
class Nginx:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    h2port: int
    tlsport: int = 0  # the origin's h2-over-TLS port

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_nginx(
    name: str, body: str, workdir: Path, port: int, h2port: int, cpu: int | None
) -> Nginx:
    conf = workdir / f"{name}.conf"
    conf.write_text(COMMON.format(dir=workdir, name=name, body=body))
    cmd = ["nginx", "-c", str(conf), "-p", str(workdir)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"nginx {name} failed: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        if _listening(port):
            return Nginx(name, proc, port, h2port)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"nginx {name} did not start")


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def origin_config(port: int, h2port: int, tlsport: int, workdir: Path) -> str:
    """The origin; it expects origin-cert.pem / origin-key.pem in ``workdir``
    (``write_origin_cert``)."""
    return ORIGIN.format(
        port=port,
        h2port=h2port,
        tlsport=tlsport,
        small=SMALL_JSON,
        api_headers=API_HEADERS,
        dir=workdir,
    )


def write_origin_cert(workdir: Path) -> Path:
    """A trustme CA and a certificate for 127.0.0.1; returns the CA file the
    proxies are given as their upstream CA bundle."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(workdir / "origin-cert.pem"))
    leaf.private_key_pem.write_to_path(str(workdir / "origin-key.pem"))
    ca.cert_pem.write_to_path(str(workdir / "origin-ca.pem"))
    for name in ("origin-cert.pem", "origin-key.pem", "origin-ca.pem"):
        (workdir / name).chmod(0o644)
    return workdir / "origin-ca.pem"


def proxy_config(port: int, h2port: int, origin: int) -> str:
    return PROXY.format(port=port, h2port=h2port, origin=origin)


def write_sse_file(workdir: Path, size: int) -> None:
    """A static SSE body of about ``size`` bytes, shaped like a Messages stream."""
    static = workdir / "static"
    static.mkdir(exist_ok=True)
    event = (
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"bench text bench text bench text"}}\n\n'
    )
    (static / "stream.sse").write_text(event * (size // len(event)))  # whole events only
    # nginx workers run unprivileged: the temporary tree must be readable.
    for path in (workdir, static, static / "stream.sse"):
        path.chmod(0o755)
