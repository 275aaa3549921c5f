"""The lsst.verify definitions parser, on the real verify_metrics tree and on small trees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from specwatch.exceptions import DefinitionError
from specwatch.metrics.definitions import (
    Definitions,
    infer_directions,
    parse_definition_files,
    parse_job_metrics,
    parse_job_specs,
)
from specwatch.metrics.model import Direction, Level, Metric, Reference, Specification

LSST = Path(__file__).parents[2] / "shared/datasets/lsst"
HSC_QUERY = {
    "instrument": "HSC",
    "dataset_repo_url": "https://github.com/lsst/validation_data_hsc.git",
    "dataset_name": "validation_data_hsc",
    "filter_name": "HSC-G",
}


def read_tree(root: Path) -> dict[str, str]:
    if not root.is_dir():
        pytest.skip(f"{root} is not there")
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def verify_metrics() -> dict[str, str]:
    return read_tree(LSST / "verify_metrics")


@pytest.fixture(scope="module")
def real(verify_metrics: dict[str, str]) -> Definitions:
    return parse_definition_files(verify_metrics)


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    path = LSST / "squash/verify_job.json"
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    with path.open() as stream:
        data: dict[str, Any] = json.load(stream)  # accepts its bare NaN tokens
    return data


def spec_named(definitions: Definitions, full_name: str) -> Specification:
    return next(spec for spec in definitions.specs if spec.full_name == full_name)


def metric_named(metrics: tuple[Metric, ...], full_name: str) -> Metric:
    return next(metric for metric in metrics if metric.full_name == full_name)


def tree(**files: str) -> Definitions:
    """Parse files given as keyword arguments, ``__`` standing for ``/`` in the path."""
    return parse_definition_files({k.replace("__", "/") + ".yaml": v for k, v in files.items()})


METRICS = """
PA1: {unit: mmag, description: rms, tags: photometry}
AM1: {unit: marcsec, direction: none}
COMP: {unit: '%'}
"""


# --- the real verify_metrics tree -----------------------------------------------------------


def test_real_tree_has_every_metric_and_every_named_spec_document(
    verify_metrics: dict[str, str], real: Definitions
) -> None:
    documents = [
        doc
        for path, text in verify_metrics.items()
        if path.startswith("specs/") and path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    assert sum("name" in doc for doc in documents) == 1705
    assert sum("id" in doc for doc in documents) == 126
    assert len(real.specs) == 1705
    assert len(real.metrics) == 1032
    assert [s.full_name for s in real.specs] == sorted(s.full_name for s in real.specs)
    assert [m.full_name for m in real.metrics] == sorted(m.full_name for m in real.metrics)
    assert {s.package for s in real.specs} == {"jointcal", "pipe_analysis", "validate_drp"}


def test_real_spec_resolves_through_spec_and_partial_chain(real: Definitions) -> None:
    # hsc_design_g <- PA1.design_gri <- #PA1-base, and hsc_gri/base#hsc-g <- #hsc
    assert spec_named(real, "validate_drp.PA1.hsc_design_g") == Specification(
        package="validate_drp",
        metric="PA1",
        name="hsc_design_g",
        threshold=5.0,
        unit="mmag",
        operator="<=",
        metadata_query=HSC_QUERY,
        tags=("PA1", "chromatic", "design"),
        level=Level.DESIGN,
    )


def test_real_metric_comes_from_a_fully_qualified_partial_metric(real: Definitions) -> None:
    # hsc_ugrizy/compound_release.yaml: partial metric 'validate_drp.PF1_design_gri'
    names = {s.full_name for s in real.specs}
    assert "validate_drp.PF1_design_gri.FY17" in names
    spec = spec_named(real, "validate_drp.AD1_design.hsc_FY17")
    assert spec.metadata_query["instrument"] == "HSC"
    assert spec.level is Level.DESIGN  # from the metric name token


def test_real_thresholds_read_like_lsst_verify(real: Definitions) -> None:
    # YAML 1.1 reads `value: 1e-5` as a string; astropy's Quantity accepts it.
    rho = spec_named(
        real, "pipe_analysis.rhoStatistics3_HSM_smallScale_allStars.HSM_smallScale_allStars"
    )
    assert (rho.threshold, rho.unit, rho.operator) == (1e-5, "", "<=")
    assert rho.metadata_query == {"shapeAlgorithm": "HSM", "catalog": "allStars"}
    # The last partial says `tags: "allStars"`, a scalar: it replaces the inherited list.
    assert rho.tags == ("allStars",)
    ndof = spec_named(real, "jointcal.astrometry_final_ndof.hsc_2_visits")
    assert (ndof.threshold, ndof.operator, ndof.level) == (1858.0, "==", None)
    sky = spec_named(real, "pipe_analysis.skyObjectMean_ap09Flux.lower")
    assert (sky.threshold, sky.unit, sky.operator, sky.level) == (-25.0, "nanojansky", ">=", None)
    assert spec_named(real, "pipe_analysis.skyObjectStd_ap09Flux.minimum").level is Level.MINIMUM


def test_real_metrics(real: Definitions) -> None:
    pa1 = metric_named(real.metrics, "validate_drp.PA1")
    assert pa1.unit == "mmag"
    assert pa1.tags == ("photometry",)
    assert pa1.reference == Reference(doc="LPM-17", url="http://ls.st/lpm-17", page=21)
    assert pa1.description.startswith("The maximum rms of the unresolved source")
    assert not pa1.description.endswith("\n")
    # A YAML !!set of tags, through an anchor: sorted, as a set has no order.
    new = metric_named(real.metrics, "ap_association.numNewDiaObjects")
    assert (new.unit, new.tags) == ("ct", ("CCD", "ap_verify", "assoc", "diffim"))
    # skyObjectMean has a >= and a <= spec: its direction stays the default.
    assert metric_named(real.metrics, "pipe_analysis.skyObjectMean_ap09Flux").direction == "lower"
    assert real.explicit_directions == frozenset()


def test_real_tree_output_does_not_depend_on_file_order(verify_metrics: dict[str, str]) -> None:
    reordered = dict(reversed(list(verify_metrics.items())))
    assert parse_definition_files(reordered) == parse_definition_files(verify_metrics)


def test_lsst_verify_fixtures() -> None:
    files = read_tree(LSST / "verify")
    definitions = parse_definition_files(files)  # specifications.yaml (invalid) is not in specs/
    assert len(definitions.metrics) == 4
    assert metric_named(definitions.metrics, "testing.AM1").tags == ("astrometric", "random-tag")
    assert len(definitions.specs) == 27
    spec = spec_named(definitions, "validate_drp.PF1_stretch_gri.cfht_gri")
    assert (spec.threshold, spec.unit, spec.level) == (5.0, "", Level.STRETCH)
    with pytest.raises(DefinitionError, match=r"specs/validate_drp/old\.yaml: not valid YAML"):
        parse_definition_files({"specs/validate_drp/old.yaml": files["specifications.yaml"]})


# --- inheritance ----------------------------------------------------------------------------


def test_inheritance_chain_merges_like_lsst_verify() -> None:
    definitions = tree(
        metrics__pkg=METRICS,
        specs__pkg__common="""
