"""Install the top-level ``workflows`` and ``activities`` packages as ``berth.workflows`` and
``berth.activities`` (issue 11 item 7). Not yet run: it waits for the lead's go.

The repository keeps its top-level folders (``workflows/``, ``activities/``: the layout shows the
architecture); ``berth/workflows`` and ``berth/activities`` become relative symlinks to them, so:

- the source tree imports ``berth.workflows.x`` natively (no import hook), and so do pytest,
  mypy and the Temporal sandbox;
- setuptools follows the links when it finds and copies packages, so the wheel holds
  ``berth/workflows/*.py`` as files and no top-level ``workflows`` or ``activities`` package;
- the editable install keeps mapping only ``berth`` to the tree (re-run ``pip install -e``: the
  old finder also maps the top-level names).

What it edits (every change listed; a dry run by default, ``--apply`` writes):

1. the two symlinks;
2. in every tracked or unignored ``*.py`` file (the generated stubs aside): ``from workflows...
   import`` / ``import activities...`` statements, and dotted references to a module of the two
   packages in code, strings, docstrings and comments (``workflows.routing.operation_id``); a
   bare ``"workflows"`` / ``"activities"`` string is only reported (the worker's sandbox
   pass-through list: ``"berth"`` already covers both, so drop them by hand);
3. the same dotted references in tracked Markdown files;
4. pyproject.toml: package discovery and mypy's packages become ``berth`` only;
5. tests/test_packaging.py: the wheel's top-level names must be ``berth`` alone (the xfail goes).

After ``--apply`` it fails if any absolute import of the old names remains. Then: ``.venv/bin/pip
install -q --no-deps --no-build-isolation -e .``, ruff, mypy and the suite
(tests/test_packaging.py proves the wheel from a fresh venv).

Run: ``python scripts/rename_packages.py [--diff] [--apply] [--root DIR]``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("workflows", "activities")
STUBS = "berth/_containerd_api/"
PYPROJECT_EDITS = {
    'include = ["berth*", "workflows*", "activities*"]': 'include = ["berth*"]',
    'packages = ["berth", "workflows", "activities"]': 'packages = ["berth"]',
}
PACKAGING_TEST = "tests/test_packaging.py"
LINE_LENGTH = 100  # ruff's; a rewritten comment or docstring line may need wrapping
# This script names the old packages on purpose.
SELF = {"scripts/rename_packages.py"}
PACKAGING_TEST_EDITS = {
    'BERTH_TOP_LEVEL = ("berth", "workflows", "activities")': 'BERTH_TOP_LEVEL = ("berth",)',
}
XFAIL = re.compile(
    r"^@pytest\.mark\.xfail\(\n(?:[ \t].*\n)*?\)\n(?=(?:@.*\n)*def test_wheel_top)", re.M
)
NAMES = "|".join(PACKAGES)
FROM_IMPORT = re.compile(rf"^(\s*)from ({NAMES})((?:\.\w+)*) import\b", re.M)
PLAIN_IMPORT = re.compile(rf"^(\s*)import ({NAMES})((?:\.\w+)*)\b", re.M)
BARE_STRING = re.compile(rf"""(["'])({NAMES})\1""")
LEFTOVER_IMPORT = re.compile(rf"^\s*(?:from|import) (?:{NAMES})\b", re.M)


@dataclass
class Plan:
    """Every edit, by file, and what needs a human's eye."""

    files: dict[Path, str] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)


def module_names(root: Path, package: str) -> list[str]:
    """The modules and subpackages directly inside a package folder."""
    folder = root / package
    names = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    return sorted(names, key=len, reverse=True)


def dotted_reference(root: Path) -> re.Pattern[str]:
    """``workflows.<module>`` / ``activities.<module>`` not already behind a dot, word or slash."""
    alternatives = "|".join(
        rf"{package}\.(?:{'|'.join(module_names(root, package))})\b" for package in PACKAGES
    )
    return re.compile(rf"(?<![\w./-])(?:{alternatives})")


