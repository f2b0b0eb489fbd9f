"""The fake upstream over TLS with ALPN h2 (the shape of the production path to
api.anthropic.com), for the bench's HTTP/2-over-TLS upstream rows. Writes a
trustme CA to ``CA_FILE`` for the proxy to trust (upstream.ca_bundle).
Run: ``python -m bench.tlsfake PORT CA_FILE``.
"""

from __future__ import annotations

import ssl
import sys

import trio
import trustme

from trioproxy.config import load_config
from trioproxy.fake.app import FakeUpstream
from trioproxy.server import Server


async def main(port: int, ca_file: str) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(ca_file)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    cfg = load_config(env={}, overrides={"listen": f"127.0.0.1:{port}", "log_level": "warning"})
    await Server(cfg, ssl_context=ctx).serve_app(FakeUpstream())


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2])