id: unit
threshold: {unit: mmag, operator: '<='}
tags: [PA1]
metadata_query: {instrument: HSC}
""",
        specs__pkg__PA1="""
id: base
base: common#unit
metric: PA1
tags: [chromatic]
---
name: design
base: '#base'
threshold: {value: 5}
tags: [design, PA1]
---
name: hsc_design_g
base: [PA1.design, 'pkg:common#unit']
threshold: {value: 4.5}
metadata_query: {filter_name: HSC-G}
""",
    )
    design = spec_named(definitions, "pkg.PA1.design")
    assert (design.threshold, design.unit, design.operator) == (5.0, "mmag", "<=")
    assert design.tags == ("PA1", "chromatic", "design")  # lists append, repeats dropped
    hsc = spec_named(definitions, "pkg.PA1.hsc_design_g")  # metric from the spec base
    assert hsc.threshold == 4.5
    assert hsc.metadata_query == {"instrument": "HSC", "filter_name": "HSC-G"}
    assert hsc.level is Level.DESIGN
    assert len(definitions.specs) == 2


def test_later_bases_and_the_document_win_scalars() -> None:
    definitions = tree(
        specs__pkg__x="""
id: a
threshold: {unit: mmag, operator: '<', value: 1}
description: from a
---
id: b
threshold: {operator: '>='}
description: from b
---
name: M.s
base: ['#a', '#b']
level: stretch
requirements: DMS-REQ-0001
""",
    )
    spec = spec_named(definitions, "pkg.M.s")
    assert (spec.threshold, spec.unit, spec.operator) == (1.0, "mmag", ">=")
    assert (spec.description, spec.level, spec.requirements) == (
        "from b",
        Level.STRETCH,
        ("DMS-REQ-0001",),
    )


def test_bare_spec_base_refers_to_the_same_metric() -> None:
    definitions = tree(
        specs__pkg__x="""