def project_files(root: Path, suffix: str) -> list[Path]:
    """Tracked and unignored files with ``suffix``, the generated stubs and the symlinks aside."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [
        root / name
        for name in sorted(set(listing.split("\0")))
        if name.endswith(suffix)
        and not name.startswith(STUBS)
        and not name.startswith(tuple(f"berth/{p}/" for p in PACKAGES))
        and name not in SELF
        and (root / name).is_file()
    ]


def rewrite_python(text: str, reference: re.Pattern[str]) -> str:
    """Imports of the old names, then dotted references, point at ``berth.<package>``."""
    text = FROM_IMPORT.sub(r"\1from berth.\2\3 import", text)
    text = PLAIN_IMPORT.sub(r"\1import berth.\2\3", text)
    return reference.sub(lambda match: f"berth.{match.group(0)}", text)


def replace_exact(text: str, edits: dict[str, str], where: str, plan: Plan) -> str:
    """Apply whole-line edits; one that no longer matches is left for a human."""
    for old, new in edits.items():
        if text.count(old) == 1:
            text = text.replace(old, new)
        else:
            plan.review.append(f"{where}: expected `{old}` once; edit it by hand to `{new}`")
    return text


def plan_rename(root: Path) -> Plan:
    """Work out every edit without writing one."""
    plan = Plan()
    reference = dotted_reference(root)
    for path in project_files(root, ".py"):
        text = path.read_text()
        new = rewrite_python(text, reference)
        for number, line in enumerate(new.splitlines(), 1):
            if BARE_STRING.search(line) and path.relative_to(root).as_posix() != PACKAGING_TEST:
                plan.review.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
        if new != text:
            plan.files[path] = new
    for path in project_files(root, ".md"):
        text = path.read_text()
        new = reference.sub(lambda match: f"berth.{match.group(0)}", text)
        if new != text:
            plan.files[path] = new
    pyproject = root / "pyproject.toml"
    text = plan.files.get(pyproject, pyproject.read_text())
    plan.files[pyproject] = replace_exact(text, PYPROJECT_EDITS, "pyproject.toml", plan)
    test = root / PACKAGING_TEST
    text = plan.files.get(test, test.read_text())
    text = replace_exact(text, PACKAGING_TEST_EDITS, PACKAGING_TEST, plan)
    text, removed = XFAIL.subn("", text)
    if removed != 1:
        plan.review.append(f"{PACKAGING_TEST}: remove the xfail on test_wheel_top_level_* by hand")
    plan.files[test] = text
    for path, new in list(plan.files.items()):
        old = path.read_text()
        if new == old:
            del plan.files[path]
            continue
        name = path.relative_to(root).as_posix()
        diff = list(
            difflib.unified_diff(
                old.splitlines(), new.splitlines(), f"a/{name}", f"b/{name}", lineterm="", n=0
            )
        )
        removed_lines = sum(line.startswith("-") and not line.startswith("---") for line in diff)
        plan.changes.append(f"{name}: {removed_lines} line(s)")
        plan.review.extend(
            f"{name}: longer than {LINE_LENGTH} characters now: {line[1:].strip()}"
            for line in diff
            if line.startswith("+") and not line.startswith("+++") and len(line) - 1 > LINE_LENGTH
        )
        plan.diffs.extend(diff)
    for package in PACKAGES:
        link = root / "berth" / package
        if not link.is_symlink():
            plan.changes.append(f"berth/{package} -> ../{package} (symlink)")
    return plan


def apply(root: Path, plan: Plan) -> None:
    """Write the plan, then fail if an absolute import of the old names is left."""
    for package in PACKAGES:
        link = root / "berth" / package
        if not link.is_symlink():
            if link.exists():
                raise SystemExit(f"rename_packages: {link} exists and is no symlink")
            os.symlink(Path("..") / package, link, target_is_directory=True)
    for path, text in plan.files.items():
        path.write_text(text)
    leftovers = [
        f"{path.relative_to(root)}"
        for path in project_files(root, ".py")
        if LEFTOVER_IMPORT.search(path.read_text())
    ]
    if leftovers:
        raise SystemExit(f"rename_packages: old imports remain in {', '.join(leftovers)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apply", action="store_true", help="write the edits (default: dry run)")
    parser.add_argument("--diff", action="store_true", help="print every edit as a unified diff")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="project root (default: this script's parent directory)",
    )
    args = parser.parse_args()
    plan = plan_rename(args.root)
    if args.diff:
        print("\n".join(plan.diffs))
    print("\n".join(plan.changes) or "nothing to change")
    if plan.review:
        print("\nreview by hand:\n" + "\n".join(plan.review))
    if args.apply:
        apply(args.root, plan)
        print(
            "\napplied; now: .venv/bin/pip install -q --no-deps --no-build-isolation -e . && "
            ".venv/bin/ruff check --fix --select I . && .venv/bin/ruff format . && "
            ".venv/bin/ruff check . && .venv/bin/mypy && the suite"
        )
    else:
        print("\ndry run; --apply writes it")


if __name__ == "__main__":
    main()
