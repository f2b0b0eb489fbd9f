"""The two documents the proxy serves about itself: the dashboard page and
the OpenAPI description. Built once per process (they never change while it
runs), served from memory."""

from __future__ import annotations

import functools
from importlib import resources

import orjson

from trioproxy.admin.openapi import spec


@functools.cache
def dashboard_html() -> bytes:
    return resources.files("trioproxy.admin").joinpath("dashboard.html").read_bytes()


@functools.cache
def openapi_json() -> bytes:
    return orjson.dumps(spec(), option=orjson.OPT_INDENT_2)
