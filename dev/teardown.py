"""Out-of-band teardown of everything a container holds on its node, in the seed's order.

The saga's own undo steps are the normal path; this is for test and benchmark cleanup of
containers outside any saga (the reconciler repairs what a terminated saga left with the same
``berth.host_cleanup``). Every part is idempotent, so it is safe on a container that holds nothing.
Dev and test code: it lives outside the product package.
"""

from __future__ import annotations

from berth.config import NodePaths
from berth.host_cleanup import release_host_resources
from berth.runtime.cni import CniNetwork
from berth.runtime.containerd import ContainerdClient


async def tear_down_host(
    container_id: str, paths: NodePaths, containerd: ContainerdClient, cni: CniNetwork
) -> None:
    """Release everything the container holds, in the one host cleanup order, and its snapshot."""
    await release_host_resources(container_id, paths, containerd, cni)
