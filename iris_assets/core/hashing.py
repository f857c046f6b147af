"""Content hashes that never change: splitmix64 over the float64 bits of a flower's measurements.

They decide things that must be the same on every machine, in every process and on both engines:
the id of a flower that arrived without one (``core.identity``), its side of the train/test split
(``core.split``) and whether it is in the drift sample. Python's ``hash()`` is salted per process,
so it is never used for these.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 of each value: uint64 in, well-spread uint64 out."""
    z = np.asarray(values).astype(np.uint64) + _GOLDEN
    # Unsigned overflow is the point of the mixing: arithmetic is modulo 2**64.
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def float_bits(values: np.ndarray) -> np.ndarray:
    """The IEEE-754 bits of each float64 as uint64; -0.0 counts as 0.0."""
    return (np.asarray(values, dtype=np.float64) + 0.0).view(np.uint64)


def content_hash(columns: list[np.ndarray]) -> np.ndarray:
    """One uint64 per row from equal-length uint64 columns, chained in order through mix64."""
    rows = len(columns[0]) if columns else 0
    digest = np.zeros(rows, dtype=np.uint64)
    for column in columns:
        digest = mix64(digest ^ np.asarray(column, dtype=np.uint64))
    return digest


def measurement_hash(measurements: np.ndarray) -> np.ndarray:
    """The content hash of each row of an (n, 4) float64 array of measurements in cm."""
    values = np.asarray(measurements, dtype=np.float64)
    if values.ndim != 2:  # (n, 4) already for n = 0 too, where reshape(0, -1) is undefined
        values = values.reshape(len(measurements), -1)
    return content_hash([float_bits(values[:, i]) for i in range(values.shape[1])])
