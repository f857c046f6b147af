"""Batch-inference benchmark: the scoring step against the raw ceiling, in the same run.

For each size (1e5, 1e6, 1e7 rows by default) it simulates one landing day, then runs in fresh
subprocesses, so peak memory is each one's own:

- ``raw``: the ceiling with no pipeline around it: scikit-learn ``predict_proba`` on a numpy
  array of the same rows, an Arrow table of the results and one Delta append;
- ``step``: the local scoring path of the ``inference_table`` step (``score_day_locally``):
  chunked read of the landing files, validation, scoring, one streamed Delta commit, rejects,
  and the aggregates the checks read back.

It prints rows/s, the ratio step/raw and the step's peak RSS, puts them first in
bench/results/batch.md (earlier runs stay below: ``results_file.record``), and exits non-zero
if the largest size misses the ratio (0.5) or the memory bound (1.5 GB).

For the largest size it then measures what a user waits for, in the same run:

- ``floor``: a fresh process that streams the day's Parquet files in row batches, predicts on
  numpy and appends everything to a Delta table in one commit (reading included);
- ``dagster``: ``dagster asset materialize --select inference_table --partition DAY`` against the
  project's definitions in a home with a trained champion: the step's duration as Dagster records
  it (STEP_START to STEP_SUCCESS) and the peak RSS of every process of the run (the CLI, the warm
  step worker and the step, sampled from /proc).

It exits non-zero if the step takes more than 2.0x the floor or any process peaks over 1.5 GB.
Run it with `make bench-batch` (or `python bench/bench_batch.py --rows 100000 1000000`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from results_file import record

from iris_assets.version import git_version

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "batch.md"
MIN_RATIO = 0.5
MAX_PEAK_MB = 1536
MAX_STEP_OVER_FLOOR = 2.0
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


def stream_floor(settings, model) -> tuple[int, float]:
    """Stream the day's Parquet in row batches, numpy predict, one Delta append of it all."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import write_deltalake
    from threadpoolctl import threadpool_limits

    from iris_assets.core.landing import LandingArea
    from iris_assets.core.schema import FEATURE_COLUMNS, SPECIES_NAMES, UTC_TIMESTAMP

    started = time.perf_counter()  # reading is part of the floor
    files = LandingArea(settings.landing_dir).batch_files(DAY)
    now = pa.scalar(time.time_ns() // 1000, UTC_TIMESTAMP)
    species = pa.array(list(SPECIES_NAMES))
    schema = pa.schema(
        [
            ("flower_id", pa.int64()),
            ("observed_date", pa.string()),
            ("observed_at", UTC_TIMESTAMP),
            *[(c, pa.float64()) for c in FEATURE_COLUMNS],
            ("prediction", pa.int64()),
            ("species_name", pa.string()),
            ("probability", pa.float64()),
            ("model_version", pa.string()),
            ("predicted_at", UTC_TIMESTAMP),
        ]
    )

    def batches():
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=250_000):
                features = np.column_stack(
                    [batch.column(c).to_numpy() for c in FEATURE_COLUMNS]
                ).astype("float64", copy=False)
                proba = model.predict_proba(features)
                best = proba.argmax(axis=1)
                rows = len(best)
                yield pa.record_batch(
                    [
                        batch.column("flower_id").cast(pa.int64()),
                        pa.array([DAY] * rows, pa.string()),
                        batch.column("observed_at").cast(UTC_TIMESTAMP),
                        *[pa.array(features[:, i]) for i in range(len(FEATURE_COLUMNS))],
                        pa.array(model.classes_[best].astype(np.int64)),
                        species.take(pa.array(best)),
                        pa.array(proba[np.arange(rows), best]),
                        pa.array(["1"] * rows, pa.string()),
                        pa.array(np.full(rows, now.value), UTC_TIMESTAMP),
                    ],
                    schema=schema,
                )

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    # One BLAS thread, as the step scores: faster here too (about 8.7 -> 7.7 s per 10M rows).
    with threadpool_limits(limits=1, user_api="blas"):
        write_deltalake(str(settings.env_home / "stream_floor"), reader, mode="append")
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    return rows, time.perf_counter() - started


def child(mode: str, home: str, model_path: str) -> None:
    """One measurement in this (fresh) process; prints rows, seconds and peak RSS as JSON."""
    import pickle

    from iris_assets.settings import load_settings

    model = pickle.loads(Path(model_path).read_bytes())
    settings = load_settings({"IRIS_HOME": home})
    measure = {"raw": raw_ceiling, "step": scoring_step, "floor": stream_floor}[mode]
    rows, seconds = measure(settings, model)
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


def dagster_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IRIS_", "MLFLOW_", "DAGSTER_"))
    }
    dagster_home = home / "dev" / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**env, "IRIS_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}


def materialize(home: Path, selection: str, partition: str | None = None) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "iris_assets.definitions",
        "--select",
        selection,
        *(["--partition", partition] if partition else []),
    ]
    return subprocess.Popen(
        command,
        env=dagster_env(home),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen, what: str) -> None:
    output, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{what} failed:\n{output[-4000:]}")


