"""``berth fleet``: restart a fleet with a progress bar, and steer or read a fleet restart."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import TYPE_CHECKING, Any, TextIO

from berth.cli.context import Context

if TYPE_CHECKING:
    from berth.client import BerthClient
    from berth.contract import FleetProgress, FleetRestartInput

BAR_WIDTH = 30
ENDED = ("completed", "aborted", "cancelled")


def request_from_args(args: argparse.Namespace) -> FleetRestartInput:
    from pydantic import ValidationError

    from berth.contract import FleetRestartInput
    from berth.converter import describe_validation_error
    from berth.errors import InvalidParameter

    labels = {}
    for value in args.label:
        key, _, val = value.partition("=")
        labels[key] = val
    fields: dict[str, Any] = {
        "name": args.name or f"fleet-{uuid.uuid4().hex[:8]}",
        "selector": {
            "ids": [i for value in args.ids for i in value.split(",") if i],
            "labels": labels,
            "node": args.node,
            "state": args.state,
        },
        "max_parallel": args.max_parallel,
        "max_parallel_per_node": args.per_node,
        "canary": args.canary,
        "min_healthy": args.min_healthy,
        "healthy_deadline": args.healthy_deadline,
        "max_failures": args.max_failures,
        "max_failure_ratio": args.max_failure_ratio,
        "on_failure": args.on_failure,
        "batch_delay": args.batch_delay,
        "stop_timeout": args.stop_timeout,
        "node_wait": args.node_wait,
    }
    try:
        return FleetRestartInput.model_validate(fields)
    except ValidationError as err:
        raise InvalidParameter(describe_validation_error(err)) from None


def progress_line(progress: FleetProgress) -> str:
    """``[#####-----] 40/60 restarted 38 failed 2 busy 0 in flight 3  running``."""
    counts = progress.counts
    finished = counts.restarted + counts.failed + counts.busy
    filled = BAR_WIDTH * finished // counts.total if counts.total else BAR_WIDTH
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    line = (
        f"[{bar}] {finished}/{counts.total}  restarted {counts.restarted}  failed "
        f"{counts.failed}  busy {counts.busy}  in flight {counts.in_flight}  {progress.status}"
    )
    return line + (f" ({progress.reason})" if progress.reason else "")


async def watch(berth: BerthClient, name: str, out: TextIO, interval: float = 0.5) -> FleetProgress:
    """Redraw the progress bar until the run ends (one line per update when not a terminal)."""
    tty = out.isatty()
    last = ""
    while True:
        progress = await berth.fleet.progress(name)
        line = progress_line(progress)
        if line != last:
            out.write(("\r\x1b[2K" + line) if tty else line + "\n")
            out.flush()
            last = line
        if progress.status in ENDED:
            if tty:
                out.write("\n")
            return progress
        await asyncio.sleep(interval)


def print_progress(progress: FleetProgress) -> None:
    print(progress_line(progress))
    for node, counts in progress.nodes.items():
        print(
            f"  {node:<12} restarted {counts.restarted:<5} failed {counts.failed:<5} "
            f"busy {counts.busy:<5} in flight {counts.in_flight:<3} remaining {counts.remaining}"
        )
    for error in progress.errors:
        print(f"  error: {error}")


async def cmd_fleet_restart(context: Context, args: argparse.Namespace) -> int:
    berth = await context.berth()
    request = request_from_args(args)
    await berth.fleet.restart(request)
    print(f"fleet restart {request.name} started (workflow fleet-restart-{request.name})")
    if not args.watch:
        return 0
    progress = await watch(berth, request.name, sys.stdout)
    print_progress(progress)
    return 0 if progress.status == "completed" and not progress.counts.failed else 1


async def cmd_fleet_status(context: Context, args: argparse.Namespace) -> int:
    berth = await context.berth()
    if args.watch:
        await watch(berth, args.name, sys.stdout)
    print_progress(await berth.fleet.progress(args.name))
    return 0


async def cmd_fleet_control(context: Context, args: argparse.Namespace) -> int:
    berth = await context.berth()
    action = {
        "pause": berth.fleet.pause,
        "resume": berth.fleet.resume,
        "cancel": berth.fleet.cancel,
    }
    print_progress(await action[args.fleet_command](args.name))
    return 0


async def cmd_fleet_show(context: Context, args: argparse.Namespace) -> int:
    berth = await context.berth()
    run, items = await berth.fleet.show(args.name)
    if args.json:
        from berth.client import dumps

        print(
            dumps(
                {
                    "id": run.id,
                    "name": run.name,
                    "status": run.status,
                    "reason": run.reason,
                    "total": run.total,
                    "created_at": run.created_at,
                    "finished_at": run.finished_at,
                    "items": [
                        {
                            "container": i.container_id,
                            "name": i.container_name,
                            "node": i.node,
                            "outcome": i.outcome,
                            "error": i.error,
                            "pid": i.pid,
                            "started_at": i.started_at,
                            "finished_at": i.finished_at,
                        }
                        for i in items
                    ],
                }
            )
        )
        return 0
    print(f"fleet restart {run.name} ({run.id}): {run.status}  {run.reason or ''}".rstrip())
    print(f"{'CONTAINER':<14} {'NAME':<24} {'NODE':<10} {'OUTCOME':<10} {'SECONDS':>8}  ERROR")
    for item in items:
        took = (
            f"{(item.finished_at - item.started_at).total_seconds():8.2f}"
            if item.started_at and item.finished_at
            else f"{'':8}"
        )
        print(
            f"{item.container_id[:12]:<14} {item.container_name:<24} {item.node:<10} "
            f"{item.outcome:<10} {took}  {item.error or ''}"
        )
    return 0


def configure(verb: str, fleet: argparse.ArgumentParser) -> None:
    """``berth fleet restart|status|pause|resume|cancel|show`` (see ``berth.cli.verbs``)."""
    verbs = fleet.add_subparsers(dest="fleet_command", required=True)

    restart = verbs.add_parser("restart", help="restart the selected containers")
    restart.add_argument("--name", help="the run's name (default: a generated one)")
    restart.add_argument("--ids", action="append", default=[], help="ids or names, comma-separated")
    restart.add_argument("--label", action="append", default=[], help="k=v (all must match)")
    restart.add_argument("--node")
    restart.add_argument("--state", help="created, running, exited, ...")
    restart.add_argument("--max-parallel", type=int, default=8)
    restart.add_argument("--per-node", type=int, default=None)
    restart.add_argument("--canary", type=int, default=0)
    restart.add_argument("--min-healthy", type=float, default=0.0, help="seconds")
    restart.add_argument("--healthy-deadline", type=float, default=300.0, help="seconds")
    budget = restart.add_mutually_exclusive_group()
    budget.add_argument("--max-failures", type=int, default=None)
    budget.add_argument("--max-failure-ratio", type=float, default=None)
    restart.add_argument("--on-failure", choices=["pause", "abort"], default="pause")
    restart.add_argument("--batch-delay", type=float, default=0.0, help="seconds")
    restart.add_argument("--stop-timeout", type=int, default=10, help="seconds before SIGKILL")
    restart.add_argument("--node-wait", type=float, default=120.0, help="seconds")
    restart.add_argument("--watch", action="store_true", help="show a progress bar until done")
    restart.set_defaults(handler=cmd_fleet_restart)

    status = verbs.add_parser("status", help="a fleet restart's progress")
    status.add_argument("name")
    status.add_argument("--watch", action="store_true")
    status.set_defaults(handler=cmd_fleet_status)
    for verb in ("pause", "resume", "cancel"):
        control = verbs.add_parser(verb, help=f"{verb} a running fleet restart")
        control.add_argument("name")
        control.set_defaults(handler=cmd_fleet_control)
    show = verbs.add_parser("show", help="a fleet restart's recorded items")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_fleet_show)
