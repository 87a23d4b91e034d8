"""``berth exec`` through the node endpoint, on the real stack: the container's namespaces, exit
codes, stdin, a terminal driven by the test, the events, and no exec left behind."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import termios
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select as sql_select
from temporalio.client import Client

from berth.db.models import ContainerEvent
from berth.endpoint.deps import EndpointDeps
from berth.endpoint.exec import ExecService
from berth.endpoint.exec_owners import AgentExecs
from berth.endpoint.holders import EXEC_PREFIX, agent_identity, endpoint_exec_id
from berth.errors import NotFound
from berth.leaks import LeakKind, check_node
from berth.reconciler import Repair
from berth.runtime.exec_io import ProcessPipes, exec_dir, make_pipes, remove_pipes
from berth.worker import node_reconciler
from tests.berth.test_leaks import ended_agent
from tests.integration.conftest import Stack
from tests.integration.node_agent import Node2
from tests.integration.test_cli import BERTH, cli_env, run

IMAGE = "local/busybox:latest"


async def running_container(stack: Stack, *flags: str, cmd: tuple[str, ...] = ()) -> str:
    """A started container (``berth run -d``) with a unique name; returns its name."""
    name = f"exec-{uuid.uuid4().hex[:8]}"
    started = await run(
        stack, "run", "-d", "--name", name, "--node", stack.settings.node, *flags, IMAGE,
        *(cmd or ("sleep", "600")),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    stack.created.append(started.stdout.strip())
    return name


def berth_input(stack: Stack, stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BERTH), *args], input=stdin, capture_output=True, env=cli_env(stack), timeout=60
    )


async def execs_of(stack: Stack, container_id: str) -> list[str]:
    try:
        found = await stack.containerd.exec_ids(container_id)
    except NotFound:
        return []
    return [e for e in found if e.startswith(EXEC_PREFIX)]


@dataclass
class Terminal:
    """A ``berth`` process on a pseudo-terminal the test types into and reads."""

    process: subprocess.Popen[bytes]
    master: int
    seen: bytes = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def read_until(self, wanted: bytes, timeout: float = 30) -> bytes:
        """What the terminal shows until ``wanted`` appears (AssertionError after timeout)."""
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{wanted!r} not shown; the terminal showed {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the other end closed: nothing more comes
                    chunk = b""
                if not chunk:
                    assert wanted in self.seen, f"{wanted!r} not shown by the end: {self.seen!r}"
                self.seen += chunk
        return self.seen

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def set_window_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def on_terminal(stack: Stack, *args: str, rows: int = 24, cols: int = 80) -> Terminal:
    """``berth args...`` with stdin, stdout and stderr on a new pseudo-terminal of that size."""
    master, slave = os.openpty()
    os.set_blocking(master, True)
    set_window_size(master, rows, cols)
    process = subprocess.Popen(
        [str(BERTH), *args], stdin=slave, stdout=slave, stderr=slave, env=cli_env(stack)
    )
    os.close(slave)
    return Terminal(process, master)


async def shell_runs_typed_commands_and_exits_3(terminal: Terminal) -> None:
    """A shell on ``terminal`` shows its prompt, runs what is typed on a terminal of its own,
    and its ``exit 3`` ends the berth command with 3."""
    await asyncio.to_thread(terminal.read_until, b"# ")
    terminal.type(b"tty; echo typed-$((2*3))\r")
    shown = await asyncio.to_thread(terminal.read_until, b"typed-6")
    assert b"/dev/pts/" in shown
    terminal.type(b"exit 3\r")
    assert await asyncio.to_thread(terminal.wait) == 3


async def test_exec_runs_in_the_container_s_namespaces_its_hostname_and_ip(stack: Stack) -> None:
    name = await running_container(stack)
    shown = await run(
        stack, "inspect", "-f", "{{.Config.Hostname}} {{.NetworkSettings.IPAddress}}", name
    )
    hostname, ip = shown.stdout.split()

    done = await run(stack, "exec", name, "sh", "-c", "hostname; ip -o -4 addr show eth0")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == hostname
    assert f" {ip}/" in lines[1]


async def test_exec_stdout_and_stderr_apart_and_the_command_s_exit_code(stack: Stack) -> None:
    name = await running_container(stack)

    done = await run(stack, "exec", name, "sh", "-c", "echo out; echo err >&2; exit 5")

    assert (done.returncode, done.stdout, done.stderr) == (5, "out\n", "err\n")


async def test_exec_missing_command_exits_127_and_not_executable_126(stack: Stack) -> None:
    name = await running_container(stack)

    missing = await run(stack, "exec", name, "no-such-command")
    not_executable = await run(stack, "exec", name, "/etc/passwd")

    assert missing.returncode == 127, (missing.stdout, missing.stderr)
    assert "no-such-command" in missing.stderr
    assert not_executable.returncode == 126, (not_executable.stdout, not_executable.stderr)


async def test_exec_env_workdir_and_user_on_top_of_the_container_s(stack: Stack) -> None:
    name = await running_container(stack, "-e", "KEPT=1", "-e", "FOO=old")

    done = await run(
        stack, "exec", "-e", "FOO=new", "-w", "/tmp", "-u", "1000:1001", name,
        "sh", "-c", "echo $KEPT $FOO; pwd; id -u; id -g",
    )  # fmt: skip

    assert (done.returncode, done.stdout) == (0, "1 new\n/tmp\n1000\n1001\n"), done.stderr


async def test_exec_interactive_pipes_stdin_to_the_process_and_closes_it(stack: Stack) -> None:
    name = await running_container(stack)
    data = b"".join(b"line %d\n" % i for i in range(20000))  # past a FIFO's 64 KiB buffer

    command = ("exec", "-i", name, "sh", "-c", "cat; echo end")
    done = await asyncio.to_thread(berth_input, stack, data, *command)

    assert done.returncode == 0, done.stderr
    assert done.stdout == data + b"end\n"


async def test_exec_on_a_stopped_container_is_a_conflict(stack: Stack) -> None:
    name = await running_container(stack, cmd=("true",))
    await run(stack, "wait", name)

    done = await run(stack, "exec", name, "true")

    assert done.returncode == 1
    assert "is not running" in done.stderr


async def test_exec_on_a_paused_container_is_a_conflict_until_it_is_unpaused(stack: Stack) -> None:
    name = await running_container(stack)
    assert (await run(stack, "pause", name)).returncode == 0

    paused = await run(stack, "exec", name, "true")
    assert (await run(stack, "unpause", name)).returncode == 0
    unpaused = await run(stack, "exec", name, "true")

    assert paused.returncode == 1
    assert "is paused" in paused.stderr
    assert unpaused.returncode == 0, unpaused.stderr


async def test_exec_it_gives_a_terminal_a_prompt_typed_commands_and_exit_3(stack: Stack) -> None:
    name = await running_container(stack)
    with on_terminal(stack, "exec", "-it", name, "sh") as terminal:
        await shell_runs_typed_commands_and_exits_3(terminal)


async def test_exec_it_takes_the_terminal_s_size_and_follows_its_changes(stack: Stack) -> None:
    name = await running_container(stack)
    with on_terminal(stack, "exec", "-it", name, "sh", rows=30, cols=100) as terminal:
        await asyncio.to_thread(terminal.read_until, b"# ")
        terminal.type(b"stty size\r")
        await asyncio.to_thread(terminal.read_until, b"30 100")
        set_window_size(terminal.master, 40, 120)
        terminal.process.send_signal(signal.SIGWINCH)  # what the kernel sends a foreground job
        deadline = time.monotonic() + 30
        answer = b""
        while b"40 120" not in answer:  # the resize travels on its own: ask until it shows
            assert time.monotonic() < deadline, answer
            terminal.seen = b""
            terminal.type(b"stty size\r")
            answer = await asyncio.to_thread(terminal.read_until, b"# ")
        terminal.type(b"exit\r")
        assert await asyncio.to_thread(terminal.wait) == 0


async def test_exec_client_killed_mid_exec_leaves_no_exec_in_containerd(stack: Stack) -> None:
    name = await running_container(stack)
    container_id = stack.created[-1]
    client = subprocess.Popen(
        [str(BERTH), "exec", name, "sleep", "300"], env=cli_env(stack), stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not await execs_of(stack, container_id):
            assert time.monotonic() < deadline, "the exec never started"
            assert client.poll() is None
            await asyncio.sleep(0.1)
    finally:
        client.send_signal(signal.SIGKILL)
        await asyncio.to_thread(client.wait)

    deadline = time.monotonic() + 10
    while await execs_of(stack, container_id):
        assert time.monotonic() < deadline, "the exec outlived its client"
        await asyncio.sleep(0.1)
    top = await run(stack, "exec", name, "ps", "-o", "args")
    assert "sleep 300" not in top.stdout
    fifos = exec_dir(stack.settings.node_paths(), container_id, "-").parent
    assert not fifos.exists() or list(fifos.iterdir()) == []
    runtime, paths = stack.runtime, stack.settings.node_paths()
    node = stack.settings.node
    assert await check_node(node, paths, runtime.containerd, runtime.cni, stack.sessions) == []


async def test_exec_records_exec_create_and_exec_die_with_its_exit_code(stack: Stack) -> None:
    name = await running_container(stack)
    container_id = stack.created[-1]

    done = await run(stack, "exec", name, "sh", "-c", "exit 4")
    assert done.returncode == 4

    deadline = time.monotonic() + 10
    while True:
        async with stack.sessions() as session:
            events = (
                await session.scalars(
                    sql_select(ContainerEvent)
                    .where(ContainerEvent.container_id == container_id)
                    .order_by(ContainerEvent.id)
                )
            ).all()
        execs = [e for e in events if e.action.startswith("exec_")]
        if len(execs) == 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert [e.action for e in execs] == ["exec_create: sh -c exit 4", "exec_die"]
    assert execs[1].attributes["exitCode"] == "4"
    assert execs[0].attributes["execID"] == execs[1].attributes["execID"]


async def left_exec(stack: Stack, container_id: str, exec_id: str, out: Path) -> ProcessPipes:
    """What an agent leaves when it crashes mid-exec: ``sleep 300`` running in the container's
    task as ``exec_id``, and the exec's FIFO directory."""
    paths = stack.settings.node_paths()
    pipes = await asyncio.to_thread(
        make_pipes, exec_dir(paths, container_id, exec_id), False, False
    )
    process = {**json.loads(paths.spec(container_id).read_text())["process"]}
    process["args"] = ["sleep", "300"]
    await stack.containerd.exec_process(container_id, exec_id, process, out)
    await stack.containerd.start_process(container_id, exec_id)
    return pipes


