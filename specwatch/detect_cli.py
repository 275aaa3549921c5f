"""``specwatch detect``: the change points of one metric history.

``specwatch detect --stdin`` (or ``python -m specwatch.detect_cli --stdin``) reads
``{"values": [12.1, 12.3, null, …]}`` from stdin (``null``, NaN or an infinity: a build with
no value) and prints ``{"change_points": [i, …]}``: the 0-based index, missing builds counted,
of the first build after each change (``specwatch.metrics.changepoint``). Bad input prints one
line on stderr and exits 2.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click

from specwatch.metrics.changepoint import change_points


class BadInputError(ValueError):
    """The document on stdin is not ``{"values": [number | null, …]}``."""


def parse_values(text: str) -> list[float | None]:
    """The ``values`` of a detect request; non-finite numbers become ``None``.

    Raises:
        BadInputError: not JSON, not an object with a ``values`` list, or an item that is
            neither a number nor null.
    """
    try:
        document: Any = json.loads(text)
    except ValueError as error:
        raise BadInputError(f"stdin is not JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("values"), list):
        raise BadInputError('stdin must be a JSON object {"values": [number | null, ...]}')
    values: list[float | None] = []
    for i, item in enumerate(document["values"]):
        if item is None:
            values.append(None)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            value = float(item)
            values.append(value if math.isfinite(value) else None)
        else:
            raise BadInputError(f"values[{i}] is {json.dumps(item)[:40]}, not a number or null")
    return values


stdin_option = click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help='Read {"values": [...]} from stdin, print {"change_points": [...]}.',
)


@click.command("detect")
@stdin_option
def detect(from_stdin: bool) -> None:
    """Find persistent level shifts in one metric history."""
    if not from_stdin:
        click.echo("specwatch: error: give --stdin", err=True)
        sys.exit(2)
    try:
        values = parse_values(sys.stdin.read())
    except BadInputError as error:
        click.echo(f"specwatch: error: {error}", err=True)
        sys.exit(2)
    click.echo(json.dumps({"change_points": change_points(values)}))


if __name__ == "__main__":
    detect()
