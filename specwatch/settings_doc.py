"""The README's table of settings, generated from the settings class.

``python -m specwatch.settings_doc --write README.md`` rewrites the table between the
``<!-- settings:begin -->`` and ``<!-- settings:end -->`` markers; ``--check README.md`` exits 1
when it is out of date (tests/test_settings_doc.py does the same check).
"""

from __future__ import annotations

import argparse
import enum
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

from pydantic import SecretBytes, SecretStr
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from specwatch.config import Settings

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
HEADER = "| variable | default | what |\n|---|---|---|\n"


def _members(annotation: object) -> tuple[object, ...]:
    """The members of a union (``X | None``), or the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _choices(annotation: object) -> list[object]:
    return [
        choice
        for member in _members(annotation)
        if get_origin(member) is Literal
        for choice in get_args(member)
    ]


def _plain(value: object) -> str:
    """A value as one would write it in the environment variable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:_}"  # 1_000_000: readable, and the settings read it back
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _default(annotation: object, default: object) -> str:
    secret = any(m in (SecretStr, SecretBytes) for m in _members(annotation))
    if default is None or default == "":
        return "unset"
    if secret:
        return "set (secret)"
    return f"`{_plain(default)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_table(settings_cls: type[BaseSettings] = Settings) -> str:
    """One Markdown row per field of ``settings_cls``, in class order.

    Raises:
        ValueError: a field has no description (every setting is documented).
    """
    prefix = str(settings_cls.model_config.get("env_prefix") or "")
    rows = [HEADER]
    for name, field in settings_cls.model_fields.items():
        if not (field.description or "").strip():
            raise ValueError(
                f"setting {prefix}{name.upper()} has no description: "
                f"give it Field(..., description=...) in {settings_cls.__name__}"
            )
        what = str(field.description).strip()
        choices = _choices(field.annotation)
        if choices:
            listed = ", ".join(f"`{_plain(c)}`" for c in choices)
            what = f"{what.removesuffix('.')} (one of: {listed})."
        default = field.get_default(call_default_factory=True)
        default_text = (
            "required" if default is PydanticUndefined else _default(field.annotation, default)
        )
        rows.append(f"| `{prefix}{name.upper()}` | {_cell(default_text)} | {_cell(what)} |\n")
    return "".join(rows)


def replace_block(text: str, table: str) -> str:
    """``text`` with the lines between the two markers replaced by ``table``.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} … {END} block")
    body = table if table.endswith("\n") else table + "\n"
    return text[: start + len(BEGIN)] + "\n" + body + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m specwatch.settings_doc",
        description="Print the settings table, or check or rewrite it in a Markdown file.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", metavar="FILE", type=Path, help="exit 1 if out of date")
    action.add_argument("--write", metavar="FILE", type=Path, help="rewrite the table")
    args = parser.parse_args(argv)
    path: Path | None = args.check or args.write
    try:
        table = settings_table()
        if path is None:
            sys.stdout.write(table)
            return 0
        text = path.read_text(encoding="utf-8")
        updated = replace_block(text, table)
    except (ValueError, OSError) as error:
        print(f"{path or 'settings'}: {error}", file=sys.stderr)
        return 1
    if args.write:
        if updated != text:
            path.write_text(updated, encoding="utf-8")
        return 0
    if updated != text:
        print(
            f"{path}: the settings table is out of date: "
            f"run `python -m specwatch.settings_doc --write {path}`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
