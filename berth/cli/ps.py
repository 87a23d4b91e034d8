"""``berth ps``: the containers as docker ps shows them, newest first.

``-a`` all states, ``-q`` ids only, ``-n/--last N`` the N newest (any state), ``-l/--latest``,
``--filter`` (id, name, label, status, node, health, exited, ancestor), ``--format`` (a Go
template, ``table ...`` or ``json``), ``--no-trunc``. STATUS is docker's words (``Up 5 minutes
(healthy)``, ``Exited (137) 2 seconds ago``). At a terminal the default table is rich's, with a
coloured STATUS; piped, it is docker's plain tab-aligned text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from berth.cli.context import Context
from berth.cli.docker_view import (
    PS_DEFAULT_FIELDS,
    PS_DEFAULT_TABLE,
    PS_HEADERS,
    ContainerRecord,
    ps_view,
)
from berth.cli.filters import PS_KEYS, PsRow, parse_filters, ps_matches, ps_shows_all
from berth.cli.network_flags import ports_column
from berth.cli.templates import Format, compile_template, parse_format, render_rows
from berth.cli.terminal import is_terminal, print_table


def health_label(statuses: dict[str, str], container_id: str) -> str:
    """docker ps's suffix: `` (healthy)``, `` (unhealthy)``, `` (health: starting)`` or none."""
    status = statuses.get(container_id)
    if status is None:
        return ""
    return f" (health: {status})" if status == "starting" else f" ({status})"


def select(
    containers: Sequence[ContainerRecord],
    health: dict[str, str],
    args: argparse.Namespace,
) -> list[ContainerRecord]:
    """The containers ps shows, newest first: by state (``-a``), filters, ``-n``/``-l``."""
    filters = parse_filters(args.filter, PS_KEYS)
    last = 1 if args.latest else args.last
    every_state = args.all or ps_shows_all(filters) or last > 0
    chosen = [
        container
        for container in containers
        if (every_state or str(container.state) in ("running", "paused", "stopping"))
        and ps_matches(
            filters,
            PsRow(
                id=container.id,
                name=container.name,
                image=container.image,
                state=str(container.state),
                node=container.node,
                labels=(container.config or {}).get("labels") or {},
                exit_code=container.exit_code,
                health=health.get(container.id),
            ),
        )
    ]
    chosen.sort(key=lambda container: container.created_at, reverse=True)
    return chosen[:last] if last > 0 else chosen


def published_ports(rows: Sequence[Any]) -> dict[str, str]:
    """Each container's PORTS column from ``port_mappings`` rows, by container id."""
    by_container: dict[str, list[Any]] = {}
    for row in rows:
        by_container.setdefault(row.container_id, []).append(row)
    return {cid: ports_column(mapped) for cid, mapped in by_container.items()}


def ps_lines(
    containers: Sequence[ContainerRecord],
    health: dict[str, str],
    args: argparse.Namespace,
    now: datetime,
    ports: dict[str, str] | None = None,
) -> list[str]:
    """What ``ps`` prints for ``containers`` (already read) under the flags in ``args``."""
    chosen = select(containers, health, args)
    if args.quiet:
        return [c.id if args.no_trunc else c.id[:12] for c in chosen]
    form = parse_format(args.format) if args.format else Format("table")
    ports = ports or {}
    rows: list[dict[str, Any]] = [
        ps_view(c, health.get(c.id), now, no_trunc=args.no_trunc, ports=ports.get(c.id, ""))
        for c in chosen
    ]
    return render_rows(form, rows, header=PS_HEADERS, default=compile_template(PS_DEFAULT_TABLE))


async def cmd_ps(context: Context, args: argparse.Namespace) -> int:
    parse_filters(args.filter, PS_KEYS)  # a bad filter fails before anything is read
    if args.format:
        parse_format(args.format)
    reader = await context.reader()
    health = await reader.health_statuses()
    containers = await reader.containers()
    # The published ports (``port_mappings``), where the reader has them (berth.db.node_reads).
    read_ports = getattr(reader, "ports", None)
    ports = published_ports(await read_ports()) if read_ports else {}
    now = datetime.now(UTC)
    if not args.format and not args.quiet and is_terminal(sys.stdout):
        rows = [
            ps_view(c, health.get(c.id), now, no_trunc=args.no_trunc, ports=ports.get(c.id, ""))
            for c in select(containers, health, args)
        ]
        print_table(
            [PS_HEADERS[field] for field in PS_DEFAULT_FIELDS],
            [[str(row[field]) for field in PS_DEFAULT_FIELDS] for row in rows],
            sys.stdout,
            no_trunc=args.no_trunc,
        )
        return 0
    lines = ps_lines(containers, health, args, now, ports)
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="all states, not only running")
    parser.add_argument("-q", "--quiet", action="store_true", help="only the ids")
    parser.add_argument(
        "-f", "--filter", action="append", default=[], help="key=value (id, name, label, ...)"
    )
    parser.add_argument("--format", help="a Go template, 'table TEMPLATE' or 'json'")
    parser.add_argument("-n", "--last", type=int, default=-1, help="the N newest, any state")
    parser.add_argument("-l", "--latest", action="store_true", help="the newest, any state")
    parser.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    parser.set_defaults(handler=cmd_ps)
