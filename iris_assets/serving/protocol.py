"""The MLflow scoring protocol as pure functions: request bodies in, a feature matrix out.

Owns parsing and validation of ``/invocations`` bodies (JSON ``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs``, and ``text/csv``) and the JSON shape of
predictions and errors. No HTTP, no mlflow: the server and the tests call these directly.

What MLflow's scoring server accepts for a model with this signature is accepted too: numbers
sent as decimal strings (``"5.1"``), ``{"inputs": {column: value}}`` for one row. Stricter on
purpose: booleans and strings Python's ``float`` reads loosely (``"5_1"``, ``"nan"``) are refused.

Error codes follow MLflow's: ``INVALID_PARAMETER_VALUE`` where the input does not match the
model's schema (a missing column, no rows, columns of different lengths), ``BAD_REQUEST`` where
the body cannot be read as input at all.

Error messages name the problem and, where useful, the column; they never repeat a value from the
request, so a client cannot make the server echo (or log) arbitrary data.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

INPUT_KEYS: tuple[str, ...] = ("dataframe_split", "dataframe_records", "instances", "inputs")
# MLflow clients may send inference params next to the input; this model takes none.
IGNORED_KEYS: frozenset[str] = frozenset({"params"})

ERROR_CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    411: "LENGTH_REQUIRED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    431: "REQUEST_HEADER_TOO_LARGE",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
}

_NUMERIC_TYPES = frozenset({int, float})  # bool is excluded on purpose: True is not a length
_NONE_TYPE = type(None)
_JSON_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_EXPECTED_KEYS = ", ".join(INPUT_KEYS)
# A decimal number as a measurement is written: no underscores, no "nan"/"inf", no hex.
_DECIMAL = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
SCHEMA_MISMATCH = "INVALID_PARAMETER_VALUE"
# The Content-Type values a request's body may take the fast path with (exact header values;
# any other spelling is parsed by the general parser, which accepts it just the same).
_PLAIN_JSON = frozenset({"application/json", "application/json; charset=utf-8"})
_RECORD_KEYS = frozenset({"dataframe_records", "instances", "inputs"})
# Above this the general parser's column-wise matrix is as fast per row (measured: the two cross
# near 20 records; parse_request in-process, December 2026).
_SMALL_ROWS = 16
_EXACT_INT = 2**53  # integers up to this size are exact float64s
_JSON_DECODE = json.JSONDecoder().decode
_UNDECODED = object()  # the body has not been decoded yet (or not as plain UTF-8 JSON)
_ONE_LABEL: dict[int, bytes] = {}
_MAX_CACHED_LABELS = 1024


class BadRequest(Exception):
    """A request the server refuses, with the HTTP status and a short message for the client."""

    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code or ERROR_CODES.get(status, "BAD_REQUEST")


def parse_request(
    body: bytes,
    content_type: str | None,
    columns: Sequence[str],
    max_rows: int | None = None,
) -> np.ndarray:
    """Turn an ``/invocations`` body into a finite float64 matrix with ``columns`` in order."""
    document: Any = _UNDECODED
    if content_type in _PLAIN_JSON:
        document = _decode_plain(body)
        matrix = _small_records(document, columns, max_rows)
        if matrix is not None:
            return matrix
    media_type, charset = _media_type(content_type)
    if not body.strip():
        raise BadRequest(400, "empty request body")
    if media_type == "application/json":
        if charset is not None and charset not in _JSON_CHARSETS:
            raise BadRequest(415, "unsupported charset; send UTF-8 JSON")
        table = _parse_json(body, columns, document)
    elif media_type == "text/csv":
        if charset is not None and charset not in _JSON_CHARSETS:
            raise BadRequest(415, "unsupported charset; send UTF-8 CSV")
        table = _parse_csv(body, columns)
    else:
        raise BadRequest(415, "unsupported Content-Type; use application/json or text/csv")
    n_rows = len(table[0]) if table else 0
    if n_rows == 0:
        raise BadRequest(400, "no rows to score", SCHEMA_MISMATCH)
    if max_rows is not None and n_rows > max_rows:
        raise BadRequest(413, f"too many rows in one request (limit {max_rows})")
    return _to_matrix(table, columns)


def format_predictions(predictions: Sequence[Any] | np.ndarray) -> bytes:
    """The response body of ``/invocations``: ``{"predictions": [...]}`` as compact JSON."""
    if isinstance(predictions, np.ndarray):
        predictions = predictions.tolist()
    if len(predictions) == 1 and type(predictions[0]) is int:
        # One class index, the common answer: the same bytes json.dumps writes, and one shared
        # object per label (the request log's frames then carry a reference, not a copy).
        label = predictions[0]
        cached = _ONE_LABEL.get(label)
        if cached is None:
            cached = b'{"predictions":[%d]}' % label
            if len(_ONE_LABEL) < _MAX_CACHED_LABELS:
                _ONE_LABEL[label] = cached
        return cached
    return json.dumps({"predictions": list(predictions)}, separators=(",", ":")).encode()


def format_error(error_code: str, message: str) -> bytes:
    """The body of every error response, in the shape MLflow scoring servers use."""
    return json.dumps({"error_code": error_code, "message": message}).encode()


# --- content type ------------------------------------------------------------------------------


def _media_type(content_type: str | None) -> tuple[str, str | None]:
    if not content_type or not content_type.strip():
        raise BadRequest(415, "missing Content-Type; use application/json or text/csv")
    media_type, *params = content_type.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media_type.strip().lower(), charset


# --- JSON --------------------------------------------------------------------------------------


def _decode_plain(body: bytes) -> Any:
    """The body decoded as plain UTF-8 JSON, or ``_UNDECODED``: decoded once per request.

    bytes -> str first: json.loads(bytes) guesses the encoding on every call. A body that is not
    plain UTF-8 JSON (a BOM, UTF-16, surrogates) fails here and the general parser decodes it
    (and words the error). What decodes here is what ``json.loads(body)`` would give: valid
    JSON text in UTF-8 never looks like UTF-16 or UTF-32 to its encoding detection.
    """
    try:
        return _JSON_DECODE(body.decode())
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError among them
        return _UNDECODED


def _small_records(
    document: Any, columns: Sequence[str], max_rows: int | None
) -> np.ndarray | None:
    """The matrix of a small, well-formed body of records (most requests); else None.

    Accepts only what the general parser accepts with the same matrix: one input key holding a
    list of objects, every column a JSON number (no bool, string or null) that is finite as a
    float64. Anything else, or anything it is unsure of, is None and goes through the general
    parser (with the document already decoded), which then decides and words the error; so this
    never refuses and never differs.
    """
    if type(document) is not dict or len(document) != 1:
        return None
    (key, records), *_ = document.items()
    if key not in _RECORD_KEYS or type(records) is not list or not records:
        return None
    if len(records) > _SMALL_ROWS or (max_rows is not None and len(records) > max_rows):
        return None
    rows = []
    for record in records:
        if type(record) is not dict:
            return None
        try:
            row = [record[column] for column in columns]
        except KeyError:
            return None
        for value in row:
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # NaN or an infinity
                    return None
            elif kind is not int or not -_EXACT_INT <= value <= _EXACT_INT:
                return None
        rows.append(row)
    return np.array(rows, dtype=np.float64)


def _parse_json(
    body: bytes, columns: Sequence[str], document: Any = _UNDECODED
) -> list[Sequence[Any]]:
    if document is _UNDECODED:
        try:
            document = json.loads(body)
        except UnicodeDecodeError:
            raise BadRequest(400, "request body is not valid UTF-8") from None
        except (ValueError, RecursionError):
            raise BadRequest(400, "request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest(400, f"expected a JSON object with one of: {_EXPECTED_KEYS}")
    keys = [k for k in document if k not in IGNORED_KEYS]
    if not keys:
        raise BadRequest(400, f"no input in the request; send one of: {_EXPECTED_KEYS}")
    if any(k not in INPUT_KEYS for k in keys):
        raise BadRequest(400, f"unknown top-level key; send exactly one of: {_EXPECTED_KEYS}")
    if len(keys) > 1:
        raise BadRequest(400, f"more than one input key; send exactly one of: {_EXPECTED_KEYS}")
    key = keys[0]
    value = document[key]
    if key == "dataframe_split":
        return _from_split(value, columns)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise BadRequest(400, "dataframe_records must be a list of objects")
        return _from_records(value, columns, key)
    # "instances" and "inputs" take the same shapes: records, rows, or a columnar object.
    if isinstance(value, dict):
        return _from_columnar(value, columns, key)
    if not isinstance(value, list):
        raise BadRequest(400, f"{key} must be a list of objects, a list of lists, or an object")
    if value and all(type(item) is dict for item in value):
        return _from_records(value, columns, key)
    return _from_rows(value, len(columns), key)


def _from_split(value: Any, columns: Sequence[str]) -> list[Sequence[Any]]:
    if not isinstance(value, dict) or "columns" not in value or "data" not in value:
        raise BadRequest(400, "dataframe_split must be an object with 'columns' and 'data'")
    names, data = value["columns"], value["data"]
    if not isinstance(names, list) or not all(type(n) is str for n in names):
        raise BadRequest(400, "dataframe_split 'columns' must be a list of strings")
    if len(set(names)) != len(names):
        raise BadRequest(400, "dataframe_split 'columns' has a duplicate name")
    if not isinstance(data, list):
        raise BadRequest(400, "dataframe_split 'data' must be a list of rows")
    position = {name: i for i, name in enumerate(names)}
    missing = [c for c in columns if c not in position]
    if missing:
        raise BadRequest(400, f"missing column '{missing[0]}'", SCHEMA_MISMATCH)
    if not data:
        return [[] for _ in columns]
    transposed = _from_rows(data, len(names), "dataframe_split 'data'")
    return [transposed[position[c]] for c in columns]


def _from_records(records: list[Any], columns: Sequence[str], key: str) -> list[Sequence[Any]]:
    if not all(type(record) is dict for record in records):
        # MLflow's codes: rows given as lists where objects belong do not match the schema.
        code = SCHEMA_MISMATCH if any(type(r) is list for r in records) else None
        raise BadRequest(400, f"{key} must be a list of objects", code)
    table = []
    for column in columns:
        try:
            table.append([record[column] for record in records])
        except KeyError:
            # A column no record has is a schema mismatch; one some records lack is a malformed
            # request (MLflow's pandas conversion fills it with NaN and refuses that).
            if any(column in record for record in records):
                raise BadRequest(400, f"a record lacks column '{column}'") from None
            raise BadRequest(400, f"missing column '{column}'", SCHEMA_MISMATCH) from None
    return table


def _from_rows(rows: list[Any], width: int, key: str) -> list[Sequence[Any]]:
    if not all(type(row) is list for row in rows):
        raise BadRequest(400, f"{key} must be a list of objects or a list of lists")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise BadRequest(400, f"ragged rows: row {i} has {len(row)} values, expected {width}")
    if not rows:
        return [[] for _ in range(width)]
    return list(zip(*rows, strict=True))


def _from_columnar(value: dict[str, Any], columns: Sequence[str], key: str) -> list[Sequence[Any]]:
    """Columns as lists; a column given as one value is that value on every row (MLflow too)."""
    table: list[Any] = []
    for column in columns:
        if column not in value:
            raise BadRequest(400, f"missing column '{column}'", SCHEMA_MISMATCH)
        values = value[column]
        if isinstance(values, dict):
            raise BadRequest(400, f"{key} column '{column}' must be a list of values or a value")
        table.append(values)
    lengths = {len(values) for values in table if isinstance(values, list)}
    if len(lengths) > 1:
        raise BadRequest(
            400, f"ragged columns: {key} columns have different lengths", SCHEMA_MISMATCH
        )
    rows = lengths.pop() if lengths else 1
    return [values if isinstance(values, list) else [values] * rows for values in table]


# --- CSV ---------------------------------------------------------------------------------------


def _parse_csv(body: bytes, columns: Sequence[str]) -> list[Sequence[Any]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest(400, "request body is not valid UTF-8") from None
    try:
        lines = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error:
        raise BadRequest(400, "request body is not valid CSV") from None
    if not lines:  # an empty body, or only a byte order mark / blank lines
        raise BadRequest(400, "CSV body is empty: send a header row, then one row per flower")
    header = [name.strip() for name in lines[0]]
    if len(set(header)) != len(header):  # as dataframe_split does: never guess which one is meant
        raise BadRequest(400, "CSV header has a duplicate column name")
    position = {name: i for i, name in enumerate(header)}
    missing = [c for c in columns if c not in position]
    if missing:
        raise BadRequest(400, f"missing column '{missing[0]}'", SCHEMA_MISMATCH)
    rows = lines[1:]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise BadRequest(
                400, f"ragged rows: row {i} has {len(row)} values, expected {len(header)}"
            )
    table = []
    for column in columns:
        j = position[column]
        values: list[float] = []
        for row in rows:
            text_value = row[j].strip()
            if not text_value:
                raise BadRequest(400, f"column '{column}' has a null value")
            if _DECIMAL.fullmatch(text_value) is None:
                raise BadRequest(400, f"column '{column}' has a non-numeric value")
            values.append(float(text_value))
        table.append(values)
    return table


# --- validation --------------------------------------------------------------------------------


def _to_matrix(table: list[Sequence[Any]], columns: Sequence[str]) -> np.ndarray:
    matrix = np.empty((len(table[0]), len(columns)), dtype=np.float64)
    for j, (column, values) in enumerate(zip(columns, table, strict=True)):
        kinds = set(map(type, values))
        if not kinds <= _NUMERIC_TYPES:
            values = _numbers_from_strings(column, values, kinds)
        try:
            matrix[:, j] = values
        except OverflowError:
            raise BadRequest(400, f"column '{column}' has a value out of range") from None
    finite = np.isfinite(matrix)
    if not finite.all():
        column = columns[int(np.argmin(finite.all(axis=0)))]
        raise BadRequest(400, f"column '{column}' has a NaN or infinite value")
    return matrix


def _numbers_from_strings(column: str, values: Sequence[Any], kinds: set[type]) -> list[float]:
    """A column with decimal strings among its numbers, as MLflow converts it; else refused."""
    if _NONE_TYPE in kinds:
        raise BadRequest(400, f"column '{column}' has a null value")
    if not kinds <= _NUMERIC_TYPES | {str}:
        raise BadRequest(400, f"column '{column}' has a non-numeric value")
    numbers = []
    for value in values:
        if type(value) is str:
            if _DECIMAL.fullmatch(value) is None:
                raise BadRequest(400, f"column '{column}' has a non-numeric value")
            value = float(value)
        numbers.append(value)
    return numbers
