"""Generate containerd's Python gRPC stubs into ``berth/_containerd_api/``, or check them.

The stubs are generated code committed to git, so that ``pip install`` works on any machine; they
are compiled from the ``.proto`` files that Debian's ``golang-github-containerd-containerd-dev``
and ``golang-github-gogo-protobuf-dev`` install under ``/usr/share/gocode/src``, by the protoc
of the pinned ``grpcio-tools`` (its version is written into every stub and sets the floors of
``grpcio`` and ``protobuf`` in pyproject.toml). protoc derives Python imports from the proto
path, and ``github.com`` is no Python package, so every needed file is copied into a staging tree
under ``berth/_containerd_api/`` with its imports rewritten to the staged paths.

Run: ``python scripts/gen_containerd_stubs.py`` (idempotent; it replaces the whole package) after
the protos or grpcio-tools change, and commit the result. ``--check`` regenerates into a temporary
directory and exits 1, naming every differing file, when the committed stubs do not match;
tests/test_packaging.py runs the same check.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GOCODE = Path("/usr/share/gocode/src")
CONTAINERD_API = "github.com/containerd/containerd/api"
FIELDPATH = "github.com/containerd/containerd/protobuf/plugin/fieldpath.proto"
GOGO = "github.com/gogo/protobuf/gogoproto/gogo.proto"
RPC_STATUS = "github.com/gogo/googleapis/google/rpc/status.proto"
PACKAGE = "berth/_containerd_api"
DEBIAN_PACKAGES = "golang-github-containerd-containerd-dev golang-github-gogo-protobuf-dev"

# google.rpc.Status is renamed so it can never clash with googleapis-common-protos' copy in the
# same process's descriptor pool; it travels embedded in a field, so the wire format is unchanged.
RPC_STATUS_PACKAGE = "berth_containerd.rpc"

IMPORT_LINE = re.compile(r'^(\s*import\s+(?:weak\s+|public\s+)?)"([^"]+)"\s*;', re.MULTILINE)


def staged_path(import_path: str) -> str | None:
    """Where an imported proto lives in the staging tree; None for protoc's well-known types."""
    if import_path.startswith("google/protobuf/"):
        return None
    if import_path.startswith(CONTAINERD_API + "/"):
        return f"{PACKAGE}/{import_path.removeprefix(CONTAINERD_API + '/')}"
    if import_path == FIELDPATH or import_path == "github.com/containerd/containerd/" + FIELDPATH:
        return f"{PACKAGE}/protobuf/plugin/fieldpath.proto"
    if import_path in ("gogoproto/gogo.proto", GOGO):
        return f"{PACKAGE}/gogoproto/gogo.proto"
    if import_path in ("google/rpc/status.proto", RPC_STATUS):
        return f"{PACKAGE}/google/rpc/status.proto"
    raise SystemExit(f"gen_containerd_stubs: no staging rule for import {import_path!r}")


def rewrite(text: str) -> str:
    """Point every import at its staged path and rename google.rpc to a private package."""

    def replace(match: re.Match[str]) -> str:
        target = staged_path(match.group(2))
        return match.group(0) if target is None else f'{match.group(1)}"{target}";'

    text = IMPORT_LINE.sub(replace, text)
    text = re.sub(r"^package google\.rpc;", f"package {RPC_STATUS_PACKAGE};", text, flags=re.M)
    return re.sub(r"(?<![\w.])google\.rpc\.Status\b", f".{RPC_STATUS_PACKAGE}.Status", text)


def missing_sources() -> list[Path]:
    """The installed proto trees and files the stubs are compiled from that are absent."""
    needed = (GOCODE / CONTAINERD_API, GOCODE / FIELDPATH, GOCODE / GOGO, GOCODE / RPC_STATUS)
    return [path for path in needed if not path.exists()]


