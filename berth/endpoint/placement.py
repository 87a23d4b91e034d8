"""Where a container is, as a node endpoint call needs it: its id, name and node.

Apart from ``berth.endpoint.client`` (which imports grpc) so that the CLI's reads
(``berth.cli.wire_reads``), which every writing verb imports, can name it for free.
"""

from __future__ import annotations

from typing import Protocol


class Placement(Protocol):
    """A container's id, name and node (a ``berth.db.reads`` ``ContainerRow``, or the CLI's
    lighter ``berth.cli.wire_reads.Placed``)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def node(self) -> str: ...
