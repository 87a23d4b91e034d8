"""``berth inspect`` on the real stack: docker's field names, -f/--format, and partial output
when some references name no container."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.integration.conftest import Stack
from tests.integration.test_cli import run

IMAGE = "local/busybox:latest"


async def test_cli_inspect_format_prints_found_ones_and_errors_for_the_rest(
    stack: Stack, bind_dir: Path
) -> None:
    bind_dir.mkdir(parents=True)
    name = f"insp-{uuid.uuid4().hex[:8]}"
    created = await run(
        stack, "create", "--name", name, "-m", "1g", "-l", "k=v", "-e", "A=1", "--restart",
        "always", "-v", f"{bind_dir}:/data:ro", IMAGE, "sleep", "60",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    stack.created.append(created.stdout.strip())

    shown = await run(
        stack, "inspect", "-f",
        '{{json .Config.Cmd}}|{{.HostConfig.Memory}}|{{index .Config.Labels "k"}}'
        "|{{.HostConfig.RestartPolicy.Name}}|{{json .HostConfig.Binds}}|{{.State.Status}}"
        "|{{range .Mounts}}{{.Destination}}:{{.RW}}{{end}}|{{.Config.Env}}",
        "missing-one", name, "missing-two",
    )  # fmt: skip

    assert shown.returncode == 1
    assert shown.stdout == (
        f'["sleep","60"]|1073741824|v|always|["{bind_dir}:/data:ro"]|created|/data:false|[A=1]\n'
    )
    assert shown.stderr.splitlines() == [
        "Error: No such container: missing-one",
        "Error: No such container: missing-two",
    ]


async def test_cli_inspect_json_has_docker_s_sections(stack: Stack) -> None:
    container_id = await stack.create(image=IMAGE, cmd=["sleep", "60"], labels={"a": "b"})

    shown = await run(stack, "inspect", container_id)

    assert shown.returncode == 0, shown.stderr
    (described,) = json.loads(shown.stdout)
    assert described["Id"] == container_id
    assert described["Config"]["Cmd"] == ["sleep", "60"]
    assert described["Config"]["Labels"] == {"a": "b"}
    assert described["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert described["State"]["StartedAt"] == "0001-01-01T00:00:00Z"
    assert described["Mounts"] == [] and described["SeccompProfile"] == "default"


async def test_cli_inspect_template_errors_exit_1_or_125(stack: Stack) -> None:
    container_id = await stack.create(image=IMAGE, cmd=["sleep", "60"])

    nil = await run(stack, "inspect", "-f", "{{.State.Health.Status}}", container_id)
    unknown_field = await run(stack, "inspect", "-f", "{{.NoSuchField}}", container_id)
    malformed = await run(stack, "inspect", "-f", "{{.Id", container_id)

    assert nil.returncode == 1 and "nil pointer evaluating" in nil.stderr
    assert (unknown_field.returncode, unknown_field.stdout) == (0, "<no value>\n")
    assert malformed.returncode == 125 and malformed.stderr.startswith("berth: template: ")
