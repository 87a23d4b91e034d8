"""Endpoint calls' mount holders: alive exactly while the agent process that took them runs."""

from __future__ import annotations

import subprocess
import sys

from berth.endpoint.holders import (
    agent_identity,
    call_holder,
    endpoint_exec_alive,
    endpoint_exec_id,
    endpoint_holder_alive,
    exec_owner,
    is_endpoint_exec,
    is_endpoint_holder,
)


def test_call_holder_of_this_process_is_alive() -> None:
    agent = agent_identity()
    assert agent is not None

    holder = call_holder(agent)

    assert is_endpoint_holder(holder) and endpoint_holder_alive(holder)


def test_call_holders_of_one_agent_differ_per_call() -> None:
    agent = agent_identity()
    assert agent is not None

    assert call_holder(agent) != call_holder(agent)


def test_call_holder_of_an_ended_process_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    agent = agent_identity(child.pid)
    assert agent is not None
    holder = call_holder(agent)
    assert endpoint_holder_alive(holder)

    child.communicate(b"")

    assert not endpoint_holder_alive(holder)


def test_call_holder_of_another_boot_is_dead() -> None:
    agent = agent_identity()
    assert agent is not None
    _, pid, ticks = agent.split(".")

    assert not endpoint_holder_alive(
        call_holder(f"00000000-0000-0000-0000-000000000000.{pid}.{ticks}")
    )


def test_call_holder_with_a_reused_pid_is_dead() -> None:
    agent = agent_identity()
    assert agent is not None
    boot, pid, ticks = agent.split(".")

    assert not endpoint_holder_alive(call_holder(f"{boot}.{pid}.{int(ticks) + 1}"))


def test_malformed_or_other_holders_are_not_endpoint_holders_alive() -> None:
    assert not is_endpoint_holder("task") and not is_endpoint_holder("export:wf@run")
    assert not endpoint_holder_alive("endpoint:garbage")


def test_endpoint_exec_id_of_this_process_names_a_live_agent_within_containerd_s_76() -> None:
    agent = agent_identity()
    assert agent is not None

    exec_id = endpoint_exec_id(agent)

    assert is_endpoint_exec(exec_id) and exec_owner(exec_id) == agent
    assert endpoint_exec_alive(exec_id)
    assert len(endpoint_exec_id(f"{agent.split('.')[0]}.4194304.9999999999")) <= 76


def test_endpoint_exec_id_of_an_ended_process_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    agent = agent_identity(child.pid)
    child.wait()
    assert agent is not None

    assert not endpoint_exec_alive(endpoint_exec_id(agent))


def test_endpoint_exec_id_naming_no_agent_is_dead() -> None:
    assert exec_owner("berth-exec-0123456789abcdef") == ""
    assert not endpoint_exec_alive("berth-exec-0123456789abcdef")
    assert not is_endpoint_exec("berth-health-0123")