def with_champion(home: Path) -> None:
    """Train through the real graph, then make that version the champion (no server needed)."""
    finish(materialize(home, "iris_features,challenger_model"), "training")
    code = (
        "from iris_assets.core.registry import ModelRegistry\n"
        "from iris_assets.settings import load_settings\n"
        "models = ModelRegistry(load_settings())\n"
        "models.set_alias('champion', models.challenger().version)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=dagster_env(home), check=True)


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        found.append(pid)
        frontier += [child for child, parent in parents.items() if parent == pid]
    return found


class PeakMemory:
    """The peak RSS (VmHWM) of every process under ``root``, sampled until stopped."""

    def __init__(self, root: int):
        self.root, self.peaks, self._stop = root, {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for pid in descendants(self.root):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        mb = int(line.split()[1]) / 1024
                        name = command.decode(errors="replace").strip()[:90]
                        key = (pid, name)
                        self.peaks[key] = max(self.peaks.get(key, 0.0), mb)
            time.sleep(0.05)

    def stop(self) -> dict[tuple[int, str], float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def step_seconds(home: Path, step: str) -> float:
    """The duration Dagster recorded for ``step`` in the latest run of ``home``'s instance."""
    code = f"""
import dagster as dg
from dagster._core.events import DagsterEventType as T
instance = dg.DagsterInstance.get()
[run] = instance.get_runs(limit=1)
times = {{}}
for e in instance.all_logs(run.run_id):
    if e.dagster_event and e.dagster_event.step_key == {step!r}:
        times[e.dagster_event.event_type] = e.timestamp
print(times[T.STEP_SUCCESS] - times[T.STEP_START])
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dagster_env(home),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def through_dagster(home: Path) -> dict:
    started = time.perf_counter()
    process = materialize(home, "inference_table", DAY)
    memory = PeakMemory(process.pid)
    try:
        finish(process, "inference_table")
    finally:
        peaks = memory.stop()
    wall = time.perf_counter() - started
    return {"step": step_seconds(home, "inference_table"), "wall": wall, "peaks": peaks}


def process_name(command: str) -> str:
    for marker, name in (
        ("warm_worker", "warm step worker and the step forked from it"),
        ("iris_assets.steps.score", "score step (cold)"),
        ("dagster asset materialize", "dagster CLI (orchestrator)"),
        ("multiprocessing.spawn", "the run's step process (multiprocess executor)"),
        ("multiprocessing.resource_tracker", "multiprocessing resource tracker"),
        ("watch_orphans", "Dagster's orphan watcher"),
        ("tail -F", "Dagster's compute-log tail"),
    ):
        if marker in command:
            return name
    return command[:60]


def dagster_section(folder: Path, model_path: Path, rows: int, repeat: int) -> tuple[list, list]:
    """The floor and the real materialization, alternated ``repeat`` times; (lines, failures)."""
    home = Path(folder) / f"home-{rows}"
    with_champion(home)
    floors, steps, walls, peaks = [], [], [], {}
    for _ in range(repeat):
        floors.append(run_child("floor", home, model_path)["seconds"])
        measured = through_dagster(home)
        steps.append(measured["step"])
        walls.append(measured["wall"])
        for (_, command), mb in measured["peaks"].items():
            name = process_name(command)
            peaks[name] = max(peaks.get(name, 0.0), mb)
        print(f"floor {floors[-1]:.1f} s, step {steps[-1]:.1f} s (wall {walls[-1]:.1f} s)")
    floor, step = statistics.median(floors), statistics.median(steps)
    ratio = step / floor
    lines = [
        "",
        f"`inference_table` for a {rows:,}-row day through Dagster (median of {repeat}):",
        "",
        "| what | median s | runs s |",
        "|---|---:|---|",
        f"| floor: stream Parquet, numpy predict, one Delta append | {floor:.1f} | "
        f"{', '.join(f'{v:.1f}' for v in floors)} |",
        f"| step as Dagster records it | {step:.1f} | {', '.join(f'{v:.1f}' for v in steps)} |",
        f"| `dagster asset materialize` wall | {statistics.median(walls):.1f} | "
        f"{', '.join(f'{v:.1f}' for v in walls)} |",
        f"| step / floor | **{ratio:.2f}** | target <= {MAX_STEP_OVER_FLOOR} |",
        "",
        "| process | peak RSS MB |",
        "|---|---:|",
        *[f"| {name} | {mb:,.0f} |" for name, mb in sorted(peaks.items())],
    ]
    failures = []
    if ratio > MAX_STEP_OVER_FLOOR:
        failures.append(f"step/floor {ratio:.2f} > {MAX_STEP_OVER_FLOOR}")
    for name, mb in peaks.items():
        if mb > MAX_PEAK_MB:
            failures.append(f"{name} peaked at {mb:.0f} MB > {MAX_PEAK_MB}")
    return lines, failures


def machine_load() -> str:
    """``uptime``'s load averages (1, 5, 15 min): the machine is shared, so say how busy it was."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="floor and Dagster runs (median)")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODE", "HOME", "MODEL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0

    load_before = machine_load()
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
        more, missed = dagster_section(Path(folder), model_path, max(args.rows), args.repeat)
        lines += more
        failures += missed
    lines = [
        f"Measured under load: {load_before} (before), {machine_load()} (after); 2 cores.",
        "",
        *lines,
    ]
    table = "\n".join(lines)
    record(RESULTS, "Batch inference benchmark", table, git_version(ROOT) or "unknown")
    print("\n" + table)
    if failures:
        print("\nMISSED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(
        f"\nall targets met (step/raw >= {MIN_RATIO}, Dagster step <= {MAX_STEP_OVER_FLOOR}x the "
        f"floor, every process <= {MAX_PEAK_MB} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
