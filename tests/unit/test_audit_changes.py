"""What the audit trail records of a change (audit/changes.py, reload.py):
secrets as hashes, and only what a reload changed."""

from __future__ import annotations

import hashlib

from tests.helpers import make_config
from trioproxy.audit.changes import hashed, redacted
from trioproxy.audit.reload import reload_changes

GROUPS = [{"name": "eng", "match": "eng-*", "rpm": 10}]
OIDC = {
    "auth__oidc__issuer": "https://idp.example",
    "auth__oidc__audience": "trioproxy",
    "upstream__api_key": "sk-ant-provider",
}


def test_secrets_are_hashed_at_any_depth() -> None:
    entry = {"name": "bob", "secrets": ["plain-secret-0123456789"], "nested": {"token": "t0k"}}
    out = redacted(entry)
    assert out["secrets"] == ["sha256:" + hashlib.sha256(b"plain-secret-0123456789").hexdigest()]
    assert out["nested"]["token"] == hashed("t0k") and out["name"] == "bob"
    assert "plain-secret" not in str(out)


def test_a_reload_records_the_settings_and_group_policies_it_changed() -> None:
    old = make_config(state_dir="/s", caller_groups=GROUPS, admin__token="old-admin-token", **OIDC)
    new = make_config(
        state_dir="/s",
        caller_groups=[{**GROUPS[0], "rpm": 20}, {"name": "ops", "match": "ops"}],
        admin__token="new-admin-token",
        log_slow_seconds=99,
        **OIDC,
    )
    changes = {(c.action, c.subject): c for c in reload_changes(old, new)}
    settings = changes[("reload.settings", "")]
    assert settings.before["admin.token"] == hashed("old-admin-token")
    assert settings.after["admin.token"] == hashed("new-admin-token")
    assert settings.after["log_slow_seconds"] == 99 and "listen" not in settings.after
    eng = changes[("reload.caller_groups", "eng")]
    assert (eng.before["rpm"], eng.after["rpm"]) == (10, 20)
    assert changes[("reload.caller_groups", "ops")].before is None
    assert "old-admin-token" not in str([c.row() for c in changes.values()])
    assert reload_changes(new, new) == []
