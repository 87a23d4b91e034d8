"""Every ``berth`` verb: its module and its one-line help, for dispatch without importing it.

A verb module provides ``configure(verb, parser)``: it adds the verb's arguments to ``parser`` and
sets ``handler``, an ``async (Context, argparse.Namespace) -> int`` (see ``berth.cli.main``).
"""

from __future__ import annotations

from typing import NamedTuple


class Verb(NamedTuple):
    module: str
    help: str


VERBS: dict[str, Verb] = {
    "create": Verb("berth.cli.create", "create a container"),
    "run": Verb("berth.cli.create", "create and start a container; without -d, wait for it"),
    "start": Verb("berth.cli.lifecycle", "start one or more containers"),
    "stop": Verb("berth.cli.lifecycle", "stop one or more containers"),
    "restart": Verb("berth.cli.lifecycle", "restart one or more containers"),
    "pause": Verb("berth.cli.lifecycle", "pause all processes of containers"),
    "unpause": Verb("berth.cli.lifecycle", "unpause all processes of containers"),
    "rm": Verb("berth.cli.lifecycle", "remove one or more containers"),
    "wait": Verb("berth.cli.lifecycle", "block until containers stop; print exit codes"),
    "export": Verb("berth.cli.cp", "write a tar of a container's filesystem on this host"),
    "cp": Verb("berth.cli.cp", "copy files between a container and this host (tar streams)"),
    "exec": Verb("berth.cli.exec", "run a command in a running container"),
    "attach": Verb("berth.cli.exec", "attach this terminal to a running container's stdio"),
    "ps": Verb("berth.cli.ps", "list containers"),
    "inspect": Verb("berth.cli.inspect", "show containers as JSON"),
    "events": Verb("berth.cli.events", "print container events"),
    "logs": Verb("berth.cli.logs", "print a container's output"),
    "fleet": Verb("berth.fleet_cli", "restart fleets of containers"),
    "node": Verb("berth.cli.node", "list nodes with their containers and IPs used/free"),
    "image": Verb("berth.cli.image", "pull, list and remove images on nodes"),
    "volume": Verb("berth.cli.volume", "create, list, inspect and remove named volumes"),
    "codec-server": Verb("berth.cli.codec", "serve the payload codec for the Temporal Web UI"),
    "codec-keys": Verb("berth.cli.codec", "print a new payload-encryption key set"),
    "completion": Verb("berth.cli.completion", "print a bash, zsh or fish completion script"),
}
