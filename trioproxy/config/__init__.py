"""Configuration: one table of settings (``settings``), read from defaults <
TOML < environment < flags by one loader (``load``, with ``providers``,
``secrets`` and ``pricing`` for the structured parts), into frozen values
(``model``) that import nothing of the project.

Every setting has one TOML key, one ``TRIOPROXY_*`` variable, a type, a
default and a line of documentation; the settings reference (docs/reference/settings.md) and ``check-config``
are generated from the same table. Any problem is a ``ConfigError`` whose
one-line message names the key; the CLI turns it into exit code 2.
"""

from __future__ import annotations

from trioproxy.config.load import (
    binding_problem,
    is_loopback,
    load_checked,
    load_config,
    parse_hostport,
)
from trioproxy.config.model import (
    AuthConfig,
    BreakerPolicy,
    Config,
    Credential,
    Endpoint,
    Limits,
    Origin,
    Price,
    ProviderConfig,
    QuotaConfig,
    RoutingConfig,
    ScrubConfig,
    Secret,
    Timeouts,
    UpstreamConfig,
)
from trioproxy.config.settings import SETTINGS, default_state_dir
from trioproxy.config.show import effective_settings
from trioproxy.config.source import ConfigError

__all__ = [
    "SETTINGS",
    "AuthConfig",
    "BreakerPolicy",
    "Config",
    "ConfigError",
    "Credential",
    "Endpoint",
    "Limits",
    "Origin",
    "Price",
    "ProviderConfig",
    "QuotaConfig",
    "RoutingConfig",
    "ScrubConfig",
    "Secret",
    "Timeouts",
    "UpstreamConfig",
    "binding_problem",
    "default_state_dir",
    "effective_settings",
    "is_loopback",
    "load_checked",
    "load_config",
    "parse_hostport",
]
