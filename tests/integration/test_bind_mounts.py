"""Bind mounts on the real stack: allowed host paths appear in the container, others never do."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from berth.errors import Forbidden
from tests.integration.conftest import BIND_ROOT, Stack


async def test_bind_under_the_allowed_root_is_visible_read_only_in_the_container(
    stack: Stack,
) -> None:
    shared = BIND_ROOT / uuid.uuid4().hex[:8]
    shared.mkdir(parents=True)
    (shared / "hello").write_text("from the host\n")
    script = "cat /data/hello; touch /data/new 2>/dev/null || echo read-only; sleep 60"
    container_id = await stack.create(
        cmd=["sh", "-c", script],
        binds=[{"source": str(shared), "target": "/data", "read_only": True}],
    )

    await stack.berth.start(container_id)

    for _ in range(50):
        if (await stack.berth.logs(container_id)).count(b"\n") >= 2:
            break
        await asyncio.sleep(0.1)
    assert await stack.berth.logs(container_id) == b"from the host\nread-only\n"
    assert not (shared / "new").exists()


async def test_bind_outside_the_allowed_roots_is_forbidden_and_nothing_is_written(
    stack: Stack,
) -> None:
    with pytest.raises(Forbidden, match=r"config\.binds\[0\]\.source"):
        await stack.create(binds=[{"source": "/etc", "target": "/host-etc"}])
