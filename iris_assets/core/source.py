"""Where the labelled training data comes from: the Iris data bundled with scikit-learn, or a file.

The bundled data is returned clean and typed. A CSV or Parquet file is returned as it is (CSV
values as text, nothing dropped or coerced): checking it is validation's job, so a bad row is
quarantined with a reason instead of failing the load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from iris_assets.core.landing import nullable_integers
from iris_assets.core.schema import FEATURE_COLUMNS, LABEL, PRIMARY_KEY

BUNDLED_SOURCE = "sklearn:iris"
SUFFIXES = (".csv", ".parquet")


class SourceError(ValueError):
    """The source cannot be read: no such file, an unknown format, or unreadable content."""


def load_bundled_iris() -> pd.DataFrame:
    """The 150 Iris flowers: flower_id 1..150, the four measurements in cm, species 0..2."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    frame = iris.data.copy()
    # sklearn names the columns "sepal length (cm)" etc., in the order of FEATURE_COLUMNS.
    frame.columns = list(FEATURE_COLUMNS)
    frame = frame.astype("float64")
    frame.insert(0, PRIMARY_KEY, np.arange(1, len(frame) + 1, dtype=np.int64))
    frame[LABEL] = iris.target.to_numpy(dtype=np.int64)
    return frame.reset_index(drop=True)


def load_source(path: str | Path | None = None) -> pd.DataFrame:
    """The labelled rows of the source: bundled Iris for None (or a blank path), else the file.

    A file without a ``flower_id`` column is returned without one: ingestion derives each
    row's id from its content (``core.identity``), never from its position in the file.
    """
    if path is None or not str(path).strip():
        return load_bundled_iris()
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise SourceError(
            f"source {file} is not a .csv or .parquet file (unknown extension {suffix!r})"
        )
    if not file.is_file():
        raise SourceError(f"source {file} does not exist or is not a file")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(file, dtype=str, keep_default_na=False)
        else:
            table = pq.read_table(file, use_threads=False)
            frame = table.to_pandas(types_mapper=nullable_integers)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except Exception as exc:
        raise SourceError(f"source {file} cannot be read as {suffix[1:]}: {exc}") from exc
    return frame.reset_index(drop=True)
