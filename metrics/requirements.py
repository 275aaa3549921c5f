"""Requirements and their verification status (the VCD row of LDM-503).

A requirement (``DMS-REQ-0275``) is verified by specifications: those its verification matrix
lists (names or ``fnmatch`` patterns such as ``validate_drp.PA1.*``) and those whose YAML names
it in ``requirements:``.  Its status is derived, never typed in: the fraction of its
*design*-level specifications that pass on a build, with the counts of every level.
"""

from __future__ import annotations

import csv
import enum
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import yaml

from specwatch.exceptions import DefinitionError

from .limits import (
    REQUIREMENT_ID_CHARS,
    DocumentLimits,
    YamlBudget,
    check_document,
    check_text,
    check_yaml,
)
from .model import Level, Specification
from .verification import Status, Verdict

# How bad a verdict is, and where each rank is counted (pass, fail, not tested).
_RANK = {Status.PASS: 0, Status.NOT_TESTED: 1, Status.FAIL: 2}
_SLOT = {0: 0, 2: 1, 1: 2}
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$")


class Method(enum.StrEnum):
    """Verification methods of LDM-503."""

    TEST = "Test"
    DEMONSTRATION = "Demonstration"
    INSPECTION = "Inspection"
    ANALYSIS = "Analysis"


@dataclass(frozen=True, slots=True)
class Requirement:
    id: str
    title: str = ""
    method: Method = Method.TEST
    specs: tuple[str, ...] = ()  # spec full names or fnmatch patterns


@dataclass(frozen=True, slots=True)
class LevelCounts:
    passed: int = 0
    failed: int = 0
    not_tested: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"pass": self.passed, "fail": self.failed, "not_tested": self.not_tested}


@dataclass(frozen=True, slots=True)
class RequirementStatus:
    """``fraction``: design-level specs passing / design-level specs (None without any)."""

    requirement: Requirement
    specs: tuple[str, ...]
    fraction: float | None
    levels: Mapping[str, LevelCounts]


def _method(value: Any, where: str) -> Method:
    text = str(value or "Test").strip().capitalize()
    try:
        return Method(text)
    except ValueError:
        raise DefinitionError(
            f"{where}: method {value!r} is not one of {', '.join(m.value for m in Method)}"
        ) from None


def _requirement(item: Mapping[str, Any], where: str) -> Requirement:
    identifier = str(item.get("id") or "").strip()
    if len(identifier) > REQUIREMENT_ID_CHARS or not _ID.match(identifier):
        raise DefinitionError(
            f"{where}: id {identifier[:100]!r} is not a requirement ID "
            f"(at most {REQUIREMENT_ID_CHARS} characters)"
        )
    specs = item.get("specs") or ()
    if isinstance(specs, str):
        specs = [s for s in re.split(r"[\s,;]+", specs) if s]
    if not isinstance(specs, list | tuple) or not all(isinstance(s, str) for s in specs):
        raise DefinitionError(f"{where} ({identifier}): specs must be a list of names or patterns")
    return Requirement(
        id=identifier,
        title=str(item.get("title") or "").strip(),
        method=_method(item.get("method"), f"{where} ({identifier})"),
        specs=tuple(specs),
    )


def parse_requirements(
    text: str, *, source: str = "requirements", limits: DocumentLimits | None = None
) -> tuple[Requirement, ...]:
    """A verification matrix as YAML (a list, or ``requirements:`` list) or CSV.

    CSV columns: ``id, title, method, specs`` (specs separated by spaces, commas or ``;``).

    Raises:
        DefinitionError: malformed file, unknown method, bad or repeated ID.
        InvalidInputError: past ``limits`` (depth, size, NUL characters).
    """
    limits = limits or DocumentLimits()
    check_text(text, len(text), ["body", "text"], source)
    stripped = text.lstrip()
    items: list[Mapping[str, Any]]
    if source.lower().endswith(".csv") or (stripped.lower().startswith("id,")):
        reader = csv.DictReader(io.StringIO(text))
        try:
            if not reader.fieldnames or "id" not in [f.strip().lower() for f in reader.fieldnames]:
                raise DefinitionError(
                    f"{source}: a CSV matrix needs the columns id,title,method,specs"
                )
            items = [{(k or "").strip().lower(): v for k, v in row.items()} for row in reader]
        except csv.Error as error:  # e.g. a field over the csv module's size limit
            raise DefinitionError(f"{source}: not valid CSV: {error}") from error
    else:
        check_yaml(text, YamlBudget(limits), source)
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise DefinitionError(f"{source}: not valid YAML: {error}") from error
        check_document(document, limits, ["body", "text"])
        if isinstance(document, Mapping):
            document = document.get("requirements")
        if not isinstance(document, list) or not all(isinstance(i, Mapping) for i in document):
            raise DefinitionError(f"{source}: expected a list of requirements (id, title, …)")
        items = document
    requirements = [_requirement(item, f"{source}: row {n + 1}") for n, item in enumerate(items)]
    seen: set[str] = set()
    for requirement in requirements:
        if requirement.id in seen:
            raise DefinitionError(f"{source}: requirement {requirement.id} is listed twice")
        seen.add(requirement.id)
    return tuple(requirements)


def specs_of(requirement: Requirement, specs: Iterable[Specification]) -> tuple[str, ...]:
    """Full names of the specs that verify ``requirement``, sorted."""
    names = set()
    for spec in specs:
        if requirement.id in spec.requirements or any(
            fnmatchcase(spec.full_name, pattern) for pattern in requirement.specs
        ):
            names.add(spec.full_name)
    return tuple(sorted(names))


def requirement_status(
    requirement: Requirement, spec_names: Sequence[str], verdicts: Iterable[Verdict]
) -> RequirementStatus:
    """Status of a requirement from the verdicts of one build (specs that apply to it).

    Each spec counts once: a build of several jobs may test it several times (one job per
    filter, say), and it passes only where every one passes; a failure anywhere fails it,
    and otherwise a test not done (NaN, missing) leaves it not tested.
    """
    wanted = set(spec_names)
    worst: dict[str, tuple[int, Level]] = {}
    for verdict in verdicts:
        if verdict.spec not in wanted or verdict.level is None:
            continue
        rank = _RANK[verdict.status]
        if verdict.spec not in worst or rank > worst[verdict.spec][0]:
            worst[verdict.spec] = (rank, verdict.level)
    counts: dict[str, list[int]] = {level.value: [0, 0, 0] for level in Level}
    for rank, level in worst.values():
        counts[level.value][_SLOT[rank]] += 1
    levels = {level: LevelCounts(*c) for level, c in counts.items()}
    design = levels[Level.DESIGN.value]
    total = design.passed + design.failed + design.not_tested
    return RequirementStatus(
        requirement=requirement,
        specs=tuple(spec_names),
        fraction=design.passed / total if total else None,
        levels=levels,
    )
