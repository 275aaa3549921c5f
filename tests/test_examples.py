"""The CI examples in examples/ (shown in the README) use commands and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from specwatch.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def shell_lines(node: Any) -> list[str]:
    """Every string of a CI file's steps, as shell lines (continuations joined)."""
    if isinstance(node, dict):
        return [line for value in node.values() for line in shell_lines(value)]
    if isinstance(node, list):
        return [line for value in node for line in shell_lines(value)]
    if isinstance(node, str):
        return [line.strip() for line in node.replace("\\\n", " ").splitlines()]
    return []


def specwatch_commands(path: Path) -> list[list[str]]:
    lines = shell_lines(yaml.safe_load(path.read_text()))
    commands = []
    for line in lines:
        line = re.sub(r"\s*(\|\|.*|#.*)$", "", line)
        if line.startswith("specwatch "):
            words = shlex.split(line)[1:]
            commands.append(words[: words.index("--")] if "--" in words else words)
    return commands


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = main
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        found = command.get_command(click.Context(command), rest[0])
        assert found is not None, f"no command {rest[0]!r} in {words}"
        command, rest = found, rest[1:]
    return command, rest


@pytest.mark.parametrize("example", ["github-actions.yml", "gitlab-ci.yml"])
def test_every_specwatch_command_of_the_example_exists(example: str) -> None:
    commands = specwatch_commands(EXAMPLES / example)
    assert any("--fail-on" in words for words in commands)
    used_commands = set()
    for words in commands:
        command, rest = resolve(words)
        used_commands.add(command.name)
        options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        used = {word.split("=")[0] for word in rest if word.startswith("--")}
        assert used <= options, f"{words}: unknown {sorted(used - options)}"
    assert {"upload", "catalog", "run"} <= used_commands
