"""The leak checker's judgement of mount holders and endpoint execs, from a node view built by
hand."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from berth.config import NodePaths
from berth.contract import ContainerState
from berth.db.models import Container, MountHolder
from berth.endpoint.holders import agent_identity, call_holder, endpoint_exec_id
from berth.leaks import LeakKind, NodeView, find_leaks

NODE = "node-1"
CONTAINER = "c" * 64


def view_with(paths: NodePaths, *holder_names: str) -> NodeView:
    target = paths.rootfs(CONTAINER)
    container = Container(
        id=CONTAINER, name="web", image="img", node=NODE, config={}, state=ContainerState.RUNNING
    )
    return NodeView(
        node=NODE,
        mounted_targets=frozenset({target.resolve()}),
        netns_files=(),
        bound_netns=frozenset(),
        reservations={},
        containerd_containers=frozenset({CONTAINER}),
        tasks={},
        containers={CONTAINER: container},
        holders=tuple(
            MountHolder(node=NODE, target=str(target), holder=name, container_id=CONTAINER)
            for name in holder_names
        ),
    )


def ended_agent() -> str:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    agent = agent_identity(child.pid)
    child.wait()
    assert agent is not None
    return agent


def holder_findings(view: NodeView, paths: NodePaths) -> list[str]:
    return [f.detail for f in find_leaks(view, paths) if f.kind is LeakKind.HOLDER_OF_ENDED_CALL]


def test_find_leaks_endpoint_holder_of_an_ended_agent_is_reported(tmp_path: Path) -> None:
    paths = NodePaths(tmp_path, NODE)
    dead = call_holder(ended_agent())

    assert holder_findings(view_with(paths, "task", dead), paths) == [f"holder {dead}"]


def test_find_leaks_endpoint_holder_of_a_live_agent_is_not_reported(tmp_path: Path) -> None:
    paths = NodePaths(tmp_path, NODE)
    agent = agent_identity()
    assert agent is not None

    assert holder_findings(view_with(paths, "task", call_holder(agent)), paths) == []


def exec_findings(paths: NodePaths, *exec_ids: str) -> list[tuple[str, str]]:
    exec_root = paths.workload_root / "exec" / CONTAINER
    view = dataclasses.replace(
        view_with(paths, "task"),
        endpoint_execs=tuple((CONTAINER, exec_id) for exec_id in exec_ids),
        exec_dirs=tuple(exec_root / exec_id for exec_id in exec_ids),
    )
    found = find_leaks(view, paths)
    return [(f.subject, f.detail) for f in found if f.kind is LeakKind.EXEC_OF_ENDED_AGENT]


def test_find_leaks_endpoint_exec_of_an_ended_agent_is_reported_with_its_fifos(
    tmp_path: Path,
) -> None:
    paths = NodePaths(tmp_path, NODE)
    dead = endpoint_exec_id(ended_agent())
    fifos = paths.workload_root / "exec" / CONTAINER / dead

    assert exec_findings(paths, dead) == [
        (dead, "exec in its task"),
        (dead, f"FIFO directory {fifos}"),
    ]


def test_find_leaks_endpoint_exec_of_a_live_agent_is_not_reported(tmp_path: Path) -> None:
    paths = NodePaths(tmp_path, NODE)
    agent = agent_identity()
    assert agent is not None

    assert exec_findings(paths, endpoint_exec_id(agent)) == []
