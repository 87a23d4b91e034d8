"""The session's suite claim (tests/support/stack.py), shared by every test tree that needs one.

Unit tests request nothing from it; the first test that needs a stack claims a suite index and
the session's end clears everything made under it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Suite, claim_suite


@pytest.fixture(scope="session")
def suite() -> Iterator[Suite]:
    with claim_suite() as claimed:
        yield claimed
