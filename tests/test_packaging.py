"""Berth installs anywhere: its wheel carries the containerd stubs, and they match the protos.

The stubs (``berth/_containerd_api``) are generated code committed to git. Here they are
regenerated from the installed protos and must come out byte for byte the same (skipped, saying
why, only where Debian's proto packages are absent), and pyproject's ``grpcio``/``protobuf``
floors must admit no runtime older than the stubs were generated for. Then the wheel is built from
a copy of the work tree (its tracked and unignored files, as a fresh clone would have them),
installed into a fresh venv, and, from a directory outside the repository, imports the client,
the CLI, the worker and the containerd runtime and asks a real containerd for its version.

The fresh venv gets the third-party packages from this venv's site-packages through a ``.pth``
path entry: a path entry's own ``.pth`` files are never processed, so this venv's editable
``berth`` finder stays out, and the child checks that every Berth module it loaded came from the
wheel. Nothing reaches the network: the build runs without isolation against this venv's
setuptools, and pip installs with ``--no-index --no-deps``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from berth.config import NodePaths
from berth.runtime.containerd import ContainerdClient
from berth.runtime.containerd_daemon import start_containerd, stop_containerd

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "berth" / "_containerd_api"
GENERATOR = ROOT / "scripts" / "gen_containerd_stubs.py"
NODE_GENERATOR = ROOT / "scripts" / "gen_node_stubs.py"
# Whole build + install + child run; each subprocess also has its own bound below.
WHEEL_TEST_SECONDS = 60
SUBPROCESS_SECONDS = 40
NAMESPACE = "berth-pkg-test"
NODE = "pkg"
# What the installed wheel must import, from outside the repository.
IMPORTS = ("berth.client", "berth.cli", "berth.worker", "berth.runtime.containerd")
# Top-level names Berth's own modules may have; after scripts/rename_packages.py only "berth".
BERTH_TOP_LEVEL = ("berth",)

CHILD = """
import asyncio, importlib, json, sys
from pathlib import Path

for name in sys.argv[2].split(","):
    importlib.import_module(name)
from berth.runtime.containerd import ContainerdClient

async def version():
    async with ContainerdClient(Path(sys.argv[1]), sys.argv[3], sys.argv[4]) as client:
        return await client.version()

