"""parse_request and format_predictions on their own: no server, no registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.serving.protocol import BadRequest, format_predictions, parse_request

COLUMNS = list(FEATURE_COLUMNS)
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
EXPECTED = np.array(ROWS)
JSON = "application/json"
SECRET = "SECRET-VALUE-7731"


def records(rows=ROWS, extra=False):
    out = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
    if extra:
        for record in out:
            record["colour"] = "blue"
    return out


def body(document) -> bytes:
    return json.dumps(document).encode()


def columnar(rows=ROWS):
    return {c: [row[j] for row in rows] for j, c in enumerate(COLUMNS)}


VALID_JSON = {
    "dataframe_split": {"columns": COLUMNS, "data": ROWS},
    "dataframe_split, reordered, extra column, index": {
        "columns": ["petal_width_cm", "id", *COLUMNS[:3]],
        "index": [10, 11, 12],
        "data": [[r[3], i, *r[:3]] for i, r in enumerate(ROWS)],
    },
    "dataframe_records": records(),
    "dataframe_records, extra keys": records(extra=True),
    "instances records": records(),
    "instances lists": ROWS,
    "inputs records": records(),
    "inputs columnar": columnar(),
    "inputs lists": ROWS,
}


@pytest.mark.parametrize("case", list(VALID_JSON))
def test_every_json_form_gives_the_same_matrix(case: str) -> None:
    key = case.split(" ")[0].rstrip(",")
    matrix = parse_request(body({key: VALID_JSON[case]}), JSON, COLUMNS)
    assert matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, EXPECTED)


CONVERTED_LIKE_MLFLOW = {
    "numeric strings in records": {
        "dataframe_records": [
            {c: f" {v} " for c, v in zip(COLUMNS, row, strict=True)} for row in ROWS
        ]
    },
    "numeric strings in split": {
        "dataframe_split": {"columns": COLUMNS, "data": [[str(v) for v in r] for r in ROWS]}
    },
    "exponents and signs": {
        "inputs": [[f"{r[0] * 10}e-1", f"+{r[1]}", f"{r[2]}", r[3]] for r in ROWS]
    },
    "a value for a column is broadcast": {"inputs": {**columnar(), "petal_width_cm": 0.5}},
}


@pytest.mark.parametrize("case", list(CONVERTED_LIKE_MLFLOW))
def test_what_mlflow_converts_is_converted(case: str) -> None:
    matrix = parse_request(body(CONVERTED_LIKE_MLFLOW[case]), JSON, COLUMNS)
    expected = EXPECTED.copy()
    if case.startswith("a value"):
        expected[:, 3] = 0.5
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("key", ["inputs", "instances"])
def test_one_row_as_an_object_of_values(key: str) -> None:
    row = dict(zip(COLUMNS, ROWS[0], strict=True))
    np.testing.assert_array_equal(parse_request(body({key: row}), JSON, COLUMNS), EXPECTED[:1])


def test_params_next_to_the_input_are_ignored() -> None:
    document = {"dataframe_records": records(), "params": {"threshold": 0.5}}
    np.testing.assert_array_equal(parse_request(body(document), JSON, COLUMNS), EXPECTED)


def test_integers_and_charset_are_accepted() -> None:
    document = {"dataframe_records": [dict.fromkeys(COLUMNS, 3)]}
    matrix = parse_request(body(document), "Application/JSON; charset=UTF-8", COLUMNS)
    np.testing.assert_array_equal(matrix, [[3.0, 3.0, 3.0, 3.0]])


def test_csv_with_header_reordered_and_extra_column() -> None:
    header = ["id", *reversed(COLUMNS)]
    lines = [",".join(header)] + [",".join(map(str, [i, *reversed(r)])) for i, r in enumerate(ROWS)]
    text = "\ufeff" + "\r\n".join(lines) + "\r\n\r\n"
    matrix = parse_request(text.encode(), "text/csv; charset=utf-8", COLUMNS)
    np.testing.assert_array_equal(matrix, EXPECTED)


def one_record(**overrides):
    record = dict(zip(COLUMNS, ROWS[0], strict=True))
    record.update(overrides)
    return {"dataframe_records": [record]}


CSV_HEADER = ",".join(COLUMNS)

BAD = {
    "empty body": (b"", JSON, 400, "empty"),
    "whitespace body": (b"  \n", JSON, 400, "empty"),
    "invalid json": (b'{"dataframe_records": [SECRET-VALUE-7731', JSON, 400, "not valid JSON"),
    "not utf-8": (b'{"inputs": ["\xff"]}', JSON, 400, "UTF-8"),
    "json array": (b"[1, 2]", JSON, 400, "JSON object"),
    "no keys": (b"{}", JSON, 400, "no input"),
    "unknown key": (body({SECRET: records()}), JSON, 400, "unknown top-level key"),
    "two keys": (body({"instances": ROWS, "inputs": ROWS}), JSON, 400, "more than one"),
    "missing content type": (body({"inputs": ROWS}), None, 415, "missing Content-Type"),
    "wrong content type": (body({"inputs": ROWS}), "text/plain", 415, "Content-Type"),
    "form content type": (body({"inputs": ROWS}), "application/x-www-form-urlencoded", 415, ""),
    "latin-1 charset": (body({"inputs": ROWS}), "application/json; charset=latin-1", 415, ""),
    "missing column (records)": (
        body({"dataframe_records": [{c: 1.0 for c in COLUMNS[:3]}]}),
        JSON,
        400,
        "missing column 'petal_width_cm'",
    ),
    "missing column (split)": (
        body({"dataframe_split": {"columns": COLUMNS[1:], "data": [r[1:] for r in ROWS]}}),
        JSON,
        400,
        "missing column 'sepal_length_cm'",
    ),
    "missing column (columnar)": (
        body({"inputs": {c: [1.0] for c in COLUMNS[:2]}}),
        JSON,
        400,
        "missing column 'petal_length_cm'",
    ),
    "string value": (
        body(one_record(sepal_width_cm=SECRET)),
        JSON,
        400,
        "column 'sepal_width_cm' has a non-numeric value",
    ),
    # Python's float() reads these; MLflow's JSON path would too (51.0, NaN): a typo, not data.
    "underscore in a numeric string": (
        body(one_record(sepal_width_cm="5_1")),
        JSON,
        400,
        "column 'sepal_width_cm' has a non-numeric value",
    ),
    "nan string": (body(one_record(sepal_width_cm="nan")), JSON, 400, "non-numeric"),
    "empty string": (body(one_record(sepal_width_cm="")), JSON, 400, "non-numeric"),
    "object as a column": (body({"inputs": {c: {"a": 1} for c in COLUMNS}}), JSON, 400, "list"),
    "boolean": (body(one_record(petal_length_cm=True)), JSON, 400, "'petal_length_cm'"),
    "nested list": (body(one_record(petal_length_cm=[1.0])), JSON, 400, "non-numeric"),
    "null": (body(one_record(petal_width_cm=None)), JSON, 400, "'petal_width_cm' has a null"),
    "NaN": (
        b'{"inputs": [[5.1, NaN, 1.4, 0.2]]}',
        JSON,
        400,
        "'sepal_width_cm' has a NaN or infinite",
    ),
    "infinity": (b'{"inputs": [[5.1, 3.5, 1e999, 0.2]]}', JSON, 400, "'petal_length_cm'"),
    "huge integer": (body(one_record(sepal_length_cm=10**400)), JSON, 400, "out of range"),
    "no rows (records)": (body({"dataframe_records": []}), JSON, 400, "no rows"),
    "no rows (split)": (
        body({"dataframe_split": {"columns": COLUMNS, "data": []}}),
        JSON,
        400,
        "no rows",
    ),
    "no rows (columnar)": (body({"inputs": {c: [] for c in COLUMNS}}), JSON, 400, "no rows"),
    "ragged rows": (body({"instances": [ROWS[0], ROWS[1][:3]]}), JSON, 400, "ragged"),
    "ragged split": (
        body({"dataframe_split": {"columns": COLUMNS, "data": [ROWS[0], ROWS[1] + [1.0]]}}),
        JSON,
        400,
        "ragged",
    ),
    "ragged columnar": (
        body({"inputs": {**columnar(), "petal_width_cm": [0.2]}}),
        JSON,
        400,
        "ragged",
    ),
    "records not objects": (body({"dataframe_records": [ROWS[0]]}), JSON, 400, "objects"),
    "split without data": (body({"dataframe_split": {"columns": COLUMNS}}), JSON, 400, "'data'"),
    "duplicate split column": (
        body({"dataframe_split": {"columns": COLUMNS + COLUMNS[:1], "data": [ROWS[0] + [1]]}}),
        JSON,
        400,
        "duplicate",
    ),
    "scalar input": (body({"inputs": 5.1}), JSON, 400, "inputs must be"),
    "csv header only": (CSV_HEADER.encode(), "text/csv", 400, "no rows"),
    "csv missing column": (b"a,b\n1,2\n", "text/csv", 400, "missing column 'sepal_length_cm'"),
    "csv text value": (
        f"{CSV_HEADER}\n5.1,{SECRET},1.4,0.2\n".encode(),
        "text/csv",
        400,
        "column 'sepal_width_cm' has a non-numeric value",
    ),
    "csv empty value": (f"{CSV_HEADER}\n5.1,,1.4,0.2\n".encode(), "text/csv", 400, "null"),
    "csv nan": (f"{CSV_HEADER}\n5.1,nan,1.4,0.2\n".encode(), "text/csv", 400, "sepal_width_cm"),
    "csv underscore": (f"{CSV_HEADER}\n5_1,3.5,1.4,0.2\n".encode(), "text/csv", 400, "numeric"),
    "csv hex": (f"{CSV_HEADER}\n0x5,3.5,1.4,0.2\n".encode(), "text/csv", 400, "numeric"),
    "csv ragged": (f"{CSV_HEADER}\n5.1,3.5,1.4\n".encode(), "text/csv", 400, "ragged"),
    "csv duplicate column": (
        f"{CSV_HEADER},sepal_length_cm\n5.1,3.5,1.4,0.2,9\n".encode(),
        "text/csv",
        400,
        "duplicate",
    ),
    "csv bom only": (b"\xef\xbb\xbf", "text/csv", 400, "empty"),
    "csv empty body": (b"", "text/csv", 400, "empty"),
    "csv blank lines": (b"\r\n\n", "text/csv", 400, "empty"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_are_refused_with_a_short_message(case: str) -> None:
    payload, content_type, status, fragment = BAD[case]
    with pytest.raises(BadRequest) as raised:
        parse_request(payload, content_type, COLUMNS)
    assert raised.value.status == status
    assert fragment in raised.value.message
    assert SECRET not in raised.value.message
    assert len(raised.value.message) < 120
    # MLflow's codes: the input does not fit the schema, or it cannot be read as input at all.
    schema_mismatch = any(
        words in case
        for words in ("missing column", "no rows", "ragged columnar", "csv header", "not objects")
    )
    expected_code = {400: "INVALID_PARAMETER_VALUE" if schema_mismatch else "BAD_REQUEST"}
    assert raised.value.error_code == expected_code.get(status, "UNSUPPORTED_MEDIA_TYPE")


def test_too_many_rows_is_413() -> None:
    with pytest.raises(BadRequest) as raised:
        parse_request(body({"inputs": ROWS}), JSON, COLUMNS, max_rows=2)
    assert raised.value.status == 413


def test_format_predictions() -> None:
    assert json.loads(format_predictions(np.array([0, 2, 1]))) == {"predictions": [0, 2, 1]}
    assert json.loads(format_predictions(["setosa"])) == {"predictions": ["setosa"]}
