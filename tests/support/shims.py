"""A stand-in shim process for tests of how shims are found and ended."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def fake_shim(namespace: str, container_id: str, socket: Path) -> subprocess.Popen[bytes]:
    """A sleeping process whose command line is a shim's for ``namespace`` at ``socket``."""
    return subprocess.Popen(
        [
            "containerd-shim-runc-v2",
            "-c",
            "import time; time.sleep(300)",
            "-namespace",
            namespace,
            "-id",
            container_id,
            "-address",
            str(socket),
        ],
        executable=sys.executable,
    )
