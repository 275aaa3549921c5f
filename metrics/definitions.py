"""Parse lsst.verify metric and specification definitions, from YAML trees and job JSON.

Follows lsst.verify's loaders (``MetricSet``, ``SpecificationSet``): ``metrics/<package>.yaml``
maps metric names to bodies; ``specs/<package>/**.yaml`` holds YAML documents, partials
(``id:``) and specifications (``name:``), that inherit through ``base:`` from partials
(``#id``, ``path#id``, ``package:path#id``) and specifications (``metric.spec``), merged
with ``yamlutils.merge_documents``'s rules.  Specwatch extensions: ``direction:`` on a metric;
``level:``, ``requirements:`` and ``description:`` on a specification (inherited like the rest).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

import yaml

from specwatch.exceptions import DefinitionError

from .limits import DocumentLimits, YamlBudget, check_document, check_yaml
from .model import OPERATORS, Direction, Level, Metric, Reference, Specification, split_metric_name
from .units import normalize_unit

_PARTIAL_REF = re.compile(r"^(?:(?P<package>[^\s:#]+):)?(?P<path>[^\s#]+)?#(?P<name>\S+)$")
_REQUIREMENT_ID = re.compile(r"^[A-Z]{2,}(?:-[A-Z]+)*-\d{3,}$")
_NAME_TOKEN = re.compile(r"[_.\-]")
_LEVELS = {level.value: level for level in Level}
_LOWER, _HIGHER = frozenset({"<", "<="}), frozenset({">", ">="})
_PLACE_KEYS = ("id", "name", "base", "metric", "package")  # where a document sits, not content

JobItems = Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Definitions:
    """Metrics and specifications, each sorted by full name."""

    metrics: tuple[Metric, ...]
    specs: tuple[Specification, ...]
    explicit_directions: frozenset[str] = frozenset()  # metrics whose YAML says `direction:`


def parse_definition_files(
    files: Mapping[str, str], limits: DocumentLimits | None = None
) -> Definitions:
    """Metrics and specifications of a ``verify_metrics`` tree (relative path -> YAML text).

    Paths other than ``metrics/<package>.yaml`` and ``specs/<package>/**.yaml`` are ignored.
    Metric directions come out already inferred from the specifications (`infer_directions`).

    Raises:
        DefinitionError: invalid YAML, unit, operator or threshold, a missing or cyclic
            ``base``, a duplicate name; the message names the file and the metric or spec.
        InvalidInputError: YAML past ``limits`` (depth, expanded size, strings, integers).
    """
    metrics: dict[str, Metric] = {}
    explicit: set[str] = set()
    budget = YamlBudget(limits or DocumentLimits())
    resolver = _Resolver(budget)
    for path, text in sorted(files.items()):
        parts = PurePosixPath(path.replace("\\", "/")).parts
        parts = parts[1:] if parts[:1] == (".",) else parts
        if not parts or PurePosixPath(parts[-1]).suffix not in (".yaml", ".yml"):
            continue
        if parts[0] == "metrics" and len(parts) == 2:
            for metric, is_explicit in _parse_metric_file(path, text, budget):
                if metric.full_name in metrics:
                    raise DefinitionError(f"{path}: metric {metric.name!r} is defined twice")
                metrics[metric.full_name] = metric
                if is_explicit:
                    explicit.add(metric.full_name)
        elif parts[0] == "specs" and len(parts) >= 3:
            resolver.add_file(path, parts[1], str(PurePosixPath(*parts[2:]).with_suffix("")), text)
    specs = resolver.specifications()
    directed = infer_directions(metrics.values(), specs, explicit)
    return Definitions(
        tuple(sorted(directed, key=lambda m: m.full_name)), specs, frozenset(explicit)
    )


def parse_job_metrics(items: JobItems) -> tuple[Metric, ...]:
    """The metrics of an lsst.verify job JSON (a list of bodies or a mapping name -> body).

    Raises:
        DefinitionError: a name is not ``package.metric``, a unit is unreadable, a duplicate.
    """
    metrics: dict[str, Metric] = {}
    for name, body in _job_entries(items, "metric"):
        where = f"job metric {name!r}"
        try:
            package, short = split_metric_name(name)
        except DefinitionError as error:
            raise DefinitionError(f"{where}: {error}") from error
        if "/" in name:  # a metric's name is a segment of its URL, /api/v1/metrics/{name}
            raise DefinitionError(f"{where}: a metric name has no '/'")
        if name in metrics:
            raise DefinitionError(f"{where}: defined twice")
        metrics[name] = _build_metric(package, short, body, where)
    return tuple(metrics[name] for name in sorted(metrics))


def parse_job_specs(items: JobItems) -> tuple[Specification, ...]:
    """The threshold specifications of an lsst.verify job JSON (list or mapping name -> body).

    Other specification types are skipped: lsst.verify itself knows only thresholds.

    Raises:
        DefinitionError: a name is not ``package.metric.spec``, a bad threshold, a duplicate.
    """
    specs: dict[str, Specification] = {}
    for name, body in _job_entries(items, "spec"):
        if body.get("type", "threshold" if "threshold" in body else None) != "threshold":
            continue
        where = f"job spec {name!r}"
        parts = name.split(".")
        if len(parts) != 3 or not all(parts):
            raise DefinitionError(f"{where}: name is not of the form 'package.metric.spec'")
        if name in specs:
            raise DefinitionError(f"{where}: defined twice")
        specs[name] = _build_spec(parts[0], parts[1], parts[2], body, where)
    return tuple(specs[name] for name in sorted(specs))


def infer_directions(
    metrics: Iterable[Metric],
    specs: Iterable[Specification],
    explicit: Collection[str] = frozenset(),
) -> tuple[Metric, ...]:
    """The metrics, in order, with the direction their specifications imply.

    A metric whose specs all use ``<``/``<=`` improves LOWER, all ``>``/``>=`` HIGHER;
    otherwise, and for the full names in ``explicit``, a metric keeps its direction.
    """
    operators: dict[str, set[str]] = {}
    for spec in specs:
        operators.setdefault(spec.metric_full_name, set()).add(spec.operator)
    result = []
    for metric in metrics:
        used = operators.get(metric.full_name) or set(OPERATORS)  # no specs: no change
        direction = metric.direction
        if metric.full_name not in explicit and used <= _LOWER:
            direction = Direction.LOWER
        elif metric.full_name not in explicit and used <= _HIGHER:
            direction = Direction.HIGHER
        changed = direction != metric.direction
        result.append(replace(metric, direction=direction) if changed else metric)
    return tuple(result)


def _parse_metric_file(path: str, text: str, budget: YamlBudget) -> list[tuple[Metric, bool]]:
    document = _load_yaml(path, text, budget, many=False) or {}
    if not isinstance(document, dict):
        raise DefinitionError(f"{path}: expected a mapping of metric name to definition")
    metrics = []
    for name, body in document.items():
        where = f"{path}: metric {name!r}"
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise DefinitionError(
                f"{where}: a metric name is a non-empty string without dots or slashes"
            )
        if not isinstance(body, dict):
            raise DefinitionError(f"{where}: definition is not a mapping")
        package = PurePosixPath(path.replace("\\", "/")).stem
        metrics.append((_build_metric(package, name, body, where), "direction" in body))
    return metrics


def _build_metric(package: str, name: str, body: Mapping[str, Any], where: str) -> Metric:
    reference = body.get("reference") or {}
    if not isinstance(reference, Mapping):
        raise DefinitionError(f"{where}: reference is not a mapping")
    floor = body.get("regression_floor") or {}
    if not isinstance(floor, Mapping):
        raise DefinitionError(f"{where}: regression_floor is not a mapping (abs, pct)")
    direction = str(body.get("direction", Direction.LOWER.value)).lower()
    if direction not in tuple(Direction):
        raise DefinitionError(f"{where}: direction {direction!r} is not lower, higher or none")
    return Metric(
        package=package,
        name=name,
        unit=_unit(body.get("unit"), where),
        description=_text(body.get("description")),
        tags=_strings(body.get("tags"), where),
        reference=Reference(
            doc=_text(reference.get("doc")) or None,
            url=_text(reference.get("url")) or None,
            page=reference.get("page") or None,
        ),
        direction=Direction(direction),
        floor_abs=_floor(floor, "abs", where),
        floor_pct=_floor(floor, "pct", where),
    )


def _floor(floor: Mapping[str, Any], key: str, where: str) -> float:
    """``regression_floor: {abs: …, pct: …}``: smaller changes are not regressions."""
    value = floor.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise DefinitionError(f"{where}: regression_floor.{key} {value!r} is not a number ≥ 0")
    return float(value)


@dataclass(slots=True)
class _Doc:
    """One YAML document of a spec file, where it sits and what it inherits from."""

    path: str
    package: str
    yaml_id: str  # path under specs/<package>/ without extension, as partial references say
    label: str  # "spec 'hsc_design_g'" or "partial 'hsc-g'"
    body: dict[str, Any]  # the content, without _PLACE_KEYS
    bases: list[str]
    own_metric: str | None = None  # "package.metric" said by the document itself
    refs: list[str] | None = None  # bases as "package:path#id" or "package.metric.spec"
    metric: str | None = None  # own_metric, else inherited

    def error(self, message: str) -> DefinitionError:
        return DefinitionError(f"{self.path}: {self.label}: {message}")

    def qualify(self, metric: Any) -> str | None:
        if metric is None:
            return None
        if not isinstance(metric, str) or not metric or metric.count(".") > 1:
            raise self.error(f"metric {metric!r} is not 'metric' or 'package.metric'")
        return metric if "." in metric else f"{self.package}.{metric}"


class _Resolver:
    """Collects the spec documents of a tree, then resolves their inheritance."""

    def __init__(self, budget: YamlBudget) -> None:
        self._budget = budget
        self._partials: dict[str, _Doc] = {}
        self._specs: list[tuple[_Doc, str]] = []  # with the short spec name
        self._by_name: dict[str, _Doc] = {}
        self._resolved: dict[str, dict[str, Any]] = {}

    def add_file(self, path: str, package: str, yaml_id: str, text: str) -> None:
        for document in _load_yaml(path, text, self._budget, many=True):
            if document is None:
                continue
            if not isinstance(document, dict) or not ("id" in document or "name" in document):
                raise DefinitionError(f"{path}: a document has neither 'id' nor 'name'")
            bases = document.get("base", [])
            bases = [bases] if isinstance(bases, str) else bases
            body = {k: v for k, v in document.items() if k not in _PLACE_KEYS}
            kind, name = (
                ("partial", document["id"]) if "id" in document else ("spec", document["name"])
            )
            doc = _Doc(path, package, yaml_id, f"{kind} {name!r}", body, bases)
            if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
                raise doc.error(f"base {bases!r} is not a string or a list of strings")
            doc.own_metric = doc.qualify(document.get("metric"))
            if kind == "partial":
                key = _partial_key(str(name), package, yaml_id)
                if key is None or key in self._partials:
                    raise doc.error("partial id is invalid or defined twice")
                self._partials[key] = doc
                continue
            parts = name.split(".") if isinstance(name, str) else []
            if not parts or not all(parts) or len(parts) > 3:
                raise doc.error("name is not 'spec', 'metric.spec' or 'package.metric.spec'")
            if len(parts) > 1:  # the name says the metric, as in lsst.verify's Name
                said = doc.qualify(".".join(parts[:-1]))
                if doc.own_metric not in (None, said):
                    raise doc.error(f"name says metric {said!r}, 'metric:' {doc.own_metric!r}")
                doc.own_metric = said
            self._specs.append((doc, parts[-1]))

    def specifications(self) -> tuple[Specification, ...]:
        for doc in (*self._partials.values(), *(doc for doc, _ in self._specs)):
            self._metric_of(doc, ())
        for doc, name in self._specs:
            if doc.metric is None:
                raise doc.error("no metric: give 'metric:', 'metric.spec' or a base with one")
            if split_metric_name(doc.metric)[0] != doc.package:
                raise doc.error(f"metric {doc.metric!r} is not in package {doc.package!r}")
            full_name = f"{doc.metric}.{name}"
            if full_name in self._by_name:
                other = self._by_name[full_name].path
                raise doc.error(f"specification {full_name!r} is also defined in {other}")
            self._by_name[full_name] = doc
        for key, doc in self._partials.items():
            self._resolve(doc, key, ())
        specs = []
        for full_name, doc in sorted(self._by_name.items()):
            package, metric, name = full_name.split(".")
            resolved = self._resolve(doc, full_name, ())
            specs.append(_build_spec(package, metric, name, resolved, f"{doc.path}: {doc.label}"))
        return tuple(specs)

    def _metric_of(self, doc: _Doc, stack: tuple[str, ...]) -> str | None:
        """The document's metric: its own, else the last one its bases give (lsst.verify)."""
        if doc.refs is not None:
            return doc.metric
        inherited: str | None = None
        refs: list[str] = []
        for base in doc.bases:
            key = self._key(base, doc, doc.own_metric or inherited)
            if "#" not in key:  # a spec reference always says its metric
                inherited = key.rpartition(".")[0]
            elif (partial := self._partials.get(key)) is None:
                raise doc.error(f"base {base!r} not found")
            elif key in stack:
                raise doc.error("inheritance cycle: " + " -> ".join((*stack, key)))
            else:
                inherited = self._metric_of(partial, (*stack, key)) or inherited
            refs.append(key)
        doc.refs, doc.metric = refs, doc.own_metric or inherited
        return doc.metric

    @staticmethod
    def _key(base: str, doc: _Doc, metric: str | None) -> str:
        """The full name of a base: ``package:path#id`` or ``package.metric.spec``."""
        parts = base.split(".")
        if "#" in base:
            key = _partial_key(base, doc.package, doc.yaml_id)
        elif not all(parts) or len(parts) > 3:
            key = None
        elif len(parts) == 1:  # a Specwatch extension: a spec of the same metric
            if metric is None:
                raise doc.error(f"base {base!r} names no metric, and the spec has none")
            key = f"{metric}.{base}"
        else:
            key = base if len(parts) == 3 else f"{doc.package}.{base}"
        if key is None:
            raise doc.error(f"base {base!r} is not a valid reference")
        return key

    def _resolve(self, doc: _Doc, key: str, stack: tuple[str, ...]) -> dict[str, Any]:
        """The document merged onto its bases, in order (memoized)."""
        if key in self._resolved:
            return self._resolved[key]
        if key in stack:
            raise doc.error("inheritance cycle: " + " -> ".join((*stack[stack.index(key) :], key)))
        built: dict[str, Any] = {}
        for base, ref in zip(doc.bases, doc.refs or [], strict=True):
            base_doc = self._partials.get(ref) if "#" in ref else self._by_name.get(ref)
            if base_doc is None:
                raise doc.error(f"base {base!r} not found")
            built = _merge(built, self._resolve(base_doc, ref, (*stack, key)))
        self._resolved[key] = _merge(built, doc.body)
        return self._resolved[key]


def _build_spec(
    package: str, metric: str, name: str, doc: Mapping[str, Any], where: str
) -> Specification:
    threshold = doc.get("threshold")
    if not isinstance(threshold, Mapping):
        raise DefinitionError(f"{where}: no threshold")
    value = _number(threshold.get("value"), where)
    operator = threshold.get("operator")
    if operator not in OPERATORS:
        raise DefinitionError(f"{where}: operator {operator!r} is not one of {OPERATORS}")
    if threshold.get("unit") is None:
        raise DefinitionError(f"{where}: threshold unit is missing ('' is dimensionless)")
    query = doc.get("metadata_query") or {}
    if not isinstance(query, Mapping):
        raise DefinitionError(f"{where}: metadata_query is not a mapping")
    tags = _strings(doc.get("tags"), where)
    if "level" not in doc:
        level = _infer_level(tags, name, metric, where)
    elif doc["level"] is None or str(doc["level"]).lower() in _LEVELS:
        level = None if doc["level"] is None else _LEVELS[str(doc["level"]).lower()]
    else:
        raise DefinitionError(f"{where}: level {doc['level']!r} is not minimum, design or stretch")
    return Specification(
        package=package,
        metric=metric,
        name=name,
        threshold=value,
        unit=_unit(threshold["unit"], where),
        operator=str(operator),
        metadata_query=dict(query),
        tags=tags,
        level=level,
        requirements=(
            _strings(doc["requirements"], where)
            if "requirements" in doc
            else tuple(tag for tag in tags if _REQUIREMENT_ID.match(tag))
        ),
        description=_text(doc.get("description")),
    )


def _number(value: Any, where: str) -> float:
    """A finite threshold; a string too, as YAML 1.1 reads ``1e-5`` (no dot) as a string."""
    if value is None:
        raise DefinitionError(f"{where}: threshold value is missing")
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except (ValueError, OverflowError):  # 10**400 overflows a float
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise DefinitionError(f"{where}: threshold value {value!r} is not a finite number")
    return number


def _infer_level(tags: Sequence[str], name: str, metric: str, where: str) -> Level | None:
    """The level a tag says, else the one a token of the spec's, then the metric's, name says."""
    tagged = {_LEVELS[tag.lower()] for tag in tags if tag.lower() in _LEVELS}
    if len(tagged) > 1:
        raise DefinitionError(f"{where}: tags say several levels: {sorted(map(str, tagged))}")
    if tagged:
        return tagged.pop()
    for text in (name, metric):
        found = {_LEVELS[t.lower()] for t in _NAME_TOKEN.split(text) if t.lower() in _LEVELS}
        if len(found) == 1:
            return found.pop()
    return None


def _merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """lsst.verify's ``merge_documents``: mappings merge, lists append, the rest replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in new.items():
        old = merged.get(key)
        if key in merged and isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _merge(old, value)
        elif key in merged and isinstance(old, list) and isinstance(value, list):
            merged[key] = old + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _partial_key(reference: str, package: str, yaml_id: str) -> str | None:
    match = _PARTIAL_REF.match(reference if "#" in reference else f"#{reference}")
    if match is None:
        return None
    return f"{match['package'] or package}:{match['path'] or yaml_id}#{match['name']}"


def _job_entries(items: JobItems, kind: str) -> list[tuple[str, Mapping[str, Any]]]:
    pairs = items.items() if isinstance(items, Mapping) else ((None, item) for item in items)
    entries = []
    for key, body in pairs:
        name = body.get("name", key) if isinstance(body, Mapping) else key
        if not isinstance(name, str) or not isinstance(body, Mapping):
            raise DefinitionError(f"job {kind} {name!r}: not a mapping with a 'name'")
        entries.append((name, body))
    return entries


def _load_yaml(path: str, text: str, budget: YamlBudget, *, many: bool) -> Any:
    """The documents of a YAML file, within the request's limits."""
    check_yaml(text, budget, path)
    try:
        loaded = list(yaml.safe_load_all(text)) if many else yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DefinitionError(f"{path}: not valid YAML: {error}") from error
    check_document(loaded, budget.limits, ["body", "files", path])
    return loaded


def _unit(value: Any, where: str) -> str:
    try:
        return normalize_unit("" if value is None else str(value))
    except DefinitionError as error:
        raise DefinitionError(f"{where}: {error}") from error


def _strings(value: Any, where: str) -> tuple[str, ...]:
    """A string, list or YAML set (sorted: its order is arbitrary), without repeats."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, set | frozenset):
        value = sorted(value, key=str)
    elif not isinstance(value, list | tuple):
        raise DefinitionError(f"{where}: {value!r} is not a string or a list of strings")
    return tuple(dict.fromkeys(str(item) for item in value))


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()
