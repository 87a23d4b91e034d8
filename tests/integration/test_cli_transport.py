"""The CLI's light paths on the real stack: the writing verbs over Temporal's HTTP API (encrypted
payloads included), the reads from PostgreSQL without Temporal, and docker's exit codes when Berth
itself fails (125, one line, no traceback)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType

from berth.contract import ContainerState
from berth.db.repository import ContainerRepository
from berth.temporal_http import ENCRYPTED
from tests.integration.conftest import TEST_CODEC_KEYS, Stack

BERTH = Path(sys.executable).parent / "berth"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_environ(stack: Stack) -> dict[str, str]:
    """The settings a ``berth`` call needs for the suite's stack (beside the process's own)."""
    return {
        "BERTH_DATABASE_URL": stack.settings.database_url.get_secret_value(),
        "BERTH_TEMPORAL_NAMESPACE": stack.settings.temporal_namespace,
        "BERTH_STATE_DIR": str(stack.settings.state_dir),
        "BERTH_CODEC_KEYS": TEST_CODEC_KEYS,
        "BERTH_CONTAINERD_NAMESPACE": stack.settings.containerd_namespace,
    }


def berth(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **cli_environ(stack), **env}
    return subprocess.run(
        [str(BERTH), *args], capture_output=True, text=True, env=environ, timeout=60
    )


async def run(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the workers that serve the CLI run on this test's event loop.
    return await asyncio.to_thread(berth, stack, *args, **env)


async def state_of(stack: Stack, container_id: str) -> ContainerState:
    async with stack.sessions() as session:
        return (await ContainerRepository(session).get(container_id)).state


def test_cli_tests_reach_temporal_over_its_http_api(stack: Stack) -> None:
    # The suite's stack names the frontend's HTTP API: the verbs below take the light path.
    assert os.environ.get("BERTH_TEMPORAL_HTTP_ADDRESS")


async def test_cli_start_stop_restart_over_http_api_run_the_node_sagas_encrypted(
    stack: Stack,
) -> None:
    container_id = await stack.create(cmd=["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"])

    started = await run(stack, "start", container_id[:12])
    assert (started.returncode, started.stdout, started.stderr) == (0, f"{container_id[:12]}\n", "")
    assert await state_of(stack, container_id) is ContainerState.RUNNING
    restarted = await run(stack, "restart", container_id)
    assert (restarted.returncode, restarted.stderr) == (0, "")
    assert await state_of(stack, container_id) is ContainerState.RUNNING
    stopped = await run(stack, "stop", "-t", "5", container_id)
    assert (stopped.returncode, stopped.stderr) == (0, "")
    assert await state_of(stack, container_id) is ContainerState.EXITED

    # The same workflow ids as the client's, and the input sealed with the codec keys.
    handle = stack.berth.temporal.get_workflow_handle(f"container-start-{container_id}")
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attributes = event.workflow_execution_started_event_attributes
            assert attributes.workflow_type.name == "ContainerStartOnNode"
            (payload,) = attributes.input.payloads
            assert payload.metadata["encoding"] == ENCRYPTED
            break
    else:
        raise AssertionError("no started event")


async def test_cli_without_http_address_uses_the_http_api_beside_the_grpc_port(
    stack: Stack,
) -> None:
    # Unset, the HTTP address is the gRPC one's port + 10. Nothing serves gRPC at this
    # BERTH_TEMPORAL_ADDRESS, only the HTTP API 10 ports up: the start succeeds over HTTP only.
    container_id = await stack.create(cmd=["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"])
    host, _, http_port = os.environ["BERTH_TEMPORAL_HTTP_ADDRESS"].rpartition(":")
    environ = {**os.environ, **cli_environ(stack)}
    del environ["BERTH_TEMPORAL_HTTP_ADDRESS"]
    environ |= {
        "BERTH_TEMPORAL_ADDRESS": f"{host}:{int(http_port) - 10}",
        "BERTH_CLIENT_WAIT_SECONDS": "0",
    }

    started = await asyncio.to_thread(
        subprocess.run,
        [str(BERTH), "start", container_id],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )

    assert (started.returncode, started.stderr) == (0, "")
    assert await state_of(stack, container_id) is ContainerState.RUNNING
    await run(stack, "stop", "-t", "1", container_id)


async def test_cli_without_http_address_falls_back_to_the_sdk_when_nothing_listens_there(
    stack: Stack,
) -> None:
    # The suite's gRPC address, whose port + 10 nothing listens on: the probe is refused and
    # the SDK's client runs the start.
    host, _, grpc_port = stack.settings.temporal_address.rpartition(":")
    with socket.socket() as probe:
        if probe.connect_ex((host, int(grpc_port) + 10)) == 0:
            pytest.skip("something listens 10 ports above the suite's gRPC port")
    container_id = await stack.create(cmd=["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"])
    environ = {**os.environ, **cli_environ(stack)}
    del environ["BERTH_TEMPORAL_HTTP_ADDRESS"]
    environ["BERTH_TEMPORAL_ADDRESS"] = stack.settings.temporal_address

    started = await asyncio.to_thread(
        subprocess.run,
        [str(BERTH), "start", container_id],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )

    assert (started.returncode, started.stderr) == (0, "")
    assert await state_of(stack, container_id) is ContainerState.RUNNING
    await run(stack, "stop", "-t", "1", container_id)


async def test_cli_start_of_unknown_container_over_http_api_exits_1_like_docker(
    stack: Stack,
) -> None:
    result = await run(stack, "start", "no-such-box-h2")

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error response from daemon: No such container: no-such-box-h2",
        "Error: failed to start containers: no-such-box-h2",
    ]


async def test_cli_saga_failure_over_http_api_is_a_daemon_error_exit_1(stack: Stack) -> None:
    container_id = await stack.create(cmd=["/no/such/binary"])

    result = await run(stack, "start", container_id)

    assert result.returncode == 1
    first, second = result.stderr.splitlines()
    assert first.startswith("Error response from daemon: ") and "/no/such/binary" in first
    assert second == f"Error: failed to start containers: {container_id}"


async def test_cli_with_temporal_http_api_unreachable_exits_125_with_one_line(
    stack: Stack,
) -> None:
    container_id = await stack.create()
    port = closed_port()

    result = await run(
        stack,
        "start",
        container_id,
        BERTH_TEMPORAL_HTTP_ADDRESS=f"127.0.0.1:{port}",
        BERTH_CLIENT_WAIT_SECONDS="0",
    )

    assert result.returncode == 125
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"berth: cannot connect to Temporal at 127.0.0.1:{port} (HTTP API): [Errno 111] "
        "Connection refused"
    ]


async def test_cli_with_temporal_unreachable_through_the_sdk_exits_125_with_one_line(
    stack: Stack,
) -> None:
    container_id = await stack.create()
    port = closed_port()

    result = await run(
        stack,
        "start",
        container_id,
        BERTH_TEMPORAL_HTTP_ADDRESS="",
        BERTH_TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        BERTH_CLIENT_WAIT_SECONDS="0",
    )

    assert result.returncode == 125
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"berth: cannot connect to Temporal at 127.0.0.1:{port}: ")
    assert "Traceback" not in result.stderr


async def test_cli_with_postgresql_unreachable_exits_125_with_one_line(stack: Stack) -> None:
    port = closed_port()
    url = f"postgresql+psycopg://postgres:secret-h2@127.0.0.1:{port}/berth_nowhere"

    for verb in (["ps"], ["inspect", "x"], ["events", "--no-follow"], ["start", "x"]):
        result = await run(stack, *verb, BERTH_DATABASE_URL=url, BERTH_CLIENT_WAIT_SECONDS="0")

        assert result.returncode == 125, (verb, result.stderr)
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"berth: cannot connect to PostgreSQL at 127.0.0.1:{port}/"), verb
        assert "secret-h2" not in line


async def test_cli_with_malformed_setting_exits_125_naming_it(stack: Stack) -> None:
    result = await run(stack, "ps", BERTH_CLIENT_WAIT_SECONDS="soon")

    assert result.returncode == 125
    assert result.stderr.splitlines() == [
        "berth: bad settings: client_wait_seconds: not a number: 'soon'"
    ]


async def test_cli_usage_error_exits_125(stack: Stack) -> None:
    result = await run(stack, "stop", "--no-such-flag", "x")

    assert result.returncode == 125
    assert "unrecognized arguments: --no-such-flag" in result.stderr.splitlines()[-1]


async def test_cli_light_verbs_exit_normally_without_a_signal(stack: Stack) -> None:
    # They load no SDK core (no native threads), so the interpreter finalizes as usual: no
    # os._exit, and no SIGABRT or SIGSEGV at exit (temporalio/sdk-python#300).
    container_id = await stack.create(cmd=["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"])
    codes = []
    for _ in range(5):
        for verb in (["start"], ["ps", "-q"], ["inspect"], ["stop", "-t", "5"]):
            args = [*verb, container_id] if verb[0] != "ps" else verb
            codes.append((verb[0], (await run(stack, *args)).returncode))

    assert codes == [(verb, 0) for verb, _ in codes]


async def test_cli_sdk_verbs_exit_normally_without_a_signal(stack: Stack) -> None:
    # image and fleet still load the SDK's core; its client is freed before the interpreter
    # finalizes (berth.cli.main.release_sdk_client): no SIGABRT after the command succeeded,
    # which about 1 call in 10 met before (temporalio/sdk-python#300).
    results = [await run(stack, "image", "ls") for _ in range(15)]

    assert [r.returncode for r in results] == [0] * len(results)
    assert [r.stderr for r in results if "Fatal Python error" in r.stderr] == []


# Run a verb in this interpreter, then write the modules it loaded to the file named last.
_LOADED_BY_VERB = (
    "import json, sys\n"
    "from berth.cli.main import run\n"
    "code = run(sys.argv[1:-1])\n"
    "with open(sys.argv[-1], 'w') as out:\n"
    "    json.dump(sorted(sys.modules), out)\n"
    "sys.exit(code)\n"
)
# Never loaded by a verb on the light paths (pydantic is: create and run validate the config).
SDK_ORM_AND_SETTINGS = ("temporalio", "sqlalchemy", "psycopg", "pydantic_settings", "aiohttp")


# What the verbs that need only Context.operations() run without.
LOOP = ("asyncio", "asyncpg")


def modules_loaded_by(
    stack: Stack, tmp_path: Path, *args: str, heavy: tuple[str, ...] = SDK_ORM_AND_SETTINGS
) -> list[str]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_BY_VERB, *args, str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **cli_environ(stack)},
        timeout=60,
    )
    assert done.returncode == 0, (args, done.stderr)
    return [m for m in json.loads(out.read_text()) if m.split(".")[0] in heavy]


async def test_cli_verbs_load_no_sdk_orm_or_settings_model(stack: Stack, tmp_path: Path) -> None:
    name = f"light-{uuid.uuid4().hex[:8]}"
    exports = stack.settings.node_paths().exports_dir
    exports.mkdir(mode=0o700, parents=True, exist_ok=True)
    verbs = [
        ("run", "-d", "--name", name, "local/busybox:latest", "sh", "-c", "echo hi; sleep 600"),
        ("ps", "-a"),
        ("inspect", name),
        ("logs", name),
        ("stop", "-t", "1", name),
        ("wait", name),
        ("start", name),
        ("rm", "-f", name),
        ("create", "--name", name, "local/busybox:latest", "true"),
        ("export", "-o", str(exports / f"{name}.tar"), name),
        ("run", "--rm", "local/busybox:latest", "sh", "-c", "echo attached"),
        ("events", "--no-follow"),
        ("rm", name),
    ]

    loaded = {args[0] + " " + args[1]: await asyncio.to_thread(
        modules_loaded_by, stack, tmp_path, *args) for args in verbs}  # fmt: skip

    (exports / f"{name}.tar").unlink()
    assert loaded == {verb: [] for verb in loaded}


async def test_cli_writing_verbs_run_without_asyncio_or_asyncpg(
    stack: Stack, tmp_path: Path
) -> None:
    # Their reads are berth.db.wire's and their calls Temporal's HTTP API, both blocking: the
    # verb runs with no event loop (about a quarter of its own CPU time saved).
    container_id = await stack.create(cmd=["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"])
    verbs = [
        ("start", container_id),
        ("pause", container_id),
        ("unpause", container_id),
        ("restart", "-t", "5", container_id),
        ("stop", "-t", "5", container_id),
        ("rm", container_id),
    ]

    loaded = {
        args[0]: await asyncio.to_thread(modules_loaded_by, stack, tmp_path, *args, heavy=LOOP)
        for args in verbs
    }

    assert loaded == {verb: [] for verb in loaded}
    async with stack.sessions() as session:
        assert await ContainerRepository(session).find(container_id) is None


async def test_cli_export_over_http_api_writes_the_containers_filesystem(stack: Stack) -> None:
    container_id = await stack.create()
    exports = stack.settings.node_paths().exports_dir
    exports.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = exports / f"cli-{uuid.uuid4().hex[:8]}.tar"
    try:
        exported = await run(stack, "export", "-o", str(target), container_id)

        assert (exported.returncode, exported.stderr) == (0, "")
        with tarfile.open(target) as tar:
            assert "bin/busybox" in {name.lstrip("./") for name in tar.getnames()}
    finally:
        target.unlink(missing_ok=True)