top = set(sys.argv[5].split(","))
print(json.dumps({
    "version": asyncio.run(version()),
    "files": {
        name: getattr(module, "__file__", None)
        for name, module in sys.modules.items()
        if name.split(".")[0] in top
    },
    "meta_path": [repr(finder) for finder in sys.meta_path],
}))
"""


def load_generator() -> ModuleType:
    """scripts/gen_containerd_stubs.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("gen_containerd_stubs", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """The stub generator, with the test skipped where the protos it compiles are absent."""
    module = load_generator()
    missing = module.missing_sources()
    if missing:
        pytest.skip(
            "containerd's .proto files are not installed here "
            f"({', '.join(map(str, missing))}); apt-get install {module.DEBIAN_PACKAGES}"
        )
    return module


def test_containerd_stubs_regenerated_from_installed_protos_are_identical(
    generator: ModuleType,
) -> None:
    assert generator.check(ROOT) == [], (
        "berth/_containerd_api differs from the protos: "
        "run scripts/gen_containerd_stubs.py and commit the result"
    )


def test_node_api_stubs_regenerated_from_their_protos_are_identical() -> None:
    spec = importlib.util.spec_from_file_location("gen_node_stubs", NODE_GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.check(ROOT) == [], (
        "berth/node_api's stubs differ from its protos: run scripts/gen_node_stubs.py and commit"
    )


def test_containerd_stub_check_tampered_copy_names_every_difference(
    generator: ModuleType, tmp_path: Path
) -> None:
    copy = tmp_path / "berth" / "_containerd_api"
    shutil.copytree(STUBS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "services/version/v1/version_pb2.py").open("a") as changed:
        changed.write("# edited by hand\n")
    (copy / "services/tasks/v1/tasks_pb2.pyi").unlink()
    (copy / "services/stale_pb2.py").write_text("")

    assert generator.check(tmp_path) == [
        "changed: services/version/v1/version_pb2.py",
        "missing: services/tasks/v1/tasks_pb2.pyi",
        "extra: services/stale_pb2.py",
    ]


def generated_versions(pattern: str, glob: str) -> set[str]:
    """Every version ``pattern`` finds in the committed stub files matching ``glob``."""
    found = {
        match.group(1)
        for path in STUBS.rglob(glob)
        for match in [re.search(pattern, path.read_text(), re.MULTILINE)]
        if match
    }
    assert found, f"no stub under {STUBS} matches {glob} with {pattern!r}"
    return found


def requirement(name: str, extra: str | None = None) -> Requirement:
    """pyproject's requirement on ``name``, from the dependencies or from an extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["optional-dependencies"][extra] if extra else project["dependencies"]
    matches = [Requirement(line) for line in listed if Requirement(line).name == name]
    assert len(matches) == 1, f"pyproject lists {name} {len(matches)} times"
    return matches[0]


def floor(req: Requirement) -> Version:
    """The lowest version a ``>=`` requirement admits."""
    floors = [Version(spec.version) for spec in req.specifier if spec.operator == ">="]
    assert floors, f"{req} has no >= floor"
    return max(floors)


def test_containerd_stubs_grpc_version_pyproject_floor_admits_no_older_grpcio() -> None:
    (generated,) = generated_versions(r"^GRPC_GENERATED_VERSION = '([^']+)'", "*_pb2_grpc.py")

    assert floor(requirement("grpcio")) >= Version(generated)
    assert requirement("grpcio-tools", extra="dev").specifier == f"=={generated}"


def test_containerd_stubs_protobuf_gencode_pyproject_range_admits_only_compatible_runtimes() -> (
    None
):
    (generated,) = generated_versions(r"^# Protobuf Python Version: (\S+)$", "*_pb2.py")
    protobuf = requirement("protobuf")

    assert floor(protobuf) >= Version(generated)
    assert not protobuf.specifier.contains(f"{Version(generated).major + 1}.0.0")


def work_tree_files() -> list[Path]:
    """What a fresh clone with the uncommitted work would hold: tracked and unignored files.

    Symlinks are listed as themselves (``berth/workflows`` -> ``../workflows`` once the packages
    are renamed), not followed.
    """
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=SUBPROCESS_SECONDS,
    ).stdout.decode()
    return [
        Path(name)
        for name in listing.split("\0")
        if name and ((ROOT / name).is_symlink() or (ROOT / name).is_file())
    ]


def run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, bounded in time; its stdout, or a failure that shows its output."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Berth's wheel, built offline from a copy of the work tree (the tree itself stays clean)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    for relative in work_tree_files():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, source / relative, follow_symlinks=False)
    dist = base / "dist"
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]
    run([sys.executable, "-m", "pip", "wheel", "-q", *offline, "-w", dist, source], cwd=base)
    (built,) = dist.glob("berth-*.whl")
    return built


@pytest.mark.timeout(WHEEL_TEST_SECONDS)
def test_wheel_built_from_work_tree_contains_stubs_and_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    committed = {
        f"berth/_containerd_api/{path.relative_to(STUBS).as_posix()}"
        for path in STUBS.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }

    assert committed - names == set()
    assert "berth/runtime/seccomp_default.json" in names


@pytest.mark.timeout(WHEEL_TEST_SECONDS)
def test_wheel_top_level_packages_only_berth(wheel: Path) -> None:
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}

    assert {name for name in top if not name.endswith(".dist-info")} == {"berth"}


@pytest.fixture
def outside() -> Iterator[Path]:
    """A short-pathed directory outside the repository (unix sockets allow 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="berth-pkg-", dir="/tmp"))
    assert ROOT not in directory.parents
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def containerd(outside: Path) -> AsyncIterator[NodePaths]:
    """A private containerd of its own under ``outside``, stopped afterwards."""
    paths = NodePaths(outside / "state", NODE, NAMESPACE)
    try:
        await start_containerd(paths)
        yield paths
    finally:
        await stop_containerd(paths)


def fresh_venv(directory: Path, wheel: Path) -> Path:
    """A new venv with only the wheel installed, and this venv's third-party packages on its path.

    Returns its site-packages directory.
    """
    run([sys.executable, "-m", "venv", "--without-pip", directory], cwd=directory.parent)
    target: list[str | Path] = ["--python", directory / "bin" / "python"]
    offline = ["--no-deps", "--no-index"]
    run(
        [sys.executable, "-m", "pip", *target, "install", "-q", *offline, wheel],
        cwd=directory.parent,
    )
    (site,) = (directory / "lib").glob("python3.*/site-packages")
    # A path entry, not a site dir: this venv's __editable__ .pth files are not processed there.
    (site / "berth_test_third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return site


@pytest.mark.timeout(WHEEL_TEST_SECONDS)
async def test_wheel_in_fresh_venv_outside_repository_talks_to_containerd(
    wheel: Path, outside: Path, containerd: NodePaths
) -> None:
    site = fresh_venv(outside / "venv", wheel)
    python = outside / "venv" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BERTH_"))}
    child_args = [",".join(IMPORTS), NAMESPACE, NODE, ",".join(BERTH_TOP_LEVEL)]

    report = json.loads(
        run(
            [python, "-I", "-c", CHILD, containerd.containerd_socket, *child_args],
            cwd=outside,
            env=env,
        )
    )
    usage = run([outside / "venv" / "bin" / "berth", "--help"], cwd=outside, env=env)
    async with ContainerdClient(containerd.containerd_socket, NAMESPACE, NODE) as client:
        expected = await client.version()

    assert report["version"] == expected
    assert {name: path for name, path in report["files"].items() if not path} == {}
    assert {
        name: path
        for name, path in report["files"].items()
        if path and site not in Path(path).parents
    } == {}
    assert "berth._containerd_api" in report["files"]
    assert not [finder for finder in report["meta_path"] if "__editable__" in finder]
    assert "usage" in usage.lower()
