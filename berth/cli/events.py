"""``berth events``: container events as docker events prints them, following by default.

Like docker: without ``--since`` only new events are shown, and the command streams until
interrupted (or until ``--until`` passes). ``--no-follow`` prints the recorded events in range
(all of them without ``--since``) and exits. ``--filter`` takes container, event, label, node,
image and type; ``--format`` a Go template (``{{.Action}}``, ``{{.Actor.ID}}``,
``{{.Actor.Attributes.name}}``, ``{{.Time}}``, ...) or ``json``. A CONTAINER argument is
``--filter container=CONTAINER``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from berth.cli.context import Context
from berth.cli.filters import EVENT_KEYS, EventRow, Filters, event_matches, parse_filters
from berth.cli.templates import Format, parse_format, render_rows
from berth.cli.units import parse_timestamp

# How often --follow asks for new events.
POLL_SECONDS = 0.25


class EventRecord(Protocol):
    """What an event record gives (Berth's ``container_events`` row), read-only."""

    @property
    def id(self) -> int: ...
    @property
    def container_id(self) -> str: ...
    @property
    def container_name(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def attributes(self) -> dict[str, Any]: ...
    @property
    def time(self) -> datetime: ...


def event_view(event: EventRecord, image: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """One event as docker's ``events.Message`` (``Type``, ``Action``, ``Actor``, ``Time``...)."""
    attributes: dict[str, str] = {**labels}
    attributes.update({k: str(v) for k, v in (event.attributes or {}).items()})
    if image:
        attributes["image"] = image
    attributes.update(name=event.container_name, node=event.node)
    nanos = int(event.time.timestamp()) * 1_000_000_000 + event.time.microsecond * 1000
    return {
        "Type": "container",
        "Action": event.action,
        "Actor": {"ID": event.container_id, "Attributes": attributes},
        "Scope": "local",
        "Time": int(event.time.timestamp()),
        "TimeNano": nanos,
        "Status": event.action,
        "ID": event.container_id,
        "From": image,
    }


def default_line(view: Mapping[str, Any], event_time: datetime) -> str:
    """docker's line: time (RFC 3339, nanoseconds), type, action, id, ``(k=v, ...)`` sorted."""
    moment = event_time.astimezone()
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000"
    offset = moment.strftime("%z")
    zone = "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    attributes = ", ".join(f"{k}={v}" for k, v in sorted(view["Actor"]["Attributes"].items()))
    return f"{stamp}{zone} container {view['Action']} {view['Actor']['ID']} ({attributes})"


class EventPrinter:
    """Filters, formats and prints events; knows each container's image and labels."""

    def __init__(self, filters: Filters, form: Format | None) -> None:
        self.filters = filters
        self.form = form
        self.containers: dict[str, tuple[str, Mapping[str, str]]] = {}

    def lines(
        self, events: Sequence[EventRecord], since: datetime | None, until: datetime | None
    ) -> list[str]:
        out = []
        for event in events:
            if (since is not None and event.time < since) or (
                until is not None and event.time > until
            ):
                continue
            image, labels = self.containers.get(event.container_id, ("", {}))
            image = image or str((event.attributes or {}).get("image", ""))
            row = EventRow(
                container_id=event.container_id,
                container_name=event.container_name,
                action=event.action,
                node=event.node,
                image=image,
                labels=labels,
            )
            if not event_matches(self.filters, row):
                continue
            view = event_view(event, image, labels)
            if self.form is None:
                out.append(default_line(view, event.time))
            else:
                out.extend(render_rows(self.form, [view]))
        return out


async def cmd_events(context: Context, args: argparse.Namespace) -> int:
    given = [*args.filter, *([f"container={args.container}"] if args.container else [])]
    filters = parse_filters(given, EVENT_KEYS)
    form = parse_format(args.format) if args.format else None
    started = datetime.now(UTC)
    since = parse_timestamp(args.since, started) if args.since else None
    until = parse_timestamp(args.until, started) if args.until else None
    follow = args.follow and (until is None or until > started)
    if follow and since is None:
        since = started
    reader = await context.reader()
    printer = EventPrinter(filters, form)
    last_id = 0
    while True:
        events = await reader.events(None, last_id)
        if any(e.container_id not in printer.containers for e in events):
            printer.containers = {
                c.id: (c.image, (c.config or {}).get("labels") or {})
                for c in await reader.containers()
            }
            for event in events:  # removed since: no image or labels to add
                printer.containers.setdefault(event.container_id, ("", {}))
        lines = printer.lines(events, since, until)
        if lines:
            sys.stdout.write("".join(f"{line}\n" for line in lines))
            sys.stdout.flush()
        last_id = max((e.id for e in events), default=last_id)
        if not follow or (until is not None and datetime.now(UTC) > until):
            return 0
        await asyncio.sleep(POLL_SECONDS)


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", nargs="?", help="only this container's events")
    parser.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep printing new events until interrupted (default); --no-follow: exit",
    )
    parser.add_argument("--since", help="from this time: Unix time, RFC 3339, or a duration ago")
    parser.add_argument("--until", help="up to this time (then exit)")
    parser.add_argument(
        "-f", "--filter", action="append", default=[], help="key=value (container, event, ...)"
    )
    parser.add_argument("--format", help="a Go template per event, or 'json'")
    parser.set_defaults(handler=cmd_events)
