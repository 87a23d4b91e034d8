"""``docker restart`` as a benchmark baseline: a private dockerd on one of the bench's containerds.

Debian's ``docker.io`` (``scripts/dev bench`` installs it without starting its service). The
daemon gets its own data root, exec root and socket under the state dir, no bridge and no
iptables rules, and the node's containerd (namespace ``moby``), so it runs the same shims and
runc as the other sides. Containers use ``--network none``: a sandbox namespace, no CNI, no NAT.
With ``bridge_cidr`` its default network is a bridge of its own instead (``bdk<b>-<c>`` for the
address ``a.b.c.d/n``, made before and deleted after the daemon, so two benches with different
addresses never share one; still no iptables rules, NAT or forwarding), for a bridge-networked
baseline. It is stopped by its pid at the end; its containers are removed first.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from berth.runtime.image import busybox_rootfs_tar

IMAGE = "local/busybox:latest"
DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"


class Docker:
    """The CLI bound to the private daemon."""

    def __init__(self, socket: Path) -> None:
        self.base = [DOCKER, "--host", f"unix://{socket}"]

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self.base, *args], check=True, capture_output=True)


@contextlib.contextmanager
def private_dockerd(
    state_dir: Path, containerd_socket: Path, log: Path, bridge_cidr: str | None = None
) -> Iterator[Docker]:
    """Start dockerd on ``containerd_socket``; yield its CLI; stop it by pid afterwards.

    ``bridge_cidr`` (e.g. ``10.215.0.1/24``: the bridge's address) gives it a bridge network.
    """
    if not Path(DOCKERD).exists():
        raise SystemExit(f"{DOCKERD} missing: run the bench through `scripts/dev bench`")
    root = state_dir / "docker"
    network = ["--bridge", "none"]
    if bridge_cidr is not None:
        bridge = bridge_name(bridge_cidr)
        make_bridge(bridge, bridge_cidr)
        network = ["--bridge", bridge]
        # The network store of an earlier run may name a bridge since deleted; made afresh.
        (root / "data" / "network" / "files" / "local-kv.db").unlink(missing_ok=True)
    socket = state_dir / "run" / "docker-bench.sock"
    socket.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        DOCKERD,
        "--data-root", str(root / "data"),
        "--exec-root", str(state_dir / "run" / "docker-bench"),
        "--pidfile", str(state_dir / "run" / "docker-bench.pid"),
        "--host", f"unix://{socket}",
        "--containerd", str(containerd_socket),
        *network,
        "--iptables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--log-level", "warn",
    ]  # fmt: skip
    with log.open("wb") as out:
        daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        docker = Docker(socket)
        deadline = time.monotonic() + 60
        while subprocess.run([*docker.base, "version"], capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"dockerd did not start; see {log}")
            time.sleep(0.2)
        yield docker
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        if bridge_cidr is not None:
            subprocess.run(["ip", "link", "delete", bridge_name(bridge_cidr)], capture_output=True)


def bridge_name(cidr: str) -> str:
    """``bdk<b>-<c>`` for the bridge address ``a.b.c.d/n`` (at most 11 characters)."""
    octets = ipaddress.ip_interface(cidr).ip.packed
    return f"bdk{octets[1]}-{octets[2]}"


def make_bridge(name: str, cidr: str) -> None:
    """The bridge ``name`` with the address ``cidr``, up (an existing one is made afresh)."""
    subprocess.run(["ip", "link", "delete", name], capture_output=True)
    for command in (
        ["ip", "link", "add", "name", name, "type", "bridge"],
        ["ip", "addr", "add", cidr, "dev", name],
        ["ip", "link", "set", name, "up"],
    ):
        subprocess.run(command, check=True, capture_output=True)


def import_busybox(docker: Docker) -> None:
    """``docker import`` of the same busybox root filesystem the other sides run."""
    with tempfile.TemporaryDirectory() as scratch:
        tar = busybox_rootfs_tar(Path(scratch) / "rootfs.tar")
        docker.run("import", "--change", 'CMD ["sh"]', str(tar), IMAGE)


def bench_docker(docker: Docker, count: int, parallel: int, run: str) -> float:
    """Run ``count`` containers, then time ``docker restart -t 0`` of each, ``parallel`` at once."""
    names = [f"bench-docker-{run}-{i}" for i in range(count)]
    with ThreadPoolExecutor(parallel) as pool:
        try:
            list(
                pool.map(
                    lambda name: docker.run(
                        "run", "-d", "--network", "none", "--name", name, IMAGE, "sleep", "600"
                    ),
                    names,
                )
            )
            began = time.perf_counter()
            list(pool.map(lambda name: docker.run("restart", "-t", "0", name), names))
            return time.perf_counter() - began
        finally:
            list(
                pool.map(
                    lambda name: subprocess.run(
                        [*docker.base, "rm", "-f", name], capture_output=True
                    ),
                    names,
                )
            )
