"""``berth inspect``: containers as docker inspect's JSON, or ``-f/--format`` a template per one.

The objects carry docker's field names (``Config.Cmd``, ``Config.Env``, ``Config.Labels``,
``HostConfig.Binds``, ``HostConfig.RestartPolicy``, ``HostConfig.Memory``, ``Mounts``, ...).
References that name no container do not stop the others: the found ones are printed, then
``Error: No such container: <ref>`` for each of the rest, and the exit code is 1, as docker's.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from berth.cli.context import Context
from berth.cli.docker_view import health_view, inspect_view
from berth.cli.network_flags import docker_ports
from berth.cli.templates import Format, TemplateExecError, parse_format


async def _view(context: Context, ref: str) -> dict[str, Any] | None:
    """One container's inspect object, read from PostgreSQL; None when there is none."""
    reader = await context.reader()
    container = await reader.find(ref)
    if container is None:
        return None
    # The published ports (``port_mappings``), where the reader has them (berth.db.node_reads).
    read_ports = getattr(reader, "ports", None)
    ports = docker_ports(await read_ports(container.id)) if read_ports else {}
    return inspect_view(container, health_view(await reader.health(container.id)), ports=ports)


def render(form: Format | None, objects: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The lines to print and the errors of objects the template cannot run on."""
    if form is None:
        return ([json.dumps(objects, indent=4, ensure_ascii=False)] if objects else ["[]"]), []
    lines, errors = [], []
    for item in objects:
        if form.kind == "json":
            lines.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
            continue
        assert form.template is not None
        try:
            lines.append(form.template.render(item))
        except TemplateExecError as err:
            errors.append(f"template: executing {err}")
    return lines, errors


async def cmd_inspect(context: Context, args: argparse.Namespace) -> int:
    form = parse_format(args.format) if args.format else None
    if form is not None and form.kind == "table":
        form = parse_format(args.format.strip()[len("table") :] or "json")
    objects, missing = [], []
    for ref in args.containers:
        view = await _view(context, ref)
        if view is None:
            missing.append(ref)
        else:
            objects.append(view)
    lines, errors = render(form, objects)
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    for ref in missing:
        print(f"Error: No such container: {ref}", file=sys.stderr)
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if missing or errors else 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--format", help="a Go template per container, or 'json'")
    parser.add_argument(
        "--type", choices=["container"], default="container", help="only containers"
    )
    parser.add_argument("-s", "--size", action="store_true", help="accepted; sizes not shown")
    parser.add_argument("containers", nargs="+")
    parser.set_defaults(handler=cmd_inspect)
