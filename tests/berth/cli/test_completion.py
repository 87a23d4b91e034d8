"""berth completion: scripts whose words come from the verbs' own parsers."""

from __future__ import annotations

import subprocess

from berth.cli.completion import bash_script, fish_script, verb_words, zsh_script
from berth.cli.verbs import VERBS


def complete_in_bash(*words: str) -> list[str]:
    """What bash offers for the last of ``words`` (``berth`` first), with the generated script."""
    program = (
        f"{bash_script(verb_words())}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        '_berth; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_verb_words_cover_every_verb_with_its_flags() -> None:
    words = {verb.name: verb for verb in verb_words()}

    assert set(words) == set(VERBS)
    assert {"-d", "--detach", "-m", "--env-file", "--mount"} <= set(words["run"].flags)
    assert {"--filter", "--format", "--no-trunc"} <= set(words["ps"].flags)
    assert words["stop"].containers and not words["ps"].containers
    assert set(words["completion"].subcommands) == {"bash", "zsh", "fish"}


def test_bash_completes_verbs_flags_and_subcommands() -> None:
    assert complete_in_bash("berth", "st") == ["start", "stop"]
    assert complete_in_bash("berth", "ps", "--no") == ["--no-trunc"]
    assert complete_in_bash("berth", "run", "--health-i") == ["--health-interval"]
    assert "resume" in complete_in_bash("berth", "fleet", "re")
    assert complete_in_bash("berth", "completion", "") == ["bash", "fish", "zsh"]


def test_zsh_and_fish_scripts_name_the_verbs() -> None:
    verbs = verb_words()

    assert "bashcompinit" in zsh_script(verbs) and "complete -o default -F _berth berth" in (
        zsh_script(verbs)
    )
    fish = fish_script(verbs)
    assert "complete -c berth -n __fish_use_subcommand -a run -d" in fish
    assert "complete -c berth -n '__fish_seen_subcommand_from ps' -l no-trunc" in fish
