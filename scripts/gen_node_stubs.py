"""Generate the node endpoint's Python gRPC stubs next to their protos, or check them.

The protos are Berth's own (``berth/node_api/*.proto``: logs, exec, files); their stubs
(``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py``) are generated code committed beside them, made
by the pinned ``grpcio-tools`` as containerd's are (scripts/gen_containerd_stubs.py, whose
comparison this reuses).

Run: ``python scripts/gen_node_stubs.py`` after a proto changes, and commit the result;
``--check`` regenerates into a temporary directory and exits 1 naming every differing file;
tests/test_packaging.py runs the same check.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_containerd_stubs import differences, run_protoc, well_known_include

PACKAGE = "berth/node_api"
GENERATED = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")


def protos(project_root: Path) -> list[str]:
    return sorted(
        p.relative_to(project_root).as_posix() for p in (project_root / PACKAGE).glob("*.proto")
    )


def generate(project_root: Path, out: Path) -> Path:
    """Compile ``project_root``'s node protos into ``out/berth/node_api`` and return that path."""
    out.mkdir(parents=True, exist_ok=True)
    includes = [project_root, well_known_include()]
    run_protoc("gen_node_stubs", project_root, includes, out, protos(project_root))
    return out / PACKAGE


def _stubs_only(package: Path, into: Path) -> Path:
    """A copy of ``package`` holding its generated files only (the check compares just these)."""
    into.mkdir(parents=True, exist_ok=True)
    for pattern in GENERATED:
        for path in package.glob(pattern):
            shutil.copy2(path, into / path.name)
    return into


def check(project_root: Path) -> list[str]:
    """Regenerate into a temporary directory; compare with the stubs under ``project_root``."""
    with tempfile.TemporaryDirectory(prefix="berth-node-stubs-") as tmp:
        fresh = generate(project_root, Path(tmp) / "fresh")
        committed = _stubs_only(project_root / PACKAGE, Path(tmp) / "committed")
        return differences(committed, fresh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--check", action="store_true", help="exit 1 if the stubs differ")
    args = parser.parse_args()
    if args.check:
        found = check(args.root)
        if found:
            print("\n".join(found))
            raise SystemExit(
                f"gen_node_stubs: {len(found)} stub file(s) differ from the protos; "
                "run scripts/gen_node_stubs.py and commit berth/node_api"
            )
        return
    with tempfile.TemporaryDirectory(prefix="berth-node-stubs-") as tmp:
        for path in generate(args.root, Path(tmp)).iterdir():
            shutil.copy2(path, args.root / PACKAGE / path.name)


if __name__ == "__main__":
    main()
