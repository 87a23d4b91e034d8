"""``berth create``: docker create's flags as a ``ContainerConfig``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from berth.cli.context import Context

if TYPE_CHECKING:
    from berth.contract import ContainerConfig, HealthCheck, RestartPolicy


def parse_restart(value: str) -> RestartPolicy:
    from berth.contract import RestartPolicy

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
    from berth.contract import HealthCheck

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
    from pydantic import ValidationError

    from berth.contract import ContainerConfig, Resources
    from berth.converter import describe_validation_error
    from berth.errors import InvalidParameter

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


async def cmd_create(context: Context, args: argparse.Namespace) -> int:
    config = config_from_args(args)
    created = await (await context.berth()).create(config)
    print(created.id)
    return 0


def add_create_arguments(parser: argparse.ArgumentParser) -> None:
    """docker create's flags that Berth takes."""
    parser.add_argument("--name", required=True)
    parser.add_argument("-e", "--env", action="append", default=[])
    parser.add_argument("-l", "--label", action="append", default=[])
    parser.add_argument("--network", default="bridge", choices=["bridge", "none", "host"])
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("--restart", default="no")
    parser.add_argument("-m", "--memory", type=int, help="memory limit in bytes")
    parser.add_argument("--cpu-shares", type=int)
    parser.add_argument("--pids-limit", type=int)
    parser.add_argument("--entrypoint")
    parser.add_argument("-w", "--workdir", default="")
    parser.add_argument("-u", "--user", default="")
    parser.add_argument("--node")
    parser.add_argument("--health-cmd", help="command run by /bin/sh -c inside the container")
    parser.add_argument("--health-interval", type=float, help="seconds between checks (30)")
    parser.add_argument("--health-timeout", type=float, help="seconds before a check fails (30)")
    parser.add_argument("--health-start-period", type=float, help="grace period, seconds (0)")
    parser.add_argument("--health-retries", type=int, help="failures before unhealthy (3)")
    parser.add_argument("--no-healthcheck", action="store_true", help="disable the image's check")
    parser.add_argument("image")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    add_create_arguments(parser)
    parser.set_defaults(handler=cmd_create)
