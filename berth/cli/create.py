"""``berth create`` and ``berth run``: docker's create flags as a ``ContainerConfig``.

``run`` is create + start: with ``-d`` it prints the id, like docker; without, it prints the
container's output until it exits and exits with its code (a start that fails with a runtime
error exits 126/127/128 as recorded, anything else the daemon refuses exits 125, as docker run).
Human units as docker takes them: ``-m 512m``, ``--health-interval 5s``; ``-e``/``--env-file``,
``-l``/``--label-file``, ``-v``/``--mount type=bind``, ``-w``, ``-u``, ``--pull``, the resource
knobs (``--cpus``, ``--memory-swap``, ``--ulimit``, ``--oom-score-adj``, ``--shm-size``,
``--read-only``, ``--tmpfs``, ``--cap-add``/``--cap-drop``), and the network flags (``-p``,
``-P``, ``--hostname``, ``--add-host``, ``--dns*``: berth.cli.network_flags).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from berth.cli.argfiles import env_entries, label_map
from berth.cli.binds import binds, named_volumes
from berth.cli.context import Context, DaemonError, daemon_error
from berth.cli.network_flags import add_network_flags, network_fields
from berth.cli.units import parse_bytes, parse_cpus, parse_duration
from berth.cli.usage import UsageError

if TYPE_CHECKING:
    from berth.contract import ContainerConfig, HealthCheck, RestartPolicy, Ulimit

T = TypeVar("T")
# docker run's exit code when the daemon refuses the create or the start.
EXIT_RUN_FAILED = 125


def flag(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type=`` whose ``UsageError`` message is the usage error's (exit 125)."""

    def typed(value: str) -> T:
        try:
            return parse(value)
        except UsageError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    typed.__name__ = parse.__name__
    return typed


def parse_restart(value: str) -> RestartPolicy:
    from berth.contract import RestartPolicy

    name, _, count = value.partition(":")
    if count and not count.isdigit():
        raise UsageError(f"invalid restart policy {value!r}: the count must be a number")
    return RestartPolicy.model_validate(
        {"name": name, "maximum_retry_count": int(count) if count else 0}
    )


def healthcheck_from_args(args: argparse.Namespace) -> HealthCheck | None:
    """docker create's ``--health-*`` flags and ``--no-healthcheck`` as a check (None: image's)."""
    from berth.contract import HealthCheck

    timing = {
        "interval": args.health_interval,
        "timeout": args.health_timeout,
        "start_period": args.health_start_period,
        "retries": args.health_retries,
    }
    given = {k: v for k, v in timing.items() if v is not None}
    if args.no_healthcheck:
        if args.health_cmd or given:
            raise UsageError("--no-healthcheck conflicts with --health-* options")
        return HealthCheck(test=["NONE"])
    if not args.health_cmd:
        return None
    return HealthCheck.model_validate({"test": ["CMD-SHELL", args.health_cmd], **given})


def seccomp_profile(options: list[str]) -> str | None:
    """``--security-opt seccomp=<profile>``: the only security option Berth takes."""
    profile = None
    for option in options:
        key, sep, value = option.partition("=" if "=" in option else ":")
        if key != "seccomp" or not sep or not value:
            raise UsageError(f"invalid --security-opt {option!r}: only seccomp=<profile> is taken")
        profile = value
    return profile


def parse_ulimit(value: str) -> Ulimit:
    """``--ulimit NAME=SOFT[:HARD]`` (``nofile=1024:2048``)."""
    from berth.contract import Ulimit

    try:
        return Ulimit.parse(value)
    except ValueError as err:  # pydantic's ValidationError is one too
        raise UsageError(f"invalid argument {value!r} for --ulimit: {_first_line(err)}") from None


def _first_line(err: ValueError) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in errors())
    return str(err)


def parse_memory_swap(value: str) -> int:
    """``--memory-swap``: a size, or -1 for unlimited swap."""
    return -1 if value.strip() == "-1" else parse_bytes(value)


def tmpfs_mounts(specs: list[str]) -> dict[str, str]:
    """``--tmpfs PATH[:OPTIONS]`` flags as Docker's HostConfig.Tmpfs (path -> options)."""
    mounts: dict[str, str] = {}
    for spec in specs:
        path, _, options = spec.partition(":")
        if not path:
            raise UsageError(f"invalid --tmpfs {spec!r}: expected PATH[:OPTIONS]")
        mounts[path] = options
    return mounts


