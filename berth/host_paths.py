"""Host paths a container may mount: only those under the configured allow-list.

Checked twice: lexically when the container is created (the control plane may not share the
node's filesystem), and with symlinks resolved on the node when its spec is written, so a link
planted after create cannot lead outside the allowed roots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from berth.contract import BindMount
from berth.errors import Forbidden


def check_bind_sources(
    binds: Sequence[BindMount], allowed_roots: Sequence[Path], *, resolve: bool
) -> None:
    """Raise ``Forbidden`` naming the first bind whose source is outside every allowed root."""
    roots = [Path(os.path.realpath(root)) if resolve else Path(root) for root in allowed_roots]
    for index, bind in enumerate(binds):
        source = Path(os.path.realpath(bind.source) if resolve else os.path.normpath(bind.source))
        if not any(source == root or root in source.parents for root in roots):
            raise Forbidden(
                f"config.binds[{index}].source: host path {bind.source} is not under an allowed "
                f"host path ({', '.join(map(str, allowed_roots)) or 'none are allowed'})"
            )
