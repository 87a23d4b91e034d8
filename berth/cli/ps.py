"""``berth ps``: the containers, as a table."""

from __future__ import annotations

import argparse

from berth.cli.context import Context


def health_label(statuses: dict[str, str], container_id: str) -> str:
    """docker ps's suffix: `` (healthy)``, `` (unhealthy)``, `` (health: starting)`` or none."""
    status = statuses.get(container_id)
    if status is None:
        return ""
    return f" (health: {status})" if status == "starting" else f" ({status})"


async def cmd_ps(context: Context, args: argparse.Namespace) -> int:
    from berth.contract import ContainerState

    berth = await context.berth()
    rows = [("CONTAINER ID", "IMAGE", "STATUS", "NODE", "IP", "NAMES")]
    health = await berth.health_statuses()
    for container in await berth.ps(all_states=args.all):
        status: str = container.state
        if container.state is ContainerState.EXITED:
            status = f"exited ({container.exit_code or 0})"
        elif container.state is ContainerState.RUNNING:
            status += health_label(health, container.id)
        rows.append(
            (
                container.id[:12],
                container.image,
                status,
                container.node,
                container.ip or "",
                container.name,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true")
    parser.set_defaults(handler=cmd_ps)
