"""The node's allowed_capabilities setting: names as Docker takes them, checked at load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from berth.capabilities import check_permitted
from berth.config import Settings
from berth.errors import Forbidden


def test_allowed_capabilities_setting_normalizes_names() -> None:
    settings = Settings(allowed_capabilities=["net_admin", "CAP_SYS_TIME", "all"])
    assert settings.allowed_capabilities == ["CAP_NET_ADMIN", "CAP_SYS_TIME", "ALL"]


def test_allowed_capabilities_setting_refuses_an_unknown_name() -> None:
    with pytest.raises(ValidationError, match="unknown capability: 'fly'"):
        Settings(allowed_capabilities=["fly"])


def test_allowed_capabilities_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_ALLOWED_CAPABILITIES", '["NET_ADMIN"]')
    assert Settings().allowed_capabilities == ["CAP_NET_ADMIN"]


def test_check_permitted_names_the_field_and_every_refused_capability() -> None:
    check_permitted(["NET_ADMIN"], [], ["NET_ADMIN"], "on node n")
    check_permitted(["CHOWN"], ["ALL"], [], "on node n")  # within the default set
    with pytest.raises(Forbidden, match=r"config\.cap_add: CAP_SYS_TIME, CAP_BPF not permitted"):
        check_permitted(["SYS_TIME", "BPF", "NET_ADMIN"], [], ["NET_ADMIN"], "on node n")
