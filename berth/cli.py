"""``berth``: the command line, with docker's verbs, messages and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError
from temporalio.service import RPCError

from berth.client import BerthClient, call_error, dumps
from berth.codec import AesGcmCodec, CodecKeys, codec_app, generate_keys
from berth.config import Settings
from berth.contract import (
    ContainerConfig,
    ContainerState,
    HealthCheck,
    Resources,
    RestartPolicy,
)
from berth.converter import describe_validation_error
from berth.errors import BerthError, InvalidParameter
from berth.fleet_cli import add_fleet_parser


def parse_restart(value: str) -> RestartPolicy:
    name, _, count = value.partition(":")
    return RestartPolicy.model_validate(
        {"name": name, "maximum_retry_count": int(count) if count else 0}
    )


def parse_labels(values: list[str]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, _, val = value.partition("=")
        labels[key] = val
    return labels


def healthcheck_from_args(args: argparse.Namespace) -> HealthCheck | None:
    """docker create's ``--health-*`` flags and ``--no-healthcheck`` as a check (None: image's)."""
    if args.no_healthcheck:
        return HealthCheck(test=["NONE"])
    if not args.health_cmd:
        return None
    timing = {
        "interval": args.health_interval,
        "timeout": args.health_timeout,
        "start_period": args.health_start_period,
        "retries": args.health_retries,
    }
    given = {k: v for k, v in timing.items() if v is not None}
    return HealthCheck.model_validate({"test": ["CMD-SHELL", args.health_cmd], **given})


def config_from_args(args: argparse.Namespace) -> ContainerConfig:
    try:
        return ContainerConfig(
            name=args.name,
            image=args.image,
            entrypoint=[args.entrypoint] if args.entrypoint else None,
            cmd=args.cmd or None,
            env=args.env,
            working_dir=args.workdir,
            user=args.user,
            labels=parse_labels(args.label),
            network_mode=args.network,
            auto_remove=args.rm,
            restart_policy=parse_restart(args.restart),
            resources=Resources(
                memory_bytes=args.memory, cpu_shares=args.cpu_shares, pids_limit=args.pids_limit
            ),
            node=args.node,
            healthcheck=healthcheck_from_args(args),
        )
    except ValidationError as err:
        raise InvalidParameter(describe_validation_error(err)) from None
    except ValueError as err:
        raise InvalidParameter(str(err)) from None


async def cmd_create(berth: BerthClient, args: argparse.Namespace) -> int:
    created = await berth.create(config_from_args(args))
    print(created.id)
    return 0


async def cmd_start(berth: BerthClient, args: argparse.Namespace) -> int:
    return await for_each(args.containers, "start", berth.start)


async def for_each(refs: list[str], verb: str, action: Callable[[str], Awaitable[object]]) -> int:
    """Run ``action`` on every container, as docker does: print each, report the failures."""
    failed = []
    for ref in refs:
        try:
            await action(ref)
            print(ref)
        except BerthError as err:
            print(f"Error response from daemon: {err.message}", file=sys.stderr)
            failed.append(ref)
    if failed:
        print(f"Error: failed to {verb} containers: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


async def cmd_stop(berth: BerthClient, args: argparse.Namespace) -> int:
    return await for_each(args.containers, "stop", lambda ref: berth.stop(ref, args.time))


async def cmd_restart(berth: BerthClient, args: argparse.Namespace) -> int:
    return await for_each(args.containers, "restart", lambda ref: berth.restart(ref, args.time))


async def cmd_pause(berth: BerthClient, args: argparse.Namespace) -> int:
    return await for_each(args.containers, "pause", berth.pause)


async def cmd_unpause(berth: BerthClient, args: argparse.Namespace) -> int:
    return await for_each(args.containers, "unpause", berth.unpause)


async def cmd_rm(berth: BerthClient, args: argparse.Namespace) -> int:
    return await for_each(args.containers, "remove", lambda ref: berth.remove(ref, args.force))


async def cmd_wait(berth: BerthClient, args: argparse.Namespace) -> int:
    failed = False
    for ref in args.containers:
        try:
            print(await berth.wait(ref))
        except BerthError as err:
            print(f"Error response from daemon: {err.message}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


async def cmd_inspect(berth: BerthClient, args: argparse.Namespace) -> int:
    print(dumps([await berth.inspect(ref) for ref in args.containers]))
    return 0


def health_label(statuses: dict[str, str], container_id: str) -> str:
    """docker ps's suffix: `` (healthy)``, `` (unhealthy)``, `` (health: starting)`` or none."""
    status = statuses.get(container_id)
    if status is None:
        return ""
    return f" (health: {status})" if status == "starting" else f" ({status})"


