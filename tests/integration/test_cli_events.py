"""``berth events`` on the real stack: it follows by default (new events only, until
interrupted), --since/--until bound it, --filter and --format shape it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid

from tests.integration.conftest import Stack
from tests.integration.test_cli import BERTH, cli_env, run

IMAGE = "local/busybox:latest"


async def test_cli_events_follows_new_events_until_interrupted(stack: Stack) -> None:
    name = f"ev-{uuid.uuid4().hex[:8]}"
    created = await run(stack, "run", "-d", "--name", name, IMAGE, "sleep", "600")
    assert created.returncode == 0, created.stderr
    stack.created.append(created.stdout.strip())
    follower = await asyncio.create_subprocess_exec(
        str(BERTH), "events", "--filter", f"container={name}", "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(stack),
    )  # fmt: skip
    try:
        # The follower reads the events recorded so far first (and prints none of them).
        await asyncio.sleep(3)
        assert follower.returncode is None
        stopped = await run(stack, "stop", "-t", "0", name)
        assert stopped.returncode == 0, stopped.stderr
        assert follower.stdout is not None
        lines = []
        while "stop" not in " ".join(lines):
            line = await asyncio.wait_for(follower.stdout.readline(), 20)
            assert line, "events ended by itself"
            lines.append(line.decode().strip())
        assert follower.returncode is None  # still following
    finally:
        with contextlib.suppress(ProcessLookupError):
            follower.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(follower.wait(), 20)

    assert lines == [f"container die {name}", f"container stop {name}"]
    assert code == 130


async def test_cli_events_since_until_prints_the_range_and_exits(stack: Stack) -> None:
    name = f"ev-{uuid.uuid4().hex[:8]}"
    began = time.time() - 1
    created = await run(stack, "run", "-d", "--name", name, "-l", "team=a", IMAGE, "sleep", "600")
    assert created.returncode == 0, created.stderr
    container_id = created.stdout.strip()
    stack.created.append(container_id)
    until = f"{time.time() + 1:.3f}"

    ranged = await run(
        stack, "events", "--since", f"{began:.3f}", "--until", until, "--filter",
        f"container={container_id[:12]}",
    )  # fmt: skip
    labelled = await run(
        stack, "events", "--since", f"{began:.3f}", "--until", until, "--filter", "label=team=a",
        "--filter", "event=start", "--format", "json",
    )  # fmt: skip
    later = await run(
        stack, "events", "--since", until, "--until", until, "-f", f"container={name}"
    )

    assert ranged.returncode == 0, ranged.stderr
    lines = ranged.stdout.splitlines()
    assert [line.split()[1:4] for line in lines] == [
        ["container", "create", container_id],
        ["container", "start", container_id],
    ]
    assert f"name={name}" in lines[0] and "image=local/busybox:latest" in lines[0]
    assert f'"ID":"{container_id}"' in labelled.stdout and '"Action":"start"' in labelled.stdout
    assert len(labelled.stdout.splitlines()) == 1
    assert (later.returncode, later.stdout) == (0, "")


async def test_cli_events_bad_filter_or_time_exits_125(stack: Stack) -> None:
    key = await run(stack, "events", "--no-follow", "--filter", "color=red")
    since = await run(stack, "events", "--no-follow", "--since", "yesterday")

    assert (key.returncode, key.stderr) == (125, "berth: invalid filter 'color'\n")
    assert since.returncode == 125 and since.stderr.startswith("berth: invalid time 'yesterday'")
