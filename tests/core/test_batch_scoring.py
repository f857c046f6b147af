import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_assets.core.batch_scoring import score_batch
from iris_assets.core.landing import simulate_flowers
from iris_assets.core.schema import FEATURE_COLUMNS, INFERENCE_TABLE_SCHEMA

NOW = pd.Timestamp("2026-11-26T08:00:00Z")


@pytest.fixture(scope="module")
def model():
    iris = load_iris(as_frame=True)
    return LogisticRegression(max_iter=300).fit(
        iris.data.set_axis(list(FEATURE_COLUMNS), axis=1), iris.target
    )


def score(raw, model, **kwargs):
    return score_batch(
        raw, model, day="2026-11-26", model_name="m", model_version="3", predicted_at=NOW, **kwargs
    )


def test_a_batch_becomes_inference_rows_in_table_order(model):
    batch = score(simulate_flowers(40, "2026-11-26", seed=1), model)
    assert list(batch.scored.columns) == INFERENCE_TABLE_SCHEMA.names
    assert batch.rows == 40 and batch.rejects.empty
    assert set(batch.scored["model_version"]) == {"3"}
    assert (batch.scored["observed_date"] == "2026-11-26").all()
    assert batch.scored["observed_at"].notna().all()


def test_rows_seen_in_an_earlier_batch_are_duplicates(model):
    raw = simulate_flowers(5, "2026-11-26", seed=2)
    raw["_seen"] = [False, True, False, True, False]
    batch = score(raw, model, seen_column="_seen")
    assert len(batch.scored) == 3 and list(batch.rejects["reason"]) == ["duplicate flower_id"] * 2
    assert "_seen" not in batch.rejects["record"].iloc[0]


def test_a_seen_row_that_is_also_invalid_keeps_its_own_reason(model):
    raw = simulate_flowers(2, "2026-11-26", seed=2).astype(str)
    raw.loc[0, "petal_width_cm"] = "abc"
    raw["_seen"] = [True, False]
    batch = score(raw, model, seen_column="_seen")
    assert list(batch.rejects["reason"]) == ["petal_width_cm is not a number"]


def test_landing_rows_without_observed_at_still_score(model):
    raw = simulate_flowers(3, "2026-11-26", seed=2).drop(columns=["observed_at"])
    batch = score(raw, model)
    assert len(batch.scored) == 3 and batch.scored["observed_at"].isna().all()
    assert np.isin(batch.scored["prediction"], [0, 1, 2]).all()