async def cmd_ps(berth: BerthClient, args: argparse.Namespace) -> int:
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


async def cmd_export(berth: BerthClient, args: argparse.Namespace) -> int:
    # The agent refuses a directory reached through a symlink; resolve the caller's own.
    directory, name = os.path.split(os.path.abspath(args.output))
    await berth.export(args.container, os.path.join(os.path.realpath(directory), name))
    return 0


async def cmd_logs(berth: BerthClient, args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    async for chunk in berth.stream_logs(args.container, tail=args.tail, follow=args.follow):
        out.write(chunk)
        if args.follow:
            out.flush()
    return 0


def parse_tail(value: str) -> int | None:
    """docker logs' ``--tail``: a number of lines, or ``all``."""
    if value == "all":
        return None
    try:
        lines = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of lines or 'all': {value!r}") from None
    if lines < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {lines}")
    return lines


async def cmd_events(berth: BerthClient, args: argparse.Namespace) -> int:
    for event in await berth.events(args.container):
        attributes = ", ".join(f"{k}={v}" for k, v in event.attributes.items())
        print(
            f"{event.time.isoformat()} container {event.action} {event.container_id} "
            f"(name={event.container_name}, node={event.node}{', ' if attributes else ''}"
            f"{attributes})"
        )
    return 0


Command = Callable[[BerthClient, argparse.Namespace], Awaitable[int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="berth", description="Durable container lifecycle")
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create", help="create a container")
    create.add_argument("--name", required=True)
    create.add_argument("-e", "--env", action="append", default=[])
    create.add_argument("-l", "--label", action="append", default=[])
    create.add_argument("--network", default="bridge", choices=["bridge", "none", "host"])
    create.add_argument("--rm", action="store_true", help="remove the container when it exits")
    create.add_argument("--restart", default="no")
    create.add_argument("-m", "--memory", type=int, help="memory limit in bytes")
    create.add_argument("--cpu-shares", type=int)
    create.add_argument("--pids-limit", type=int)
    create.add_argument("--entrypoint")
    create.add_argument("-w", "--workdir", default="")
    create.add_argument("-u", "--user", default="")
    create.add_argument("--node")
    create.add_argument("--health-cmd", help="command run by /bin/sh -c inside the container")
    create.add_argument("--health-interval", type=float, help="seconds between checks (30)")
    create.add_argument("--health-timeout", type=float, help="seconds before a check fails (30)")
    create.add_argument("--health-start-period", type=float, help="grace period, seconds (0)")
    create.add_argument("--health-retries", type=int, help="failures before unhealthy (3)")
    create.add_argument("--no-healthcheck", action="store_true", help="disable the image's check")
    create.add_argument("image")
    create.add_argument("cmd", nargs=argparse.REMAINDER)
    create.set_defaults(run=cmd_create)

    def per_container(name: str, help_text: str, handler: Command) -> argparse.ArgumentParser:
        """A verb that takes one or more containers, as docker's do."""
        verb = commands.add_parser(name, help=help_text)
        verb.add_argument("containers", nargs="+")
        verb.set_defaults(run=handler)
        return verb

    per_container("start", "start one or more containers", cmd_start)
    for name, handler in (("stop", cmd_stop), ("restart", cmd_restart)):
        per_container(name, f"{name} one or more containers", handler).add_argument(
            "-t", "--time", type=int, help="seconds to wait before SIGKILL (10)"
        )
    per_container("pause", "pause all processes of containers", cmd_pause)
    per_container("unpause", "unpause all processes of containers", cmd_unpause)
    per_container("rm", "remove one or more containers", cmd_rm).add_argument(
        "-f", "--force", action="store_true", help="kill a running container first"
    )
    per_container("wait", "block until containers stop; print exit codes", cmd_wait)
    per_container("inspect", "show containers as JSON", cmd_inspect)

    ps = commands.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.set_defaults(run=cmd_ps)

    export = commands.add_parser("export", help="write a tar of a container's filesystem")
    export.add_argument("container")
    export.add_argument("-o", "--output", required=True, help="the tar file to write")
    export.set_defaults(run=cmd_export)

    logs = commands.add_parser("logs", help="print a container's output")
    logs.add_argument("container")
    logs.add_argument(
        "-n", "--tail", type=parse_tail, default=None, help="lines from the end ('all')"
    )
    logs.add_argument("-f", "--follow", action="store_true", help="follow until it stops")
    logs.set_defaults(run=cmd_logs)

    events = commands.add_parser("events", help="print container events")
    events.add_argument("container", nargs="?")
    events.set_defaults(run=cmd_events)

    add_fleet_parser(commands)

    codec_server = commands.add_parser(
        "codec-server", help="serve the payload codec for the Temporal Web UI"
    )
    codec_server.add_argument("--address", default="127.0.0.1")
    codec_server.add_argument("--port", type=int, default=8081)
    codec_server.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        help="a Web UI origin allowed by CORS (default: http://127.0.0.1:8233, localhost)",
    )
    codec_server.set_defaults(offline=cmd_codec_server)

    codec_keys = commands.add_parser("codec-keys", help="print a new payload-encryption key set")
    codec_keys.add_argument("--key-id", default="k1")
    codec_keys.set_defaults(offline=cmd_codec_keys)
    return parser


async def cmd_codec_server(args: argparse.Namespace) -> int:
    settings = Settings()
    keys = CodecKeys.from_settings(settings)
    if keys is None:
        raise InvalidParameter("set BERTH_CODEC_KEYS or BERTH_CODEC_KEYS_FILE first")
    origins = args.allow_origin or ["http://127.0.0.1:8233", "http://localhost:8233"]
    runner = web.AppRunner(codec_app(AesGcmCodec(keys), origins))
    await runner.setup()
    await web.TCPSite(runner, args.address, args.port).start()
    print(f"codec server on http://{args.address}:{args.port} for {', '.join(origins)}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return 0


async def cmd_codec_keys(args: argparse.Namespace) -> int:
    print(generate_keys(args.key_id))
    return 0


async def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "offline", None):
        try:
            return int(await args.offline(args))
        except BerthError as err:
            print(f"Error: {err.message}", file=sys.stderr)
            return 1
    command: Callable[[BerthClient, argparse.Namespace], Awaitable[int]] = args.run
    # The CLI serves no metrics: the workers own the metrics ports (BERTH_METRICS_ADDRESS
    # may be set in an environment shared with them, as the dev stack's is).
    settings = Settings().model_copy(update={"metrics_address": None})
    try:
        async with await BerthClient.connect(settings) as berth:
            return await command(berth, args)
    except RPCError as err:
        # A Temporal call the client leaves raw (a verb's own RPC) fails in transport: typed.
        error = call_error(settings.temporal_address, err)
        if error is None:
            raise
        print(f"Error response from daemon: {error.message}", file=sys.stderr)
        return 1
    except BerthError as err:
        print(f"Error response from daemon: {err.message}", file=sys.stderr)
        return 1


def main() -> None:
    code = asyncio.run(run())
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal client's native threads can still call into Python while the interpreter
    # finalizes, which aborts the process (SIGABRT) after the command already succeeded; all
    # work is done and flushed here, so leave without finalizing.
    os._exit(code)
