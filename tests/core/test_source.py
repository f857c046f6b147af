import numpy as np
import pandas as pd
import pytest

from iris_assets.core.identity import DERIVED_ID_BASE, derived_ids
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.core.source import SourceError, load_source
from iris_assets.core.validation import validate_measurements


def test_bundled_iris():
    iris = load_source()
    assert list(iris.columns) == ["flower_id", *FEATURE_COLUMNS, "species"]
    assert len(iris) == 150
    assert iris["flower_id"].tolist() == list(range(1, 151))
    assert sorted(iris["species"].unique()) == [0, 1, 2]
    assert iris["species"].value_counts().tolist() == [50, 50, 50]
    assert iris["flower_id"].dtype == np.int64 and iris["species"].dtype == np.int64
    assert (iris[list(FEATURE_COLUMNS)].dtypes == np.float64).all()
    assert iris.iloc[0][list(FEATURE_COLUMNS)].tolist() == [5.1, 3.5, 1.4, 0.2]
    checked = validate_measurements(iris, require_label=True)
    assert len(checked.valid) == 150 and checked.rejects.empty
    assert load_source("").equals(iris)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".CSV"])
def test_file_round_trip(tmp_path, suffix):
    iris = load_source()
    path = tmp_path / f"iris{suffix}"
    if suffix.lower() == ".csv":
        iris.to_csv(path, index=False)
    else:
        iris.to_parquet(path, index=False)
    loaded = load_source(str(path))
    assert list(loaded.columns) == list(iris.columns) and len(loaded) == 150
    checked = validate_measurements(loaded, require_label=True)
    assert checked.rejects.empty
    pd.testing.assert_frame_equal(checked.valid.drop(columns=["species_name"]), iris)


def test_csv_values_come_back_raw(tmp_path):
    path = tmp_path / "field.csv"
    path.write_text(
        "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,species\n"
        "5.1,3.5,1.4,0.2,setosa\n"
        "abc,3.0,1.4,-0.2,Versicolor\n"
        "6.3,3.3,6.0,2.5,\n"
    )
    raw = load_source(path)
    assert "flower_id" not in raw.columns, "ids are never taken from row positions"
    assert raw["sepal_length_cm"].tolist() == ["5.1", "abc", "6.3"]
    assert raw["species"].tolist() == ["setosa", "Versicolor", ""]
    checked = validate_measurements(raw, require_label=True, derive_missing_ids=True)
    expected = derived_ids(np.array([[5.1, 3.5, 1.4, 0.2]]), np.array([0]))
    assert checked.valid["flower_id"].tolist() == expected.tolist()
    assert checked.valid["flower_id"].item() >= DERIVED_ID_BASE
    assert checked.rejects["reason"].tolist() == [
        "sepal_length_cm is not a number; petal_width_cm must be positive",
        "species is missing",
    ]
    strict = validate_measurements(raw, require_label=True)
    assert set(strict.rejects["reason"].str.split("; ").str[0]) == {"missing column: flower_id"}


def test_derived_ids_depend_on_content_only(tmp_path):
    iris = load_source().drop(columns=["flower_id"])
    ids = validate_measurements(iris, require_label=True, derive_missing_ids=True)
    # Flowers 102 and 143 are identical rows: one flower, the repeat is a duplicate.
    assert ids.rejects["reason"].tolist() == ["duplicate flower_id"]
    reordered = validate_measurements(
        iris.iloc[::-1].reset_index(drop=True), require_label=True, derive_missing_ids=True
    )
    assert set(reordered.valid["flower_id"]) == set(ids.valid["flower_id"])
    by_id = ids.valid.set_index("flower_id")
    assert by_id.loc[reordered.valid["flower_id"], "sepal_length_cm"].tolist() == (
        reordered.valid["sepal_length_cm"].tolist()
    )
    relabelled = derived_ids(np.array([[5.1, 3.5, 1.4, 0.2]]), np.array([1]))
    assert relabelled[0] not in set(ids.valid["flower_id"])


def test_explicit_ids_in_the_derived_range_are_refused():
    iris = load_source().head(2).assign(flower_id=[DERIVED_ID_BASE, DERIVED_ID_BASE - 1])
    checked = validate_measurements(iris, require_label=True, id_below=DERIVED_ID_BASE)
    assert checked.valid["flower_id"].tolist() == [DERIVED_ID_BASE - 1]
    assert "reserved for ids derived from content" in checked.rejects["reason"].item()


def test_source_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceError, match="nope.csv"):
        load_source(missing)
    odd = tmp_path / "iris.xlsx"
    odd.write_text("x")
    with pytest.raises(SourceError, match=r"iris\.xlsx.*unknown extension"):
        load_source(odd)
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(SourceError, match="broken.parquet"):
        load_source(broken)
