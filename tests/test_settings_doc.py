"""The README's settings table is the one generated from ``Settings``: every variable, once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field, SecretStr

from specwatch.config import Settings
from specwatch.settings_doc import BEGIN, END, main, replace_block, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n") + "\n"


def test_readme_block_is_the_generated_table() -> None:
    assert _block(README.read_text(encoding="utf-8")) == settings_table(), (
        "README.md's settings table is out of date: "
        "run `python -m specwatch.settings_doc --write README.md`"
    )


def test_every_setting_has_one_row_in_class_order() -> None:
    rows = settings_table().splitlines()[2:]
    variables = [row.split(" | ")[0].removeprefix("| ").strip("`") for row in rows]
    assert variables == [f"SPECWATCH_{name.upper()}" for name in Settings.model_fields]
    for row in rows:
        assert row.startswith("| `SPECWATCH_") and row.endswith(" |")
        assert row.replace("\\|", "").count("|") == 4, row  # three cells, pipes escaped


def test_defaults_and_choices_are_rendered_readably() -> None:
    rows = {row.split(" | ")[0].strip("|` "): row for row in settings_table().splitlines()[2:]}
    assert "| `sqlite+aiosqlite:///./specwatch.sqlite3` |" in rows["SPECWATCH_DATABASE_URL"]
    assert "| unset |" in rows["SPECWATCH_INFLUXDB_TOKEN"]  # a secret
    assert "| `10` |" in rows["SPECWATCH_INFLUXDB_TIMEOUT_S"]
    assert "| `false` |" in rows["SPECWATCH_READ_TOKEN_REQUIRED"]
    assert "| `1_000_000` |" in rows["SPECWATCH_MAX_STRING_CHARS"]
    assert "(one of: `DEBUG`, `INFO`, `WARNING`, `ERROR`)" in rows["SPECWATCH_LOG_LEVEL"]


def test_every_default_shown_reads_back_as_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """A default copied from the table into its variable changes nothing."""
    shown = {}
    for row in settings_table().splitlines()[2:]:
        variable, default = (cell.strip() for cell in row.strip("|").split(" | ")[:2])
        if default.startswith("`"):
            shown[variable.strip("`")] = default.strip("`")
            monkeypatch.setenv(variable.strip("`"), default.strip("`"))
    assert "SPECWATCH_MAX_JOB_BYTES" in shown
    settings = Settings()
    for name, field in Settings.model_fields.items():
        if f"SPECWATCH_{name.upper()}" in shown:
            assert getattr(settings, name) == field.default, name


def test_a_field_added_to_the_class_shows_up() -> None:
    class More(Settings):
        shiny_feature: Literal["a", "b|c"] | None = Field("a", description="A | new\nsetting.")
        api_key: SecretStr = Field(SecretStr("s3cret"), description="A key.")

    rows = settings_table(More).splitlines()
    assert rows[-2] == (
        "| `SPECWATCH_SHINY_FEATURE` | `a` | A \\| new setting (one of: `a`, `b\\|c`). |"
    )
    assert rows[-1] == "| `SPECWATCH_API_KEY` | set (secret) | A key. |"
    assert "s3cret" not in settings_table(More)
    assert rows[:-2] == settings_table().splitlines()


def test_a_setting_without_description_is_refused() -> None:
    class Undocumented(Settings):
        new_knob: int = 3

    with pytest.raises(ValueError, match="SPECWATCH_NEW_KNOB has no description"):
        settings_table(Undocumented)


def test_replace_block_keeps_the_rest_of_the_text() -> None:
    text = f"# Title\n\nintro\n{BEGIN}\n| old |\n{END}\n\nafter\n"
    assert (
        replace_block(text, "| new |\n") == f"# Title\n\nintro\n{BEGIN}\n| new |\n{END}\n\nafter\n"
    )
    with pytest.raises(ValueError, match="settings:begin"):
        replace_block("no markers", "| new |\n")


def test_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\n| stale |\n{END}\nend\n", encoding="utf-8")
    assert main(["--check", str(readme)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "out of date" in error
    assert main(["--write", str(readme)]) == 0
    assert main(["--check", str(readme)]) == 0
    assert _block(readme.read_text(encoding="utf-8")) == settings_table()
    assert readme.read_text(encoding="utf-8").endswith(f"{END}\nend\n")


def test_the_module_runs_as_a_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "specwatch.settings_doc", "--check", str(README)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
