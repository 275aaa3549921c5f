"""Property tests (hypothesis) of what parses untrusted input: the job parser, the document
limits, the cursor and time codecs.  Whatever comes in, the answer is a value or a
``ClientError`` with a location, never another exception."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specwatch.api.cursor import EPOCH, decode_cursor, encode_cursor
from specwatch.exceptions import ClientError, InvalidInputError
from specwatch.metrics.jobs import EARLIEST, LATEST, parse_job_document, parse_time
from specwatch.metrics.limits import (
    INT64_MAX,
    INT64_MIN,
    DocumentLimits,
    check_document,
    decode_json,
)

LIMITS = DocumentLimits(max_depth=8, max_string_chars=200)
PROFILE = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


def _storable(value: Any) -> None:
    """What check_document passes, JSON can hold (orjson refuses >64-bit integers)."""
    orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value.keys(), *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _ints(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints(v)]
    if isinstance(value, list):
        return [i for v in value for i in _ints(v)]
    return [value] if type(value) is int else []


@PROFILE
@given(st.lists(documents, max_size=1))  # in a list: a bare integer cannot change in place
def test_check_document_refuses_exactly_what_no_store_keeps(doc: Any) -> None:
    fits = _depth(doc) <= LIMITS.max_depth + 1 and all(
        len(s) <= LIMITS.max_string_chars and "\x00" not in s for s in _strings(doc)
    )
    try:
        check_document(doc, LIMITS)
    except InvalidInputError as error:
        assert not fits, error.message
        assert error.location and error.location[0] == "body"
    else:
        assert fits
        _storable(doc)  # integers past 64 bits became floats, in place
        assert all(INT64_MIN <= i <= INT64_MAX for i in _ints(doc))


@PROFILE
@given(st.binary(max_size=200) | documents.map(lambda d: json.dumps(d).encode()))
def test_decode_json_gives_a_document_or_a_client_error(body: bytes) -> None:
    try:
        decode_json(body, LIMITS)
    except InvalidInputError as error:
        assert error.location is not None and error.location[0] == "body"


@PROFILE
@given(documents)
def test_job_parser_never_fails_otherwise(doc: Any) -> None:
    try:
        parse_job_document(doc)
    except ClientError as error:
        assert error.status == 422 and error.location


plain_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=20,
)
measurement_items = st.fixed_dictionaries(
    {
        "metric": st.from_regex(r"[a-z]{1,8}\.[A-Za-z0-9]{1,8}", fullmatch=True),
        "value": st.floats(allow_nan=True, allow_infinity=False) | st.none(),
        "unit": st.sampled_from(["", "mmag", "s", None]),
        "identifier": st.none() | plain_text,
    }
)
metas = st.fixed_dictionaries(
    {},
    optional={
        "dataset": plain_text,
        "branch": plain_text,
        "commit": st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True),
        "pr": st.integers(min_value=1, max_value=2**31 - 1),
        "time": st.datetimes(
            min_value=datetime(1700, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ).map(datetime.isoformat),
    },
)


@PROFILE
@given(st.lists(measurement_items, max_size=5), metas)
def test_valid_jobs_parse_to_what_was_sent(
    items: list[dict[str, Any]], meta: dict[str, Any]
) -> None:
    body = json.dumps({"measurements": items, "meta": meta}).encode()  # NaN as a bare token
    document = parse_job_document(decode_json(body, DocumentLimits()))
    assert [m.metric for m in document.measurements] == [i["metric"] for i in items]
    for parsed, sent in zip(document.measurements, items, strict=True):
        if sent["value"] is None or math.isnan(sent["value"]):
            assert math.isnan(parsed.value)
        else:
            assert parsed.value == sent["value"]
    context = document.context
    assert context.pr == meta.get("pr")
    if "time" in meta:
        assert context.time == datetime.fromisoformat(meta["time"])
    for key in ("dataset", "branch", "commit"):
        expected = meta.get(key)
        assert getattr(context, key) == (None if expected in ("", "unknown") else expected)


@PROFILE
@given(
    st.datetimes(min_value=EARLIEST.replace(tzinfo=None), max_value=LATEST.replace(tzinfo=None)),
    st.integers(min_value=1, max_value=INT64_MAX),
)
def test_cursor_round_trip(moment: datetime, item_id: int) -> None:
    moment = moment.replace(tzinfo=UTC)
    assert decode_cursor(encode_cursor(moment, item_id)) == (moment, item_id)


@PROFILE
@given(st.text(max_size=50) | st.from_regex(r"-?\d{1,20}\.\d{1,20}", fullmatch=True))
def test_any_cursor_text_decodes_in_range_or_is_a_422(text: str) -> None:
    """A cursor of the documented form is a position, clamped into range; others are 422."""
    try:
        decoded = decode_cursor(text)
    except InvalidInputError as error:
        assert error.location == ["query", "cursor"]
        assert not re.fullmatch(r"-?\d{1,19}\.\d{1,19}", text)
    else:
        assert decoded is not None
        moment, item_id = decoded
        assert EARLIEST <= moment <= LATEST and 0 <= item_id <= INT64_MAX
        micros = int(text.split(".")[0])
        if moment not in (EARLIEST, LATEST):
            assert moment - EPOCH == timedelta(microseconds=micros)


@PROFILE
@given(
    st.text(max_size=40)
    | st.floats(allow_nan=True)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.datetimes().map(datetime.isoformat)
)
def test_parse_time_is_in_range_or_a_422(value: Any) -> None:
    try:
        parsed = parse_time(value, "meta", "time")
    except InvalidInputError as error:
        assert error.location == ["body", "meta", "time"]
    else:
        assert parsed is None or (EARLIEST <= parsed <= LATEST and parsed.tzinfo is not None)


@pytest.mark.parametrize("depth", [10, 1000, 5000])
def test_check_document_is_iterative(depth: int) -> None:
    doc: Any = 1
    for _ in range(depth):
        doc = [doc]
    with pytest.raises(InvalidInputError, match="deeper than 8"):
        check_document(doc, LIMITS)
