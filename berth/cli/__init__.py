"""``berth``: the command line, with docker's verbs, messages and exit codes.

The package is laid out for start-up time (each ``berth`` call is a new interpreter):
``berth.cli.main`` parses arguments and imports only the module of the verb given
(``berth.cli.verbs`` names each verb's module); verb modules import their heavy dependencies
inside their handlers. See ``berth.cli.main`` for the rules.
"""

from __future__ import annotations

from berth.cli.main import main as main

__all__ = ["main"]
