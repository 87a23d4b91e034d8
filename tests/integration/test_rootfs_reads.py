"""The spec step's reads of a container's /etc/passwd: a container cannot freeze or misdirect them.

Run on node-2, whose agent is a subprocess: were a read to block its event loop, the start would
time out here instead of hanging the test session with it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from berth.db.models import Node
from berth.errors import InvalidParameter
from tests.integration.node_agent import NODE, Node2
from tests.integration.test_crash_safety import wait_until

# Well above the start's own time, well below "frozen".
PROMPT_SECONDS = 15


async def run_once(node2: Node2, script: str) -> str:
    """A container (user ``root``) whose one run changes its own rootfs by ``script``."""
    container_id = await node2.create(user="root", cmd=["sh", "-c", script])
    await node2.stack.berth.start(container_id)
    assert await asyncio.wait_for(node2.stack.berth.wait(container_id), 30) == 0

    async def released() -> bool:  # the exit's own operation is done with it
        return (await node2.record(container_id)).operation is None

    await wait_until(released)
    return container_id


async def last_seen(node2: Node2) -> datetime:
    async with node2.sessions() as session:
        node = await session.get(Node, NODE)
        assert node is not None
        await session.refresh(node)
        return node.last_seen_at


async def test_start_with_a_fifo_passwd_fails_at_once_and_the_agent_keeps_serving(
    node2: Node2,
) -> None:
    container_id = await run_once(node2, "rm /etc/passwd && mkfifo /etc/passwd")
    seen_before = await last_seen(node2)
    began = time.monotonic()

    with pytest.raises(InvalidParameter, match=r"/etc/passwd .*is a FIFO"):
        await asyncio.wait_for(node2.stack.berth.start(container_id), PROMPT_SECONDS)

    assert time.monotonic() - began < PROMPT_SECONDS
    other = await node2.create()
    started = await asyncio.wait_for(node2.stack.berth.start(other), PROMPT_SECONDS)
    assert started.pid > 0

    async def heartbeat_advanced() -> bool:
        return await last_seen(node2) > seen_before

    await wait_until(heartbeat_advanced, timeout=PROMPT_SECONDS)
    assert (await node2.footprint(container_id)).empty
    assert await node2.leaks() == []


@pytest.fixture
def host_passwd() -> Iterator[Path]:
    """A host file that, if read as the container's passwd, would make its root uid 4242."""
    path = Path(f"/etc/berth-decoy-passwd-{uuid.uuid4().hex[:12]}")
    path.write_text("root:x:4242:4242:host:/:/bin/sh\n")
    yield path
    path.unlink(missing_ok=True)


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "dotdot"])
async def test_start_with_passwd_linked_to_a_host_file_does_not_read_it(
    node2: Node2, host_passwd: Path, relative: bool
) -> None:
    target = f"../../../../../../../..{host_passwd}" if relative else str(host_passwd)
    container_id = await run_once(node2, f"ln -sf {target} /etc/passwd")
    before = host_passwd.read_bytes()

    # Resolved inside the rootfs, the link leads nowhere: root is unknown there. Had the host's
    # file been read, the container would have started as uid 4242.
    with pytest.raises(InvalidParameter, match="unable to find user root"):
        await asyncio.wait_for(node2.stack.berth.start(container_id), PROMPT_SECONDS)

    assert host_passwd.read_bytes() == before
    assert (await node2.footprint(container_id)).empty
