"""Whether a container has a health check: its own, or its image's once probed."""

from __future__ import annotations

import pytest

from berth.contract import HealthCheck
from berth.health import has_health_check

DECLARED = HealthCheck(test=["CMD", "true"])
DISABLED = HealthCheck(test=["NONE"])


@pytest.mark.parametrize(
    ("declared", "probed", "expected"),
    [
        (DECLARED, False, True),
        (DECLARED, True, True),
        (DISABLED, True, False),
        (None, True, True),
        (None, False, False),
    ],
)
def test_health_check_is_declared_and_enabled_or_probed_from_the_image(
    declared: HealthCheck | None, probed: bool, expected: bool
) -> None:
    assert has_health_check(declared, probed) is expected
