"""``berth run`` on the real stack: -d prints the id, without -d the output and the container's
exit code, docker create's flags with human units, and docker run's exit codes for failures."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from tests.integration.conftest import Stack
from tests.integration.test_cli import run

IMAGE = "local/busybox:latest"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_cli_run_detached_prints_the_id_and_takes_docker_s_create_flags(
    stack: Stack, tmp_path: Path
) -> None:
    name = unique("run-d")
    env_file = tmp_path / "env"
    env_file.write_text("# from a file\nFROM_FILE=1\n")
    label_file = tmp_path / "labels"
    label_file.write_text("from.file=yes\n")
    started = await run(
        stack, "run", "-d", "--name", name, "-m", "64m", "-e", "A=1", "--env-file", str(env_file),
        "-l", "tier=front", "--label-file", str(label_file), "-w", "/tmp", "-u", "0",
        "--restart", "on-failure:2", "--health-cmd", "true", "--health-interval", "1s",
        IMAGE, "sleep", "600",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    stack.created.append(container_id)
    assert re.fullmatch(r"[0-9a-f]{64}", container_id)

    shown = await run(
        stack, "inspect", "-f",
        "{{.State.Status}}|{{json .Config.Env}}|{{json .Config.Labels}}|{{.HostConfig.Memory}}"
        "|{{.Config.WorkingDir}}|{{.Config.User}}|{{json .HostConfig.RestartPolicy}}"
        "|{{.Config.Healthcheck.Interval}}",
        name,
    )  # fmt: skip

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().split("|") == [
        "running",
        '["FROM_FILE=1","A=1"]',
        '{"from.file":"yes","tier":"front"}',
        str(64 * 2**20),
        "/tmp",
        "0",
        '{"Name":"on-failure","MaximumRetryCount":2}',
        "1000000000",
    ]


async def test_cli_run_attached_prints_the_output_and_exits_with_the_container_s_code(
    stack: Stack,
) -> None:
    name = unique("run")

    ran = await run(stack, "run", "--name", name, IMAGE, "sh", "-c", "echo out; exit 3")
    stack.created.append(name)

    assert (ran.returncode, ran.stdout) == (3, "out\n"), ran.stderr


async def test_cli_run_rm_removes_the_container_when_it_exits(stack: Stack) -> None:
    name = unique("run-rm")

    ran = await run(stack, "run", "--rm", "--name", name, IMAGE, "sh", "-c", "exit 7")

    assert ran.returncode == 7, ran.stderr
    gone = await run(stack, "inspect", name)
    assert (gone.returncode, gone.stderr.strip()) == (1, f"Error: No such container: {name}")


async def test_cli_run_mount_type_bind_reaches_the_container(stack: Stack, bind_dir: Path) -> None:
    bind_dir.mkdir(parents=True)
    (bind_dir / "greeting").write_text("hello from the host\n")
    name = unique("run-bind")

    ran = await run(
        stack, "run", "--name", name, "--mount", f"type=bind,source={bind_dir},target=/data,ro",
        IMAGE, "cat", "/data/greeting",
    )  # fmt: skip
    stack.created.append(name)
    mounts = await run(stack, "inspect", "-f", "{{json .Mounts}}", name)

    assert (ran.returncode, ran.stdout) == (0, "hello from the host\n"), ran.stderr
    assert json.loads(mounts.stdout) == [
        {
            "Type": "bind",
            "Source": str(bind_dir),
            "Destination": "/data",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        }
    ]


async def test_cli_run_command_not_found_exits_127(stack: Stack) -> None:
    name = unique("run-127")

    ran = await run(stack, "run", "--name", name, IMAGE, "/no/such/command")
    stack.created.append(name)

    assert ran.returncode == 127, (ran.stdout, ran.stderr)
    assert ran.stderr.startswith("berth: Error response from daemon: ")


async def test_cli_run_usage_errors_exit_125_before_anything_is_created(stack: Stack) -> None:
    name = unique("run-bad")

    bad_size = await run(stack, "run", "--name", name, "-m", "5x", IMAGE)
    bad_duration = await run(stack, "run", "--name", name, "--health-interval", "5", IMAGE, "true")
    bad_volume = await run(stack, "run", "--name", name, "-v", "./data:/data", IMAGE)
    bad_name = await run(stack, "run", "--name=-bad", IMAGE)

    assert bad_size.returncode == 125 and "invalid size: '5x'" in bad_size.stderr
    assert bad_duration.returncode == 125 and "missing unit" in bad_duration.stderr
    assert bad_volume.returncode == 125
    assert bad_volume.stderr.strip().splitlines()[-1].startswith("berth: invalid volume")
    assert bad_name.returncode == 125
    assert "Invalid container name" in bad_name.stderr
    assert "Traceback" not in bad_size.stderr + bad_volume.stderr + bad_name.stderr
    assert (await run(stack, "inspect", name)).returncode == 1


async def test_cli_run_network_flags_reach_the_container_s_etc_files(stack: Stack) -> None:
    name = unique("run-net")

    ran = await run(
        stack, "run", "--name", name, "--hostname", "box-1", "--add-host", "db.internal:10.9.8.7",
        "--dns", "192.0.2.53", "--dns-search", "example.test", "--pull", "missing", IMAGE,
        "sh", "-c", "cat /etc/hostname; grep db.internal /etc/hosts; cat /etc/resolv.conf",
    )  # fmt: skip
    stack.created.append(name)
    shown = await run(
        stack, "inspect", "-f", "{{.Config.Hostname}} {{json .HostConfig.ExtraHosts}}", name
    )

    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == "box-1"
    assert lines[1].split() == ["10.9.8.7", "db.internal"]
    assert "nameserver 192.0.2.53" in lines and "search example.test" in lines
    assert shown.stdout.strip() == 'box-1 ["db.internal:10.9.8.7"]'


async def test_cli_run_bad_publish_spec_exits_125(stack: Stack) -> None:
    ran = await run(stack, "run", "-d", "-p", "80:90:100:110", IMAGE)

    assert ran.returncode == 125
    assert ran.stderr.startswith("berth: invalid argument '80:90:100:110' for -p")