def generated_name(image: str) -> str:
    """A name for a container given none: the image's last path part and 8 random hex digits."""
    base = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0] or "container"
    return f"{base}-{secrets.token_hex(4)}"


def config_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as ``ContainerConfig`` fields (checked for shape here, for values by the
    contract)."""
    return {
        "name": args.name or generated_name(args.image),
        "image": args.image,
        "entrypoint": [args.entrypoint] if args.entrypoint else None,
        "cmd": args.cmd or None,
        "env": env_entries(args.env_file, args.env, os.environ),
        "working_dir": args.workdir,
        "user": args.user,
        "labels": label_map(args.label_file, args.label),
        "network_mode": args.network,
        "auto_remove": args.rm,
        "restart_policy": parse_restart(args.restart),
        "resources": {
            "memory_bytes": args.memory,
            "cpu_shares": args.cpu_shares,
            "pids_limit": args.pids_limit,
            "memory_swap_bytes": args.memory_swap,
            "nano_cpus": args.cpus,
        },
        "ulimits": args.ulimit,
        "oom_score_adj": args.oom_score_adj,
        "shm_size_bytes": args.shm_size,
        "read_only_rootfs": args.read_only,
        "tmpfs": tmpfs_mounts(args.tmpfs),
        "cap_add": args.cap_add,
        "cap_drop": args.cap_drop,
        "tty": args.tty,
        "open_stdin": args.interactive,
        "binds": binds(args.volume, args.mount),
        "volumes": named_volumes(args.volume, args.mount),
        "node": args.node,
        "healthcheck": healthcheck_from_args(args),
        "seccomp_profile": seccomp_profile(args.security_opt),
        "pull_policy": args.pull,
        **network_fields(args),
    }


def config_from_args(args: argparse.Namespace) -> ContainerConfig:
    """The container's config from the flags.

    Raises:
        UsageError: a flag's shape is wrong (exit 125).
        DaemonError: the contract refuses a value, naming the field (docker's
            ``Error response from daemon``, as the workflow's ``InvalidParameter`` would say).
    """
    from pydantic import ValidationError

    from berth.contract import ContainerConfig
    from berth.validation import describe_validation_error

    try:
        fields = config_fields(args)
        if args.restart != "no" and args.rm:
            raise UsageError("conflicting options: cannot specify both --restart and --rm")
        return ContainerConfig.model_validate(fields)
    except ValidationError as err:
        raise DaemonError(describe_validation_error(err)) from None
    except UsageError:
        raise
    except ValueError as err:
        raise DaemonError(str(err)) from None


async def cmd_create(context: Context, args: argparse.Namespace) -> int:
    config = config_from_args(args)
    created = await (await context.operations()).create(config)
    print(created.id)
    return 0


async def cmd_run(context: Context, args: argparse.Namespace) -> int:
    """create + start; without ``-d`` the container's output, then its exit code."""
    operations = await context.operations()
    created_id = None
    try:
        created_id = (await operations.create(config_from_args(args))).id
        await operations.start(created_id)
    except Exception as err:
        message = daemon_error(context, err)
        if message is None:
            raise
        print(f"berth: Error response from daemon: {message}", file=sys.stderr)
        return await _failed_start_code(context, created_id)
    if args.detach:
        print(created_id)
        return 0
    if args.tty:
        from berth.cli.exec import attach_container
        from berth.endpoint.client import endpoint_failure

        try:
            # Its terminal, from the log's start: what it printed before the attach is not lost.
            return await attach_container(context, created_id, args.interactive, logs=True)
        except Exception as err:
            failure = endpoint_failure(err)
            if getattr(failure, "error_type", None) != "Conflict":
                raise
            # It ended before the attach began (a short command): its output and code, as -d-less
            # run without -t shows them.
    return await _attach(context, created_id)


async def _failed_start_code(context: Context, container_id: str | None) -> int:
    """docker run's code for a failed start: 126/127 as the runtime recorded them, else 125
    (also when ``--rm`` removed it: nothing recorded to read)."""
    if container_id is None:
        return EXIT_RUN_FAILED
    container = await (await context.reader()).find(container_id)
    code = container.exit_code if container is not None else None
    return code if code in (126, 127) else EXIT_RUN_FAILED


async def _attach(context: Context, container_id: str) -> int:
    """The container's output while it runs (from its log), then its exit code (docker wait);
    a container already removed (``--rm``) leaves only the code its ``die`` event recorded."""
    from berth.cli.lifecycle import wait_exit
    from berth.cli.logs import print_logs
    from berth.endpoint.client import EndpointError

    reader = await context.reader()
    container = await reader.find(container_id)
    if container is not None:
        try:
            await print_logs(context, container, follow=True)
        except EndpointError as err:
            if err.error_type != "NotFound":  # removed meanwhile (--rm): nothing more to print
                raise
    return await wait_exit(reader, container_id)


def add_create_arguments(parser: argparse.ArgumentParser) -> None:
    """docker create's flags that Berth takes."""
    parser.add_argument("--name", help="the container's name (default: image-<random>)")
    parser.add_argument(
        "-i", "--interactive", action="store_true", help="keep stdin open for attach (with -t)"
    )
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    parser.add_argument(
        "-e", "--env", action="append", default=[], help="KEY=VALUE, or KEY from this shell"
    )
    parser.add_argument("--env-file", action="append", default=[], help="a file of KEY=VALUE")
    parser.add_argument("-l", "--label", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--label-file", action="append", default=[], help="a file of labels")
    parser.add_argument("--network", "--net", default="bridge", choices=["bridge", "none", "host"])
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument(
        "--restart", default="no", help="no, always, unless-stopped, on-failure[:N]"
    )
    parser.add_argument(
        "-m", "--memory", type=flag(parse_bytes), help="memory limit (512m, 1g, bytes)"
    )
    parser.add_argument("-c", "--cpu-shares", type=int, help="relative CPU weight")
    parser.add_argument("--pids-limit", type=int, help="most processes at once")
    parser.add_argument(
        "--memory-swap",
        type=flag(parse_memory_swap),
        help="memory plus swap (default twice --memory; -1 unlimited)",
    )
    parser.add_argument("--cpus", type=flag(parse_cpus), help="number of CPUs (1.5)")
    parser.add_argument(
        "--ulimit", type=flag(parse_ulimit), action="append", default=[], help="nofile=1024:2048"
    )
    parser.add_argument("--oom-score-adj", type=int, default=0, help="-1000 to 1000 (0)")
    parser.add_argument("--shm-size", type=flag(parse_bytes), help="size of /dev/shm (64m)")
    parser.add_argument("--read-only", action="store_true", help="mount the root read-only")
    parser.add_argument(
        "--tmpfs", action="append", default=[], help="a tmpfs mount: /run[:rw,size=64m]"
    )
    parser.add_argument("--cap-add", action="append", default=[], help="add a capability (ALL)")
    parser.add_argument("--cap-drop", action="append", default=[], help="drop a capability")
    parser.add_argument("--entrypoint", help="the image's ENTRYPOINT instead")
    parser.add_argument("-w", "--workdir", default="", help="working directory inside")
    parser.add_argument("-u", "--user", default="", help="user[:group] inside")
    parser.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        help="bind /host:/container[:ro], or a named volume name:/container[:ro]",
    )
    parser.add_argument(
        "--mount", action="append", default=[], help="type=bind,source=/h,target=/c[,readonly]"
    )
    parser.add_argument("--security-opt", action="append", default=[], help="seccomp=<profile>")
    parser.add_argument("--node", help="the node to place it on")
    parser.add_argument(
        "--pull",
        choices=["missing", "always", "never"],
        default="missing",
        help="pull the image on the node before starting (missing)",
    )
    parser.add_argument("--health-cmd", help="command run by /bin/sh -c inside the container")
    for name, what in (
        ("interval", "between checks (30s)"),
        ("timeout", "before a check fails (30s)"),
        ("start-period", "grace period (0s)"),
    ):
        parser.add_argument(f"--health-{name}", type=flag(parse_duration), help=f"time {what}")
    parser.add_argument("--health-retries", type=int, help="failures before unhealthy (3)")
    parser.add_argument("--no-healthcheck", action="store_true", help="disable the image's check")
    add_network_flags(parser)
    parser.add_argument("image")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    add_create_arguments(parser)
    if verb == "run":
        parser.add_argument(
            "-d", "--detach", action="store_true", help="run in the background, print its id"
        )
        parser.set_defaults(handler=cmd_run)
    else:
        parser.set_defaults(handler=cmd_create)
