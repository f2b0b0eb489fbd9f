from __future__ import annotations

import pytest


@pytest.fixture(params=["h1", "h2c"], ids=["up-h1", "up-h2c"])
def upstream_opts(request: pytest.FixtureRequest) -> dict[str, object]:
    """Run a test against both upstream protocols: HTTP/1.1 and h2c prior knowledge."""
    return {"upstream__h2_prior_knowledge": request.param == "h2c"}
