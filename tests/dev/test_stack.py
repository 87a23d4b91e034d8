"""``scripts/dev down`` ends the shims of the stack's nodes, and only those."""

from __future__ import annotations

from pathlib import Path

from berth.config import NodePaths
from dev.stack import end_node_shims
from tests.support.shims import fake_shim


def test_end_node_shims_kills_every_namespace_of_the_node_and_nothing_else(
    tmp_path: Path,
) -> None:
    node = NodePaths(tmp_path, "node-1")
    other = NodePaths(tmp_path, "node-2")
    mine = [
        fake_shim("berth", "c1", node.containerd_socket),
        fake_shim("berth-bench", "c2", node.containerd_socket),
    ]
    bystander = fake_shim("berth", "c1", other.containerd_socket)
    try:
        end_node_shims(node, "node-1")
        for process in mine:
            assert process.wait(5) is not None
        assert bystander.poll() is None
    finally:
        for process in (*mine, bystander):
            process.kill()
            process.wait()