def stream(chunks, model) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``score_stream`` over ``chunks``: every chunk's scored rows, and every chunk's rejects."""
    from iris_assets.core.batch_scoring import score_stream

    batches = list(
        score_stream(
            iter(chunks),
            model,
            day="2026-11-26",
            model_name="m",
            model_version="3",
            predicted_at=NOW,
        )
    )
    return (
        pd.concat([c.scored for c in batches], ignore_index=True),
        pd.concat([c.rejects for c in batches], ignore_index=True),
    )


def test_streamed_chunks_score_like_one_batch_with_duplicates_across_chunks(model):
    raw = simulate_flowers(100, "2026-11-26", seed=8)
    raw = pd.concat([raw, raw.iloc[[3, 70]]], ignore_index=True)  # repeats land in a later chunk
    whole = score(raw, model)
    streamed, rejected = stream((raw.iloc[i : i + 25] for i in range(0, len(raw), 25)), model)
    assert streamed["flower_id"].tolist() == whole.scored["flower_id"].tolist()
    assert list(rejected["reason"]) == list(whole.rejects["reason"]) == ["duplicate flower_id"] * 2


def test_a_day_of_many_small_files_in_any_order_scores_like_one_batch(model):
    # 64 chunks (files) whose id blocks arrive out of order, so runs are merged, put in gaps
    # and sorted; ids of the first and middle files are sent again in the last ones.
    raw = simulate_flowers(640, "2026-11-26", seed=9)
    order = np.random.default_rng(9).permutation(64)
    files = [raw.iloc[i * 10 : i * 10 + 10] for i in order]
    files += [raw.iloc[[0, 5, 333]], raw.iloc[[639, 320]]]
    whole = score(pd.concat(files, ignore_index=True), model)
    streamed, rejected = stream(files, model)
    assert streamed["flower_id"].tolist() == whole.scored["flower_id"].tolist()
    assert len(streamed) == 640
    assert list(rejected["reason"]) == list(whole.rejects["reason"]) == ["duplicate flower_id"] * 5


def test_seen_ids_follow_the_id_rule():
    from iris_assets.core.batch_scoring import SeenIds

    seen = SeenIds()
    for start in range(0, 50, 10):
        seen.add(np.arange(start, start + 10))
    assert len(seen) == 50
    # Only canonical spellings are ids (core.validation.ID_RULE): "7.0" and 49.0 are not 7 and 49.
    found = seen.contains(
        pd.Series(["7", "7.0", "70", "abc", None, "-1", 49.0, "49"], dtype=object)
    )
    assert found.tolist() == [True, False, False, False, False, False, False, True]


def test_seen_ids_agree_with_a_set_across_runs_ranges_and_merges():
    # Runs that interleave, nest, touch at one id and lie apart, chunks that straddle them, and
    # merges between lookups: what is found is exactly what a set of every added id holds.
    from iris_assets.core.batch_scoring import SeenIds

    rng = np.random.default_rng(14)
    seen, added = SeenIds(), set()
    batches = [
        np.arange(100, 200),
        np.arange(1_000, 1_100)[::-1],
        rng.choice(5_000, size=300, replace=False),
        np.array([199, 1_000, 2**62, 0]),
        rng.integers(0, 2**63 - 1, size=200),
        np.array([2**63 - 1]),
    ]
    for batch in batches:
        probe = np.concatenate([batch, rng.integers(0, 6_000, size=500), [2**63 - 1, 0, 99]])
        found = seen.contains(pd.Series(probe, dtype="int64"))
        assert found.tolist() == [int(i) in added for i in probe]
        seen.add(batch)
        added.update(int(i) for i in batch)
    assert len(seen) == sum(len(b) for b in batches)


def test_seen_ids_agree_with_a_set_whatever_order_the_chunks_come_in():
    # Ascending chunks that lie apart, chunks that land inside, across or between earlier ones,
    # in a gap of a merged run, random ids and single huge ones: found is exactly what a set of
    # every added id holds, and each run stays at least twice the next (so a lookup searches at
    # most about log2(ids) runs).
    from iris_assets.core.batch_scoring import SeenIds

    rng = np.random.default_rng(15)
    for _ in range(200):
        seen, added, count = SeenIds(), set(), 0
        for k in range(int(rng.integers(1, 30))):
            kind = rng.integers(0, 5)
            if kind == 0:
                batch = np.arange(k * 50, k * 50 + int(rng.integers(1, 60)))
            elif kind == 1:
                batch = rng.integers(0, 3_000, size=int(rng.integers(0, 80)))
            elif kind == 2:
                batch = np.arange(int(rng.integers(0, 3_000)), 3_000, int(rng.integers(1, 400)))
            elif kind == 3:
                batch = np.arange(10_000 - k * 50, 10_050 - k * 50)  # descending files
            else:
                batch = np.array([int(rng.integers(-(2**63), 2**63 - 1))])
            probe = np.concatenate([batch, rng.integers(0, 10_100, size=100)])
            found = seen.contains(pd.Series(probe, dtype="int64"))
            assert found.tolist() == [int(i) in added for i in probe]
            seen.add(batch)
            added.update(int(i) for i in batch)
            count += len(batch)
            sizes = [len(r) for r in seen._runs]
            assert all(a >= 2 * b for a, b in zip(sizes, sizes[1:], strict=False)), sizes
            assert all(bool(np.all(r[1:] >= r[:-1])) for r in seen._runs)
        assert len(seen) == count  # every id added is kept, repeats included


def test_a_stray_id_in_every_chunk_of_a_day_of_many_files_keeps_lookups_few():
    # From the review: each chunk (a file) is a narrow block of ascending ids plus one re-sent
    # early id. Merging only runs whose ranges overlap kept one run per file, and every lookup
    # then searched them all (10M ids in 4,000 chunks: 44 s). Runs must stay about log2 many.
    from iris_assets.core.batch_scoring import SeenIds

    seen = SeenIds()
    for k in range(2_000):
        block = np.arange(k * 10 + 1, k * 10 + 11)
        if k:
            found = seen.contains(pd.Series(np.r_[1, block], dtype="int64"))
            assert found.tolist() == [True] + [False] * 10
        seen.add(block)
        assert len(seen._runs) <= 12  # log2(20,000 / 10) + 1
    assert len(seen) == 20_000


def test_runs_that_halve_stay_apart_and_a_run_as_large_absorbs_them():
    # The counter's rule, both ways: merging everything on every add (quadratic in the chunks)
    # and never merging (a lookup per run) both fail here.
    from iris_assets.core.batch_scoring import SeenIds

    seen = SeenIds()
    for start, size in ((0, 4), (100, 2), (200, 1)):
        seen.add(np.arange(start, start + size))
    assert [len(r) for r in seen._runs] == [4, 2, 1]
    seen.add(np.arange(300, 304))  # no smaller than half of 4: carries all the way
    assert [len(r) for r in seen._runs] == [11]
    assert seen.contains(pd.Series([0, 101, 200, 303, 304], dtype="int64")).tolist() == [
        True,
        True,
        True,
        True,
        False,
    ]


def test_an_id_at_either_end_of_a_run_is_found_when_it_is_the_chunks_end_too():
    # From the review: strict bounds in the range test would skip the run and miss these.
    from iris_assets.core.batch_scoring import SeenIds

    seen = SeenIds()
    seen.add(np.array([5, 9]))
    for probe, expected in (
        ([5], [True]),
        ([9], [True]),
        ([9, 12], [True, False]),
        ([1, 5], [False, True]),
    ):
        assert seen.contains(pd.Series(probe, dtype="int64")).tolist() == expected, probe
