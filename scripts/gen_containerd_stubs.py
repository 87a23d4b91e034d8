"""Generate containerd's Python gRPC stubs into ``berth/_containerd_api/``.

The stubs are build output (gitignored), compiled at install time from the ``.proto`` files that
Debian's ``golang-github-containerd-containerd-dev`` and ``golang-github-gogo-protobuf-dev``
install under ``/usr/share/gocode/src``. protoc derives Python imports from the proto path, and
``github.com`` is no Python package, so every needed file is copied into a staging tree under
``berth/_containerd_api/`` with its imports rewritten to the staged paths.

Run: ``python scripts/gen_containerd_stubs.py`` (idempotent; it replaces the whole package).
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


def sources() -> dict[str, Path]:
    """Every proto to compile, keyed by its staged path."""
    api = GOCODE / CONTAINERD_API
    missing = [
        p for p in (api, GOCODE / FIELDPATH, GOCODE / GOGO, GOCODE / RPC_STATUS) if not p.exists()
    ]
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
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{stage}",
            f"-I{include}",
            f"--python_out={build}",
            f"--grpc_python_out={build}",
            f"--pyi_out={build}",
            *sorted(protos),
        ]
        result = subprocess.run(command, cwd=stage, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"gen_containerd_stubs: protoc failed:\n{result.stderr}")
        generated = build / PACKAGE
        for directory in [generated, *(p for p in generated.rglob("*") if p.is_dir())]:
            (directory / "__init__.py").touch()
        (generated / "__init__.py").write_text(
            '"""containerd API stubs generated by scripts/gen_containerd_stubs.py; not in git."""\n'
        )
        # Replace the package in one step so a failed run never leaves half a package behind.
        if out_package.exists():
            shutil.rmtree(out_package)
        out_package.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(generated, out_package)
    return out_package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="project root (default: this script's parent directory)",
    )
    out = generate(parser.parse_args().root)
    print(f"containerd stubs written to {out}")


if __name__ == "__main__":
    main()