async def exec_findings(stack: Stack) -> list[tuple[str, str | None]]:
    runtime, paths = stack.runtime, stack.settings.node_paths()
    found = await check_node(
        stack.settings.node, paths, runtime.containerd, runtime.cni, stack.sessions
    )
    return sorted(
        (f.subject, f.container_id) for f in found if f.kind is LeakKind.EXEC_OF_ENDED_AGENT
    )


async def test_exec_strays_of_a_crashed_agent_are_reported_then_deleted_by_the_next_one(
    stack: Stack, tmp_path: Path
) -> None:
    name = await running_container(stack)
    container_id = stack.created[-1]
    stray = endpoint_exec_id(ended_agent())
    leftover = await left_exec(stack, container_id, stray, tmp_path / "out")
    reported = await exec_findings(stack)
    service = ExecService(
        EndpointDeps(stack.settings, stack.settings.node_paths(), stack.sessions, stack.containerd)
    )

    await service.remove_stray_execs()

    # The exec in its task and its FIFO directory.
    assert reported == [(stray, container_id), (stray, container_id)]
    assert await execs_of(stack, container_id) == []
    assert not leftover.directory.exists()
    assert await exec_findings(stack) == []
    top = await run(stack, "exec", name, "ps", "-o", "args")
    assert "sleep 300" not in top.stdout


