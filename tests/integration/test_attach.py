"""``berth attach`` and ``berth run -it`` on the real stack: a container's terminal through its
node's endpoint, typed into and read by the test, detached with ctrl-p ctrl-q."""

from __future__ import annotations

import asyncio
import uuid

from tests.integration.conftest import Stack
from tests.integration.test_cli import run
from tests.integration.test_exec import (
    IMAGE,
    on_terminal,
    running_container,
    shell_runs_typed_commands_and_exits_3,
)


async def state_of(stack: Stack, name: str) -> str:
    shown = await run(stack, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name)
    return shown.stdout.strip()


async def test_attach_sees_output_sends_input_and_detach_keys_leave_it_running(
    stack: Stack,
) -> None:
    name = await running_container(stack, "-it", cmd=("sh",))
    with on_terminal(stack, "attach", name) as terminal:
        terminal.type(b"echo attached-$((40+2))\r")
        await asyncio.to_thread(terminal.read_until, b"attached-42")
        terminal.type(b"\x10\x11")  # ctrl-p ctrl-q
        assert await asyncio.to_thread(terminal.wait) == 0

    assert await state_of(stack, name) == "running 0"
    with on_terminal(stack, "attach", name) as again:
        again.type(b"exit 4\r")
        assert await asyncio.to_thread(again.wait) == 4
    assert await state_of(stack, name) == "exited 4"


async def test_attach_to_a_container_without_a_terminal_is_refused(stack: Stack) -> None:
    name = await running_container(stack)

    done = await run(stack, "attach", name)

    assert done.returncode == 1
    assert "not created with -t" in done.stderr


async def test_run_it_shows_the_prompt_runs_typed_commands_and_exits_with_its_code(
    stack: Stack,
) -> None:
    name = f"run-it-{uuid.uuid4().hex[:8]}"
    terminal = on_terminal(
        stack, "run", "-it", "--name", name, "--node", stack.settings.node, IMAGE, "sh"
    )
    stack.created.append(name)
    with terminal:
        await shell_runs_typed_commands_and_exits_3(terminal)


async def test_run_it_of_a_command_that_ends_at_once_shows_its_output_and_code(
    stack: Stack,
) -> None:
    name = f"run-it-{uuid.uuid4().hex[:8]}"
    terminal = on_terminal(
        stack, "run", "-it", "--name", name, "--node", stack.settings.node, IMAGE,
        "sh", "-c", "echo quick-$((3*3)); exit 5",
    )  # fmt: skip
    stack.created.append(name)
    with terminal:
        await asyncio.to_thread(terminal.read_until, b"quick-9")
        assert await asyncio.to_thread(terminal.wait) == 5