metric: M
name: srd
threshold: {value: 2, unit: s, operator: '<='}
---
metric: M
name: hsc
base: srd
metadata_query: {instrument: HSC}
""",
    )
    assert spec_named(definitions, "pkg.M.hsc").threshold == 2.0


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {
                "specs/p/a.yaml": "name: M.a\nbase: M.b\n---\nname: M.b\nbase: M.c\n---\n"
                "name: M.c\nbase: M.a\nthreshold: {value: 1, unit: s, operator: <}"
            },
            r"specs/p/a\.yaml: spec 'M\.a': inheritance cycle: "
            r"p\.M\.a -> p\.M\.b -> p\.M\.c -> p\.M\.a",
        ),
        (
            {
                "specs/p/a.yaml": "id: x\nbase: '#y'\n---\nid: y\nbase: b#z",
                "specs/p/b.yaml": "id: z\nbase: a#x",
            },
            r"inheritance cycle: p:a#y -> p:b#z -> p:a#x -> p:a#y",
        ),
        (
            {"specs/p/a.yaml": "name: M.a\nbase: M.a\nthreshold: {value: 1, unit: s, operator: <}"},
            r"specs/p/a\.yaml: spec 'M\.a': inheritance cycle: p\.M\.a -> p\.M\.a",
        ),
    ],
)
def test_cycles_are_errors(files: dict[str, str], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        parse_definition_files(files)


def test_missing_bases_name_the_file_and_spec(verify_metrics: dict[str, str]) -> None:
    files = dict(verify_metrics)
    path = "specs/validate_drp/hsc_gri/PA1.yaml"
    files[path] = files[path].replace("'PA1.design_gri'", "'PA1.nosuch'", 1)
    with pytest.raises(DefinitionError) as caught:
        parse_definition_files(files)
    assert str(caught.value) == f"{path}: spec 'hsc_design_g': base 'PA1.nosuch' not found"
    with pytest.raises(DefinitionError, match=r"^specs/p/x\.yaml: spec 'M\.a': base '#nope' not"):
        tree(specs__p__x="name: M.a\nbase: '#nope'")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("threshold: {value: 1, unit: furlongs, operator: <}", r"unit 'furlongs' is not a unit"),
        ("threshold: {value: 1, unit: s, operator: '=<'}", r"operator '=<' is not one of"),
        ("threshold: {unit: s, operator: <}", r"threshold value is missing"),
        ("threshold: {value: .nan, unit: s, operator: <}", r"value nan is not a finite number"),
        ("threshold: {value: ten, unit: s, operator: <}", r"value 'ten' is not a finite number"),
        ("threshold: {value: 1, operator: <}", r"threshold unit is missing"),
        ("tags: []", r"no threshold"),
        ("level: best\nthreshold: {value: 1, unit: s, operator: <}", r"level 'best' is not"),
        (
            "tags: [design, Stretch]\nthreshold: {value: 1, unit: s, operator: <}",
            r"tags say several levels: \['design', 'stretch'\]",
        ),
        ("metric: N\nthreshold: {value: 1, unit: s, operator: <}", r"name says metric 'p\.M'"),
        ("metadata_query: [a]\nthreshold: {value: 1, unit: s, operator: <}", r"not a mapping"),
    ],
)
def test_bad_specs_name_file_and_spec(spec: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=r"^specs/p/x\.yaml: spec 'M\.bad': .*" + message):
        tree(specs__p__x="name: M.bad\n" + spec)


def test_other_spec_errors() -> None:
    with pytest.raises(DefinitionError, match=r"spec 'lonely': no metric"):
        tree(specs__p__x="name: lonely\nthreshold: {value: 1, unit: s, operator: <}")
    with pytest.raises(DefinitionError, match=r"metric 'q\.M' is not in package 'p'"):
        tree(specs__p__x="name: q.M.s\nthreshold: {value: 1, unit: s, operator: <}")
    with pytest.raises(DefinitionError, match=r"neither 'id' nor 'name'"):
        tree(specs__p__x="metric: M\nthreshold: {value: 1, unit: s, operator: <}")
    one = "metric: M\nname: s\nthreshold: {value: 1, unit: s, operator: <}"
    with pytest.raises(DefinitionError) as caught:
        tree(specs__p__x=one, specs__p__y=one)
    assert str(caught.value) == (
        "specs/p/y.yaml: spec 's': specification 'p.M.s' is also defined in specs/p/x.yaml"
    )


def test_specs_may_name_metrics_defined_elsewhere_and_other_paths_are_ignored() -> None:
    definitions = parse_definition_files(
        {
            "metrics/README.rst": "not yaml: [",
            "specs/README.rst": "not yaml: [",
            "specs/top.yaml": "not yaml: [",  # lsst.verify reads package folders only
            "specs/p/notes.txt": "not yaml: [",
            "specs/p/x.yaml": "name: Other.s\nthreshold: {value: 1, unit: '', operator: '=='}",
        }
    )
    assert definitions.metrics == ()
    assert [s.full_name for s in definitions.specs] == ["p.Other.s"]


# --- metrics and directions -----------------------------------------------------------------


def test_metric_file_and_directions() -> None:
    definitions = tree(
        metrics__pkg=METRICS,
        specs__pkg__x="""
