"""``berth completion bash|zsh|fish``: a shell completion script, as ``docker completion`` prints.

The script completes verbs, each verb's flags (read from the verbs' own parsers when the script
is generated, so it never goes stale against them), the sub-commands of ``fleet``, and container
names for the verbs that take containers (by ``berth ps -a --format '{{.Names}}'`` at completion
time). Install: ``berth completion bash > /etc/bash_completion.d/berth``, or
``source <(berth completion zsh)``, or
``berth completion fish > ~/.config/fish/completions/berth.fish``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import NamedTuple

from berth.cli.context import Context

# Positional arguments that name containers (completed from ``berth ps -a``).
CONTAINER_ARGUMENTS = frozenset({"container", "containers"})
LIST_NAMES = "berth ps -a --format '{{.Names}}' 2>/dev/null"


class VerbWords(NamedTuple):
    """What a shell may complete after one verb."""

    name: str
    help: str
    flags: tuple[str, ...]
    subcommands: tuple[str, ...]
    containers: bool


def verb_words() -> list[VerbWords]:
    """Every verb's flags, sub-commands and whether it takes containers, from its own parser."""
    from berth.cli.verbs import VERBS

    words = []
    for name, verb in VERBS.items():
        parser = argparse.ArgumentParser(prog=f"berth {name}", add_help=True)
        importlib.import_module(verb.module).configure(name, parser)
        flags: list[str] = []
        subcommands: list[str] = []
        containers = False
        for action in parser._actions:
            flags.extend(option for option in action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                subcommands.extend(action.choices)
            elif not action.option_strings and action.dest in CONTAINER_ARGUMENTS:
                containers = True
            elif not action.option_strings and action.choices:
                subcommands.extend(str(choice) for choice in action.choices)
        words.append(VerbWords(name, verb.help, tuple(flags), tuple(subcommands), containers))
    return words


def bash_script(verbs: list[VerbWords]) -> str:
    """A bash completion function for ``berth`` (zsh runs it through ``bashcompinit``)."""
    cases = []
    for verb in verbs:
        cases.append(
            f'        {verb.name}) flags="{" ".join(verb.flags)}"; '
            f'words="{" ".join(verb.subcommands)}"; containers={1 if verb.containers else 0} ;;'
        )
    names = " ".join(verb.name for verb in verbs)
    case_lines = "\n".join(cases)
    return f"""# berth shell completion (bash): source it, or put it in /etc/bash_completion.d/berth
_berth() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" flags="" words="" containers=0
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{names}" -- "$cur"))
        return
    fi
    case "${{COMP_WORDS[1]}}" in
{case_lines}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    elif [ "$containers" -eq 1 ]; then
        COMPREPLY=($(compgen -W "$({LIST_NAMES})" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}}
complete -o default -F _berth berth
"""


def zsh_script(verbs: list[VerbWords]) -> str:
    """The bash function under zsh's ``bashcompinit``."""
    return (
        "# berth shell completion (zsh): source <(berth completion zsh)\n"
        "autoload -U +X compinit && compinit\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(verbs)
    )


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_script(verbs: list[VerbWords]) -> str:
    """``complete -c berth`` lines for fish."""
    lines = ["# berth shell completion (fish)", "complete -c berth -f"]
    for verb in verbs:
        lines.append(
            f"complete -c berth -n __fish_use_subcommand -a {verb.name} -d {_fish_quote(verb.help)}"
        )
        when = f"-n '__fish_seen_subcommand_from {verb.name}'"
        for flag in verb.flags:
            kind = "-l" if flag.startswith("--") else "-s"
            lines.append(f"complete -c berth {when} {kind} {flag.lstrip('-')}")
        for sub in verb.subcommands:
            lines.append(f"complete -c berth {when} -a {sub}")
        if verb.containers:
            lines.append(f'complete -c berth {when} -a "({LIST_NAMES})"')
    return "\n".join(lines) + "\n"


SCRIPTS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}


async def cmd_completion(context: Context, args: argparse.Namespace) -> int:
    print(SCRIPTS[args.shell](verb_words()), end="")
    return 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=sorted(SCRIPTS), help="the shell to complete in")
    parser.set_defaults(handler=cmd_completion)
