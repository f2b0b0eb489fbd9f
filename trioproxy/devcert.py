"""`trioproxy dev-cert`: a local CA and a server certificate for testing TLS.

trustme makes them (it exists for exactly this); they are for a laptop or a
test bench, never for production, where a real CA (Let's Encrypt through the
front proxy, or your own) issues the certificate.
"""

from __future__ import annotations

import os
from pathlib import Path

import trustme


def write_dev_cert(directory: Path, hosts: list[str]) -> dict[str, Path]:
    """Write ca.pem, cert.pem (leaf + chain) and key.pem (mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="trioproxy dev CA")
    leaf = ca.issue_cert(*hosts)
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    with paths["cert"].open("wb") as fh:
        for pem in leaf.cert_chain_pems:
            fh.write(pem.bytes())
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(leaf.private_key_pem.bytes())
    return paths