async def test_exec_reconciler_deletes_strays_and_keeps_execs_that_live_calls_run(
    stack: Stack, temporal: Client, tmp_path: Path
) -> None:
    name = await running_container(stack)
    container_id = stack.created[-1]
    # This test plays an agent of its own: a process that stays alive while the test runs.
    stand_in = subprocess.Popen(["sleep", "300"])
    try:
        agent = agent_identity(stand_in.pid)
        assert agent is not None
        execs = AgentExecs(agent)
        crashed = endpoint_exec_id(ended_agent())
        running, unowned = execs.new_id(), execs.new_id()
        execs.add(container_id, running)  # a call of the agent runs it; none runs ``unowned``
        for exec_id in (crashed, running, unowned):
            await left_exec(stack, container_id, exec_id, tmp_path / exec_id)
        # And a call of the stack's own agent, in flight (another live agent's, to this one).
        client = subprocess.Popen(
            [str(BERTH), "exec", name, "sleep", "301"],
            env=cli_env(stack),
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while len(await execs_of(stack, container_id)) < 4:
                assert time.monotonic() < deadline, "the CLI's exec never started"
                await asyncio.sleep(0.1)
            reconciler = node_reconciler(
                temporal, stack.settings, stack.sessions, stack.runtime, execs
            )

            repairs = await reconciler.reconcile()
            left = await execs_of(stack, container_id)
        finally:
            client.send_signal(signal.SIGKILL)
            await asyncio.to_thread(client.wait)
    finally:
        stand_in.kill()
        stand_in.wait()

    strays = [r for r in repairs if r.kind == "stray-exec"]
    assert sorted(strays, key=str) == sorted(
        [Repair("stray-exec", crashed, container_id), Repair("stray-exec", unowned, container_id)],
        key=str,
    )
    paths = stack.settings.node_paths()
    kept_dir = exec_dir(paths, container_id, running).exists()
    await stack.containerd.delete_process(container_id, running)
    await asyncio.to_thread(remove_pipes, exec_dir(paths, container_id, running))
    assert running in left and crashed not in left and unowned not in left
    assert len(left) == 2  # and the CLI's, the stack's agent's own
    assert kept_dir and not exec_dir(paths, container_id, unowned).exists()


async def test_exec_reaches_a_container_on_another_node_through_that_node_s_agent(
    node2: Node2,
) -> None:
    stack = node2.stack
    name = f"exec-n2-{uuid.uuid4().hex[:8]}"
    started = await run(
        stack, "run", "-d", "--name", name, "--node", node2.settings.node, IMAGE, "sleep", "600"
    )
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    node2.created.append(container_id)

    done = await run(stack, "exec", name, "sh", "-c", "hostname; exit 6")

    assert (done.returncode, done.stdout) == (6, f"{container_id[:12]}\n"), done.stderr