def sources() -> dict[str, Path]:
    """Every proto to compile, keyed by its staged path."""
    api = GOCODE / CONTAINERD_API
    missing = missing_sources()
    if missing:
        raise SystemExit(
            "gen_containerd_stubs: containerd's proto files are missing "
            f"({', '.join(map(str, missing))}); install the Debian packages: "
            f"apt-get install {DEBIAN_PACKAGES}"
        )
    found: dict[str, Path] = {}
    for proto in sorted(api.rglob("*.proto")):
        relative = proto.relative_to(api)
        if "ttrpc" in relative.parts:
            continue
        found[f"{PACKAGE}/{relative.as_posix()}"] = proto
    found[f"{PACKAGE}/protobuf/plugin/fieldpath.proto"] = GOCODE / FIELDPATH
    found[f"{PACKAGE}/gogoproto/gogo.proto"] = GOCODE / GOGO
    found[f"{PACKAGE}/google/rpc/status.proto"] = GOCODE / RPC_STATUS
    return found


def well_known_include() -> Path:
    """grpc_tools' bundled ``google/protobuf/*.proto``."""
    try:
        import grpc_tools
    except ImportError as exc:
        raise SystemExit("gen_containerd_stubs: grpcio-tools is not installed") from exc
    return Path(grpc_tools.__file__).parent / "_proto"


def run_protoc(caller: str, cwd: Path, includes: list[Path], out: Path, protos: list[str]) -> None:
    """Compile ``protos`` (paths relative to an include) into Python, gRPC and type stubs."""
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        *(f"-I{include}" for include in includes),
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        *protos,
    ]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{caller}: protoc failed:\n{result.stderr}")


def generate(project_root: Path) -> Path:
    """Compile the stubs into ``<project_root>/berth/_containerd_api`` and return that path."""
    protos = sources()
    include = well_known_include()
    out_package = project_root / PACKAGE
    with tempfile.TemporaryDirectory(prefix="berth-protos-") as tmp:
        stage = Path(tmp)
        for target, source in protos.items():
            staged = stage / target
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_text(rewrite(source.read_text()))
        build = Path(tmp) / "out"
        build.mkdir()
        run_protoc("gen_containerd_stubs", stage, [stage, include], build, sorted(protos))
        generated = build / PACKAGE
        for directory in [generated, *(p for p in generated.rglob("*") if p.is_dir())]:
            (directory / "__init__.py").touch()
        (generated / "__init__.py").write_text(
            '"""containerd API stubs: generated code, committed; made and checked by '
            'scripts/gen_containerd_stubs.py."""\n'
        )
        # Replace the package in one step so a failed run never leaves half a package behind.
        if out_package.exists():
            shutil.rmtree(out_package)
        out_package.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(generated, out_package)
    return out_package


def _files(package: Path) -> dict[str, bytes]:
    """Every file of a stub package by relative path; bytecode caches are no part of it."""
    return {
        path.relative_to(package).as_posix(): path.read_bytes()
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.relative_to(package).parts
    }


def differences(committed: Path, generated: Path) -> list[str]:
    """How ``committed`` differs from ``generated``: one ``changed|missing|extra: <path>`` each.

    ``missing`` is a generated file that is not committed, ``extra`` a committed file that the
    generator no longer makes. An empty list means the two packages are byte for byte the same.
    """
    have = _files(committed) if committed.is_dir() else {}
    want = _files(generated)
    found = [
        f"changed: {name}" for name in sorted(have.keys() & want.keys()) if have[name] != want[name]
    ]
    found += [f"missing: {name}" for name in sorted(want.keys() - have.keys())]
    found += [f"extra: {name}" for name in sorted(have.keys() - want.keys())]
    return found


def check(project_root: Path) -> list[str]:
    """Regenerate into a temporary directory; compare with the stubs under ``project_root``."""
    with tempfile.TemporaryDirectory(prefix="berth-stubs-check-") as tmp:
        return differences(project_root / PACKAGE, generate(Path(tmp)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="project root (default: this script's parent directory)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare the committed stubs with freshly generated ones; exit 1 if they differ",
    )
    args = parser.parse_args()
    if args.check:
        found = check(args.root)
        if found:
            print("\n".join(found))
            raise SystemExit(
                f"gen_containerd_stubs: {len(found)} stub file(s) differ from the protos; "
                "run scripts/gen_containerd_stubs.py and commit berth/_containerd_api"
            )
        print(f"containerd stubs in {args.root / PACKAGE} match the protos")
        return
    out = generate(args.root)
    print(f"containerd stubs written to {out}")


if __name__ == "__main__":
    main()
