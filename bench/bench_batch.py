"""Batch-inference benchmark: the scoring step against the raw ceiling, in the same run.

For each size (1e5, 1e6, 1e7 rows by default) it simulates one landing day, then runs in fresh
subprocesses, so peak memory is each one's own:

- ``raw``: the ceiling with no pipeline around it: scikit-learn ``predict_proba`` on a numpy
  array of the same rows, an Arrow table of the results and one Delta append;
- ``step``: the local scoring path of the ``inference_table`` step (``score_day_locally``):
  chunked read of the landing files, validation, scoring, one streamed Delta commit, rejects,
  and the aggregates the checks read back.

It prints rows/s, the ratio step/raw and the step's peak RSS, writes bench/results/batch.md, and
exits non-zero if the largest size misses the ratio (0.5) or the memory bound (1.5 GB).
Run it with `make bench-batch` (or `python bench/bench_batch.py --rows 100000 1000000`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "batch.md"
MIN_RATIO = 0.5
MAX_PEAK_MB = 1536
DAY = "2026-11-26"


def raw_ceiling(settings, model) -> tuple[int, float]:
    """predict_proba on numpy, an Arrow table of the same inference rows, one Delta append."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from deltalake import write_deltalake

    from iris_assets.core.landing import LandingArea
    from iris_assets.core.schema import FEATURE_COLUMNS, SPECIES_NAMES, UTC_TIMESTAMP

    files = LandingArea(settings.landing_dir).batch_files(DAY)
    day = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    started = time.perf_counter()  # the ceiling starts from rows already in memory
    features = day[list(FEATURE_COLUMNS)].to_numpy(dtype="float64")
    proba = model.predict_proba(features)
    best = proba.argmax(axis=1)
    rows = len(best)

    def text(codes, values):
        return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(values)).cast(pa.string())

    constant = np.zeros(rows, dtype=np.int8)
    now = pd.Timestamp.now(tz="UTC").value // 1000
    table = pa.table(
        {
            "flower_id": day["flower_id"].to_numpy(),
            "observed_date": text(constant, [DAY]),
            "observed_at": pa.array(day["observed_at"]).cast(UTC_TIMESTAMP),
            **{c: features[:, i] for i, c in enumerate(FEATURE_COLUMNS)},
            "prediction": model.classes_[best].astype(np.int64),
            "species_name": text(best.astype(np.int8), list(SPECIES_NAMES)),
            "probability": proba[np.arange(rows), best],
            "model_name": text(constant, [settings.model_name]),
            "model_version": text(constant, ["1"]),
            "predicted_at": pa.array(np.full(rows, now), UTC_TIMESTAMP),
        }
    )
    write_deltalake(str(settings.env_home / "raw_ceiling"), table, mode="append")
    return table.num_rows, time.perf_counter() - started


def scoring_step(settings, model) -> tuple[int, float]:
    """The local scoring path of the inference_table step, from landing files to checks."""
    from iris_assets.core.registry import VersionInfo
    from iris_assets.core.tables import DeltaTableStore
    from iris_assets.steps.day_scoring import score_day_locally

    champion = VersionInfo(settings.model_name, "1", {}, ("champion",), None, None)
    started = time.perf_counter()
    store = DeltaTableStore(settings.warehouse)
    result = score_day_locally(store, settings, DAY, champion, model)
    return result.rows_scored + result.rows_rejected, time.perf_counter() - started


def child(mode: str, home: str, model_path: str) -> None:
    """One measurement in this (fresh) process; prints rows, seconds and peak RSS as JSON."""
    import pickle

    from iris_assets.settings import load_settings

    model = pickle.loads(Path(model_path).read_bytes())
    settings = load_settings({"IRIS_HOME": home})
    rows, seconds = (raw_ceiling if mode == "raw" else scoring_step)(settings, model)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak_mb}))


def train_model(path: Path) -> None:
    import pickle

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from iris_assets.core.schema import FEATURE_COLUMNS

    iris = load_iris(as_frame=True)
    features = iris.data.set_axis(list(FEATURE_COLUMNS), axis=1)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
        features, iris.target
    )
    path.write_bytes(pickle.dumps(model))


def simulate(home: Path, rows: int) -> float:
    from iris_assets.core.landing import LandingArea, simulate_flowers
    from iris_assets.settings import load_settings

    settings = load_settings({"IRIS_HOME": str(home)})
    started = time.perf_counter()
    landing = LandingArea(settings.landing_dir)
    chunk = 2_000_000  # files of at most 2M rows, as collectors would drop them
    for start in range(0, rows, chunk):
        landing.write_batch(simulate_flowers(min(chunk, rows - start), DAY, seed=start), DAY)
    return time.perf_counter() - started


def run_child(mode: str, home: Path, model_path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(home), str(model_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument(
        "--child", nargs=3, metavar=("MODE", "HOME", "MODEL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0

    lines = [
        "| rows | simulate s | raw rows/s | step rows/s | step/raw | step peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    failures = []
    with tempfile.TemporaryDirectory(prefix="iris-bench-batch-") as folder:
        model_path = Path(folder) / "model.pkl"
        train_model(model_path)
        for rows in args.rows:
            home = Path(folder) / f"home-{rows}"
            simulated = simulate(home, rows)
            raw = run_child("raw", home, model_path)
            step = run_child("step", home, model_path)
            raw_rate, step_rate = raw["rows"] / raw["seconds"], step["rows"] / step["seconds"]
            ratio = step_rate / raw_rate
            lines.append(
                f"| {rows:,} | {simulated:.1f} | {raw_rate:,.0f} | {step_rate:,.0f} | "
                f"{ratio:.2f} | {step['peak_mb']:,.0f} |"
            )
            print(lines[-1], flush=True)
            if rows == max(args.rows):
                if ratio < MIN_RATIO:
                    failures.append(f"{rows:,} rows: step/raw {ratio:.2f} < {MIN_RATIO}")
                if step["peak_mb"] > MAX_PEAK_MB:
                    failures.append(f"{rows:,} rows: peak {step['peak_mb']:.0f} MB > {MAX_PEAK_MB}")
    table = "\n".join(lines)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# Batch inference benchmark\n\n{table}\n")
    print("\n" + table)
    if failures:
        print("\nMISSED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"\nall targets met (ratio >= {MIN_RATIO}, peak <= {MAX_PEAK_MB} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