id: b
threshold: {unit: '%', operator: '>='}
---
{name: COMP.min, base: '#b', threshold: {value: 90}}
---
{name: AM1.s, threshold: {value: 10, unit: marcsec, operator: '<='}}
---
{name: PA1.s, threshold: {value: 10, unit: mmag, operator: '<'}}
---
{name: PA1.t, threshold: {value: 10, unit: mmag, operator: '!='}}
""",
    )
    pa1 = metric_named(definitions.metrics, "pkg.PA1")
    assert (pa1.unit, pa1.description, pa1.tags, pa1.reference) == (
        "mmag",
        "rms",
        ("photometry",),
        Reference(),
    )
    assert pa1.direction is Direction.LOWER  # mixed < and != : kept
    assert metric_named(definitions.metrics, "pkg.COMP").direction is Direction.HIGHER
    assert metric_named(definitions.metrics, "pkg.AM1").direction is Direction.NONE  # explicit
    assert definitions.explicit_directions == frozenset({"pkg.AM1"})


def test_infer_directions_keeps_explicit_and_unspecified_metrics() -> None:
    metrics = (Metric("p", "a", direction=Direction.NONE), Metric("p", "b"), Metric("p", "c"))
    specs = [
        Specification("p", "a", "s", 1.0, "", ">"),
        Specification("p", "b", "s", 1.0, "", ">="),
        Specification("p", "b", "t", 2.0, "", ">"),
    ]
    inferred = infer_directions(metrics, specs)
    assert [m.direction for m in inferred] == ["higher", "higher", "lower"]
    kept = infer_directions(metrics, specs, explicit={"p.a"})
    assert [m.direction for m in kept] == ["none", "higher", "lower"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{unit: furlongs}", r"metrics/pkg\.yaml: metric 'M': unit 'furlongs'"),
        ("{unit: s, direction: up}", r"metrics/pkg\.yaml: metric 'M': direction 'up'"),
        ("[s]", r"metrics/pkg\.yaml: metric 'M': definition is not a mapping"),
        ("{unit: s, reference: LPM-17}", r"metrics/pkg\.yaml: metric 'M': reference is not"),
    ],
)
def test_bad_metrics(body: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        tree(metrics__pkg=f"M: {body}")


def test_metric_unit_missing_or_empty_is_dimensionless() -> None:
    definitions = tree(metrics__pkg="A: {description: x}\nB: {unit: ''}")
    assert [m.unit for m in definitions.metrics] == ["", ""]


# --- level and requirement inference --------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "name", "extra", "level"),
    [
        ("PA1", "hsc_design_g", "", Level.DESIGN),  # a token of the spec name
        ("AD1_design", "srd", "", Level.DESIGN),  # a token of the metric name
        ("PA2_stretch_gri", "srd", "", Level.STRETCH),
        ("PA1", "FY17-minimum", "", Level.MINIMUM),
        ("PA1", "designer", "", None),  # whole tokens only
        ("PA1", "srd", "", None),
        ("AD1_design", "srd", "tags: [Minimum]", Level.MINIMUM),  # a tag beats the names
        ("AD1_design", "minimum", "", Level.MINIMUM),  # the spec name beats the metric name
        ("PA1", "design_or_stretch", "", None),  # ambiguous names say nothing
        ("PA1", "hsc_design", "tags: [stretch]\nlevel: null", None),  # explicit, even empty
        ("PA1", "hsc_design", "level: Stretch", Level.STRETCH),
    ],
)
def test_level_inference(metric: str, name: str, extra: str, level: Level | None) -> None:
    text = f"metric: {metric}\nname: {name}\nthreshold: {{value: 1, unit: s, operator: <}}\n"
    assert tree(specs__p__x=text + extra).specs[0].level == level


def test_requirement_ids_come_from_tags_unless_given() -> None:
    definitions = tree(
        specs__p__x="""
