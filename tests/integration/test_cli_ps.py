"""``berth ps`` on the real stack: docker's columns and STATUS words, newest first, -a, -q,
-n, --filter, --format (template, table, json), --no-trunc, and its usage errors."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import uuid

from tests.integration.conftest import Stack
from tests.integration.test_cli import BERTH, cli_env, run

IMAGE = "local/busybox:latest"


async def run_detached(stack: Stack, *args: str) -> str:
    started = await run(stack, "run", "-d", *args)
    assert started.returncode == 0, started.stderr
    stack.created.append(started.stdout.strip())
    return started.stdout.strip()


async def test_cli_ps_lists_running_by_default_and_every_state_with_filters(stack: Stack) -> None:
    group = uuid.uuid4().hex[:8]
    up, done = f"ps-up-{group}", f"ps-done-{group}"
    up_id = await run_detached(stack, "--name", up, "-l", f"group={group}", IMAGE, "sleep", "600")
    done_id = await run_detached(
        stack, "--name", done, "-l", f"group={group}", "-l", "kind=batch", IMAGE, "sh", "-c",
        "exit 3",
    )  # fmt: skip
    assert (await run(stack, "wait", done)).stdout.strip() == "3"

    table = (await run(stack, "ps")).stdout.splitlines()
    mine = f"label=group={group}"
    every = await run(stack, "ps", "-a", "--filter", mine, "--format", "{{.Names}}|{{.Status}}")
    exited = await run(stack, "ps", "--filter", mine, "--filter", "status=exited", "-q")
    by_label = await run(stack, "ps", "-a", "--filter", "label=kind=batch", "--filter", mine, "-q")
    newest = await run(stack, "ps", "-n", "1", "--filter", mine, "--format", "json")
    full = await run(stack, "ps", "--no-trunc", "--filter", f"name={up}", "-q")
    latest = await run(stack, "ps", "-l", "--filter", mine, "--format", "{{.Names}} {{.State}}")

    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NODE", "NAMES"]  # fmt: skip
    line = next(row for row in table if row.endswith(up))
    assert line.startswith(up_id[:12]) and '"sleep 600"' in line and " Up " in line
    assert not any(row.endswith(done) for row in table)
    lines = every.stdout.splitlines()
    assert [row.split("|")[0] for row in lines] == [done, up]  # newest first
    assert lines[0].split("|")[1].startswith("Exited (3) ")
    assert lines[0].endswith(" ago")
    assert lines[1].split("|")[1].startswith("Up ")
    assert exited.stdout.split() == [done_id[:12]]
    assert by_label.stdout.split() == [done_id[:12]]
    shown = [json.loads(row) for row in newest.stdout.splitlines()]
    assert [(row["Names"], row["State"], row["Labels"]) for row in shown] == [
        (done, "exited", f"group={group},kind=batch")
    ]
    assert full.stdout.split() == [up_id]
    assert latest.stdout == f"{done} exited\n"


async def test_cli_ps_health_filter_and_status_suffix(stack: Stack) -> None:
    name = f"ps-health-{uuid.uuid4().hex[:8]}"
    await run_detached(
        stack, "--name", name, "--health-cmd", "true", "--health-interval", "500ms", IMAGE,
        "sleep", "600",
    )  # fmt: skip

    for _ in range(40):
        healthy = await run(
            stack, "ps", "--filter", "health=healthy", "--filter", f"name={name}",
            "--format", "table {{.Names}}\\t{{.Status}}",
        )  # fmt: skip
        if name in healthy.stdout:
            break
        await asyncio.sleep(0.25)

    header, row = healthy.stdout.splitlines()
    assert header.split() == ["NAMES", "STATUS"]
    assert row.startswith(name) and row.endswith("(healthy)")


async def test_cli_ps_bad_filter_or_template_exits_125_with_one_line(stack: Stack) -> None:
    key = await run(stack, "ps", "--filter", "color=red")
    status = await run(stack, "ps", "--filter", "status=sleeping")
    template = await run(stack, "ps", "--format", "{{.Names")

    assert (key.returncode, key.stderr) == (125, "berth: invalid filter 'color'\n")
    assert (status.returncode, status.stderr) == (125, "berth: invalid filter 'status=sleeping'\n")
    assert template.returncode == 125 and len(template.stderr.splitlines()) == 1
    assert template.stderr.startswith("berth: template: ")


def ps_at_a_terminal(stack: Stack, *args: str) -> tuple[int, str]:
    """``berth ps`` with its stdout on a pseudo-terminal, as a person runs it."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [str(BERTH), "ps", *args], stdout=follower, stderr=subprocess.PIPE,
            env={**cli_env(stack), "COLUMNS": "200"}, timeout=60,
        )  # fmt: skip
        os.close(follower)
        follower = -1
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return done.returncode, output.decode()


async def test_cli_ps_at_a_terminal_is_a_rich_table_with_a_coloured_status(stack: Stack) -> None:
    name = f"ps-tty-{uuid.uuid4().hex[:8]}"
    await run_detached(stack, "--name", name, IMAGE, "sleep", "600")

    code, output = await asyncio.to_thread(ps_at_a_terminal, stack, "--filter", f"name={name}")

    assert code == 0
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert plain.split()[:2] == ["CONTAINER", "ID"] and name in plain
    assert "\x1b[32mUp " in output  # green, as only a terminal gets it
