"""Review 13: a labelled_at that is no time, or in the future, is refused with a reason.

It used to be replaced by the run's time without a word: "yesterday" or year 2999 read as a
label given just now. A missing labelled_at (the column is optional) is still the run's time.
"""

import pandas as pd

from iris_assets.core.labels import read_labelled_day
from iris_assets.core.landing import LandingArea
from iris_assets.core.schema import FEATURE_COLUMNS

DAY = "2026-11-22"


def scored(ids):
    return pd.DataFrame(
        {
            "flower_id": pd.Series(ids, dtype="int64"),
            **{c: [1.0] * len(ids) for c in FEATURE_COLUMNS},
            "prediction": pd.Series([0] * len(ids), dtype="int64"),
            "model_version": "1",
        }
    )


def test_a_bad_labelled_at_is_rejected_and_a_missing_one_is_now(tmp_path):
    raw = pd.DataFrame(
        {
            "flower_id": ["1", "2", "3", "4", "x", "5", "6"],
            "species": ["setosa"] * 7,
            "labelled_at": [
                "2026-11-22T10:00:00Z",
                "yesterday",
                "2999-01-01T00:00:00Z",
                "",
                "nope",
                "2100-01-01",
                "2026-11-22 10:00:00+01:00",
            ],
        }
    )
    LandingArea(tmp_path).write_batch(raw, DAY, fmt="csv")
    before = pd.Timestamp.now(tz="UTC")
    day = read_labelled_day(tmp_path, DAY, scored([1, 2, 3, 4, 5, 6]))
    assert day.labelled["flower_id"].tolist() == [1, 4, 6]
    stamps = day.labelled.set_index("flower_id")["labelled_at"]
    assert stamps[1] == pd.Timestamp("2026-11-22T10:00:00Z")
    assert stamps[6] == pd.Timestamp("2026-11-22T09:00:00Z")
    assert stamps[4] >= before, "a blank labelled_at is the run's time"
    reasons = dict(zip(day.rejects["flower_id"], day.rejects["reason"], strict=True))
    assert reasons["2"] == (
        "labelled_at 'yesterday' is not a past ISO 8601 time (e.g. 2026-11-22T14:05:00Z)"
    )
    assert reasons["3"] == "labelled_at 2999-01-01T00:00:00+00:00 is in the future"
    assert reasons["5"].endswith("is in the future")
    assert reasons["x"].startswith("flower_id is not") and "labelled_at 'nope'" in reasons["x"]
    assert len(day.labelled) + len(day.rejects) == len(raw) == day.landing_rows


def test_a_refused_time_does_not_hide_a_good_label_of_the_same_flower(tmp_path):
    landing = LandingArea(tmp_path)
    landing.write_batch(
        pd.DataFrame({"flower_id": ["1"], "species": ["setosa"], "labelled_at": ["soon"]}),
        DAY,
        fmt="csv",
    )
    landing.write_batch(pd.DataFrame({"flower_id": [1], "species": ["virginica"]}), DAY)
    day = read_labelled_day(tmp_path, DAY, scored([1]))
    assert day.labelled["species_name"].tolist() == ["virginica"]
    assert day.rejects["reason"].tolist() == [
        "labelled_at 'soon' is not a past ISO 8601 time (e.g. 2026-11-22T14:05:00Z)"
    ]