id: b
tags: [DMS-REQ-0275, LPM-17, design]
threshold: {value: 1, unit: s, operator: <}
---
{name: M.a, base: '#b', tags: [OSS-REQ-0387, LSR-REQ-0093, DMS-REQ-0275, dms-req-0001, AB-12]}
---
{name: M.b, base: '#b', requirements: [LSE-30-0001]}
""",
    )
    assert spec_named(definitions, "p.M.a").requirements == (
        "DMS-REQ-0275",
        "OSS-REQ-0387",
        "LSR-REQ-0093",
    )
    assert spec_named(definitions, "p.M.b").requirements == ("LSE-30-0001",)


# --- job JSON -------------------------------------------------------------------------------


def test_real_job_metrics_and_specs(job: dict[str, Any]) -> None:
    metrics = parse_job_metrics(job["metrics"])
    specs = parse_job_specs(job["specs"])
    assert (len(metrics), len(specs)) == (62, 628)
    assert metric_named(metrics, "validate_drp.PF1_minimum_gri").unit == "%"
    assert metric_named(metrics, "validate_drp.PA1").reference == Reference(
        doc="LPM-17", url="http://ls.st/lpm-17", page=21
    )
    decam = next(s for s in specs if s.full_name == "validate_drp.PA1.decam_stretch_z")
    assert decam == Specification(
        package="validate_drp",
        metric="PA1",
        name="decam_stretch_z",
        threshold=4.5,
        unit="mmag",
        operator="<=",
        metadata_query={
            "instrument": "DECAM",
            "dataset_repo_url": "https://github.com/lsst/validation_data_decam.git",
            "dataset_name": "validation_data_decam",
            "filter_name": "z",
        },
        tags=("PA1", "chromatic", "stretch"),
        level=Level.STRETCH,
    )
    assert sum(s.level is None for s in specs) == 326
    directed = infer_directions(metrics, specs)
    assert metric_named(directed, "validate_drp.PA1").direction is Direction.LOWER


def test_job_mapping_form_equals_list_form(job: dict[str, Any]) -> None:
    as_map = {item["name"]: {k: v for k, v in item.items() if k != "name"} for item in job["specs"]}
    assert parse_job_specs(as_map) == parse_job_specs(job["specs"])
    metrics = {item["name"]: item for item in job["metrics"]}
    assert parse_job_metrics(metrics) == parse_job_metrics(job["metrics"])


def test_job_specs_skip_other_types_and_reject_bad_ones() -> None:
    threshold = {"value": 1.0, "unit": "s", "operator": "<"}
    specs = parse_job_specs(
        [
            {"name": "p.M.b", "type": "threshold", "threshold": threshold},
            {"name": "p.M.a", "threshold": threshold, "tags": ["minimum"]},
            {"name": "p.M.c", "type": "range", "range": {"low": 1, "high": 2}},
        ]
    )
    assert [(s.full_name, s.level) for s in specs] == [("p.M.a", Level.MINIMUM), ("p.M.b", None)]
    with pytest.raises(DefinitionError, match=r"job spec 'p\.M': name is not of the form"):
        parse_job_specs([{"name": "p.M", "threshold": threshold}])
    with pytest.raises(DefinitionError, match=r"job spec 'p\.M\.a': operator '~'"):
        parse_job_specs([{"name": "p.M.a", "threshold": {**threshold, "operator": "~"}}])
    with pytest.raises(DefinitionError, match=r"job spec 'p\.M\.a': defined twice"):
        parse_job_specs(
            {"p.M.a": {"threshold": threshold}, "x": {"name": "p.M.a", "type": "threshold"}}
        )


def test_job_metrics_reject_bad_ones() -> None:
    with pytest.raises(DefinitionError, match=r"job metric 'PA1': metric name 'PA1' is not"):
        parse_job_metrics([{"name": "PA1", "unit": "mmag"}])
    with pytest.raises(DefinitionError, match=r"job metric 'p\.PA1': unit 'furlongs'"):
        parse_job_metrics({"p.PA1": {"unit": "furlongs"}})
    with pytest.raises(DefinitionError, match=r"job metric None: not a mapping with a 'name'"):
        parse_job_metrics([{"unit": "s"}])
