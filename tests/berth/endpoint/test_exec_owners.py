"""Which endpoint execs are strays: none a call of this agent runs or another live agent made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from berth.config import NodePaths
from berth.endpoint.exec_owners import AgentExecs, exec_dirs, of_ended_agent
from berth.endpoint.holders import agent_identity, endpoint_exec_id
from tests.berth.test_leaks import ended_agent


def test_agent_execs_exec_a_call_runs_is_not_a_stray() -> None:
    execs = AgentExecs()
    exec_id = execs.new_id()

    execs.add("c1", exec_id)

    assert not execs.is_stray("c1", exec_id)


def test_agent_execs_own_exec_no_call_runs_is_a_stray() -> None:
    execs = AgentExecs()
    exec_id = execs.new_id()
    execs.add("c1", exec_id)

    execs.discard("c1", exec_id)

    assert execs.is_stray("c1", exec_id)


def test_agent_execs_exec_of_another_live_agent_is_not_a_stray() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        other = agent_identity(child.pid)
        assert other is not None

        assert not AgentExecs().is_stray("c1", endpoint_exec_id(other))
    finally:
        child.communicate(b"")


def test_agent_execs_exec_of_an_ended_agent_or_naming_none_is_a_stray() -> None:
    execs = AgentExecs()

    assert execs.is_stray("c1", endpoint_exec_id(ended_agent()))
    assert execs.is_stray("c1", "berth-exec-0123456789abcdef")


def test_agent_execs_other_execs_are_never_strays() -> None:
    assert not AgentExecs().is_stray("c1", "berth-health-0123")
    assert not of_ended_agent("c1", "berth-health-0123")


def test_of_ended_agent_judges_by_the_owner_alone() -> None:
    agent = agent_identity()
    assert agent is not None

    assert not of_ended_agent("c1", endpoint_exec_id(agent))
    assert of_ended_agent("c1", endpoint_exec_id(ended_agent()))


def test_exec_dirs_lists_each_container_s_exec_directories(tmp_path: Path) -> None:
    paths = NodePaths(tmp_path, "n1")
    assert exec_dirs(paths) == []
    made = [paths.workload_root / "exec" / c / e for c, e in (("c1", "e1"), ("c2", "e2"))]
    for directory in made:
        directory.mkdir(parents=True)

    assert sorted(exec_dirs(paths)) == made
