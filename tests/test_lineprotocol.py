"""The line protocol encoder: exact bytes, and what a real influxd reads back from them."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from influxdb_server import InfluxDBServer

from specwatch.exceptions import InvalidInputError
from specwatch.store.series.base import SeriesPoint
from specwatch.store.series.lineprotocol import encode_batches, encode_point, encode_points

T_NS = 1732530000123456789  # beyond float precision: a float timestamp would change it


def point(
    values: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    *,
    package: str = "validate_drp",
    commit: str | None = None,
    time_ns: int = T_NS,
    job_id: int = 42,
) -> SeriesPoint:
    return SeriesPoint(
        package=package,
        time_ns=time_ns,
        job_id=job_id,
        values={"PA1": 12.5} if values is None else values,
        tags=tags or {},
        commit=commit,
    )


def test_full_point() -> None:
    p = point(
        {"PA1": 12.5, "AM1": 3.0},
        {"filter": "r", "dataset": "HSC RC2", "branch": ""},
        commit="abc123",
    )
    assert encode_points([p]) == (
        b"validate_drp,dataset=HSC\\ RC2,filter=r "
        b'AM1=3.0,PA1=12.5,commit="abc123",job_id=42i 1732530000123456789\n'
    )


def test_tags_sorted_by_key_and_empty_ones_omitted() -> None:
    p = point(tags={"pipeline": "p", "pr": "", "branch": "b", "dataset": "d", "filter": ""})
    assert encode_point(p) == "validate_drp,branch=b,dataset=d,pipeline=p PA1=12.5,job_id=42i " + (
        f"{T_NS}\n"
    )


def test_measurement_escapes_comma_and_space_only() -> None:
    p = point(package='my pkg,x=y"z')
    assert encode_point(p).startswith('my\\ pkg\\,x=y"z PA1=')


def test_tag_keys_and_values_escape_comma_equals_space() -> None:
    p = point(tags={"a b": "c,d=e f", "k=,": 'it\'s "quoted"'})
    assert encode_point(p).startswith(
        'validate_drp,a\\ b=c\\,d\\=e\\ f,k\\=\\,=it\'s\\ "quoted" PA1='
    )


def test_field_keys_escape_comma_equals_space() -> None:
    assert (
        encode_point(point({"a=b c,d": 1.0}))
        == f"validate_drp a\\=b\\ c\\,d=1.0,job_id=42i {T_NS}\n"
    )


def test_string_field_escapes_quote_and_backslash() -> None:
    p = point(commit='say "hi" \\ back\\')
    assert encode_point(p) == (
        f'validate_drp PA1=12.5,commit="say \\"hi\\" \\\\ back\\\\",job_id=42i {T_NS}\n'
    )


def test_lone_backslash_in_names_is_kept_as_is() -> None:
    p = point({"f\\g": 1.0}, {"t\\x": "q\\w"}, package="a\\b")
    assert encode_point(p) == f"a\\b,t\\x=q\\w f\\g=1.0,job_id=42i {T_NS}\n"


def test_nan_and_inf_become_marker_fields() -> None:
    p = point({"PA1": math.nan, "AM1": math.inf, "AD1": -math.inf, "TE1": 1.0})
    assert encode_point(p) == (
        f"validate_drp AD1.nan=true,AM1.nan=true,PA1.nan=true,TE1=1.0,job_id=42i {T_NS}\n"
    )


def test_point_without_finite_values_still_has_a_field() -> None:
    assert encode_point(point({"PA1": math.nan})) == (
        f"validate_drp PA1.nan=true,job_id=42i {T_NS}\n"
    )
    assert encode_point(point({})) == f"validate_drp job_id=42i {T_NS}\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (1e-300, "1e-300"),
        (12345678901234.5, "12345678901234.5"),
        (2.0, "2.0"),
        (3, "3.0"),  # an int value is still written as a float
        (1e16, "1e+16"),
        (-0.0, "-0.0"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (np.float64(1.5), "1.5"),
        (np.float32(0.1), "0.10000000149011612"),
    ],
)
def test_floats_are_written_exactly(value: float, text: str) -> None:
    assert encode_point(point({"PA1": value})) == f"validate_drp PA1={text},job_id=42i {T_NS}\n"
    assert float(text) == float(value)


def test_timestamps_are_integer_nanoseconds() -> None:
    assert encode_point(point(time_ns=np.int64(T_NS))).endswith(f" {T_NS}\n")  # type: ignore[arg-type]  # numpy ints are accepted
    assert encode_point(point(time_ns=-1)).endswith(" -1\n")
    with pytest.raises(TypeError):
        encode_point(point(time_ns=1.5e18))  # type: ignore[arg-type]  # the point of the test
    with pytest.raises(InvalidInputError):
        encode_point(point(time_ns=2**63 - 1))


def test_several_points_one_line_each() -> None:
    data = encode_points([point(job_id=1, time_ns=1), point(job_id=2, time_ns=2)])
    assert data == b"validate_drp PA1=12.5,job_id=1i 1\nvalidate_drp PA1=12.5,job_id=2i 2\n"
    assert encode_points([]) == b""


@pytest.mark.parametrize(
    ("p", "location"),
    [
        (point(tags={"dataset": "a\nb"}), ["tags", "dataset"]),
        (point(tags={"dataset": "a\rb"}), ["tags", "dataset"]),
        (point(tags={"dataset": "ends\\"}), ["tags", "dataset"]),
        (point(tags={"dataset": "a\\,b"}), ["tags", "dataset"]),
        (point(tags={"dataset": "a\\\\b"}), ["tags", "dataset"]),
        (point(tags={"": "x"}), ["tags"]),
        (point(tags={"time": "x"}), ["tags", "time"]),
        (point(package="pkg\n"), ["package"]),
        (point(package="#pkg"), ["package"]),
        (point(package=""), ["package"]),
        (point({"PA1\n": 1.0}), ["values"]),
        (point({"job_id": 1.0}), ["values", "job_id"]),
        (point({"commit": 1.0}), ["values", "commit"]),
        (point({"PA1.nan": 1.0}), ["values", "PA1.nan"]),
    ],
)
def test_unstorable_points_are_rejected(p: SeriesPoint, location: list[str]) -> None:
    with pytest.raises(InvalidInputError) as info:
        encode_points([p])
    assert info.value.location == location


def test_batches_split_by_points_and_bytes() -> None:
    points = [point(job_id=i, time_ns=i) for i in range(10)]
    line = len(encode_point(points[0]))
    assert [b.count(b"\n") for b in encode_batches(points, max_points=4)] == [4, 4, 2]
    by_size = list(encode_batches(points, max_bytes=3 * line + 2))
    assert [b.count(b"\n") for b in by_size] == [3, 3, 3, 1]
    assert b"".join(by_size) == encode_points(points)
    assert [b.count(b"\n") for b in encode_batches(points[:2], max_bytes=1)] == [1, 1]
    assert list(encode_batches([])) == []


def test_batches_validate_every_point_before_the_first_batch() -> None:
    points = [point(job_id=i, time_ns=i) for i in range(10)]
    points.append(point(tags={"dataset": "bad\n"}))
    batches = encode_batches(points, max_points=2)
    with pytest.raises(InvalidInputError):
        next(batches)


# ---- read back by a real influxd -------------------------------------------------------------


@pytest.fixture(scope="module")
def influx() -> Iterator[httpx.Client]:
    with InfluxDBServer() as server, httpx.Client(base_url=server.url) as client:
        yield client


def influxql(client: httpx.Client, db: str, statement: str) -> list[dict[str, Any]]:
    response = client.post("/query", params={"db": db, "epoch": "ns"}, data={"q": statement})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = orjson.loads(response.content)["results"][0]
    assert "error" not in result
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def write_and_read(client: httpx.Client, points: list[SeriesPoint]) -> tuple[str, list[Any]]:
    db = f"lp_{uuid.uuid4().hex}"
    influxql(client, db, f'CREATE DATABASE "{db}"')
    response = client.post(
        "/write", params={"db": db, "precision": "ns"}, content=encode_points(points)
    )
    assert response.status_code == 204, response.text
    return db, influxql(client, db, "SHOW FIELD KEYS")


def test_influxd_reads_back_names_values_and_types(influx: httpx.Client) -> None:
    package = 'pkg with space,comma=eq"quote\\back'
    tags = {"dataset": "HSC RC2, w=2", "branch": 'it\'s "x" a\\b', "filter": ""}
    values = {"PA1": 0.1, "AM 1,=": 1e-300, "big": 12345678901234.5, "one": 1.0, "bad": math.nan}
    commit = 'c"o\\m\nmit'
    p = point(values, tags, package=package, commit=commit, time_ns=T_NS)
    db, field_keys = write_and_read(influx, [p])

    assert [s["name"] for s in field_keys] == [package]
    assert dict(field_keys[0]["values"]) == {
        "AM 1,=": "float",
        "PA1": "float",
        "bad.nan": "boolean",
        "big": "float",
        "commit": "string",
        "job_id": "integer",
        "one": "float",
    }
    package_id = '"' + package.replace("\\", "\\\\").replace('"', '\\"') + '"'
    [series] = influxql(influx, db, f"SELECT * FROM {package_id}")
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    assert row == {
        "time": T_NS,
        "dataset": "HSC RC2, w=2",
        "branch": 'it\'s "x" a\\b',
        "PA1": 0.1,
        "AM 1,=": 1e-300,
        "big": 12345678901234.5,
        "one": 1,  # JSON has no float/int distinction; the field type above is float
        "bad.nan": True,
        "commit": commit,
        "job_id": 42,
    }


def test_influxd_keeps_full_nanosecond_timestamps(influx: httpx.Client) -> None:
    times = [T_NS, T_NS + 1, -1, 0, 1]
    db, _ = write_and_read(influx, [point(time_ns=t, job_id=i) for i, t in enumerate(times)])
    [series] = influxql(influx, db, 'SELECT "job_id" FROM "validate_drp"')
    assert sorted(series["values"]) == sorted([[t, i] for i, t in enumerate(times)])
