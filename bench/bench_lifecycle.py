"""Lifecycle benchmark: `iris demo` in a fresh home against one process doing the same ML work.

Both run on this warm env (installed, byte-compiled), interleaved so that the machine's load falls
on both alike, each a fresh process timed from its start to its exit:

- ``demo``: ``iris demo`` with a fresh ``IRIS_HOME`` and a free serving port: the real Dagster
  graph, Pipes steps, the approval sensor, the local server;
- ``floor``: one Python process with no orchestration: the bundled Iris data MERGEd into a Delta
  table, a seeded logistic regression trained on the train split, logged with signature and input
  example and registered in a fresh sqlite registry, held-out metrics and a confusion-matrix PNG
  logged to the run, aliases ``challenger`` and ``champion``, the model loaded back from the
  registry to predict one flower, 200 simulated flowers scored into a Delta table, labels for
  half of them landed as a file and the day's live accuracy appended to a Delta table (the
  demo's step 6).

It prints the median of ``--runs`` of each (after one warm-up of each that is not counted), the
ratio demo/floor, and where the demo's time went: each Dagster run's steps as Dagster recorded
them (from the last demo's instance) and the time outside any run. ``--profile`` also profiles
one demo with pyinstrument (when installed; cProfile otherwise) and writes the report beside the
results. Puts its run first in bench/results/lifecycle.md, earlier runs below it
(``results_file.record``); exits non-zero when the ratio is above 2.0.
Run it with `make bench-lifecycle`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import record

from iris_assets.version import git_version

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "lifecycle.md"
PROFILE = ROOT / "bench" / "results" / "lifecycle-profile.txt"
MAX_RATIO = 2.0
ROWS = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def floor(home: Path) -> None:
    """The same ML work as the demo, in this one process, with no orchestrator around it."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    home.mkdir(parents=True)
    columns = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    iris = load_iris(as_frame=True)
    features = iris.data.set_axis(columns, axis=1)
    features.insert(0, "flower_id", np.arange(1, len(features) + 1, dtype=np.int64))
    features["species"] = iris.target.astype(np.int64)
    digest = pd.util.hash_pandas_object(features[columns], index=False).to_numpy()
    features["split"] = np.where(digest % 10 < 3, "test", "train")

    # Delta MERGE upsert of the feature table.
    table_path = str(home / "iris_features")
    write_deltalake(table_path, pa.Table.from_pandas(features.head(0), preserve_index=False))
    (
        DeltaTable(table_path)
        .merge(
            pa.Table.from_pandas(features, preserve_index=False),
            predicate="t.flower_id = s.flower_id",
            source_alias="s",
            target_alias="t",
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
    table = DeltaTable(table_path).to_pandas()
    train = table[table["split"] == "train"].sort_values("flower_id")
    test = table[table["split"] == "test"].sort_values("flower_id")

    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(max_iter=500, random_state=42)),
        ]
    ).fit(train[columns], train["species"])

    # Log and register in a fresh sqlite registry.
    uri = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("iris-floor", artifact_location=(home / "art").as_uri())
    name = "iris_model"
    example = train[columns].head(3).reset_index(drop=True)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_params({"C": 1.0, "max_iter": 500, "seed": 42})
        mlflow.log_metric("train_accuracy", float(model.score(train[columns], train["species"])))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            pip_requirements=["scikit-learn", "skops", "pandas", "numpy"],
            serialization_format="skops",
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, "challenger", version)

    # Held-out metrics and the confusion matrix PNG, logged beside the model.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predicted = model.predict(test[columns])
    metrics = {
        "test_accuracy": accuracy_score(test["species"], predicted),
        "test_f1_macro": f1_score(test["species"], predicted, average="macro"),
    }
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
        client.set_model_version_tag(name, version, key, str(value))
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.imshow(confusion_matrix(test["species"], predicted), cmap="Blues")
    png = home / "confusion_matrix.png"
    figure.savefig(png)
    plt.close(figure)
    client.log_artifact(run.info.run_id, str(png), artifact_path="evaluation")
    client.set_model_version_tag(name, version, "approval", "approved")
    client.set_registered_model_alias(name, "champion", version)

    # Load the champion back and predict one flower.
    champion = mlflow.sklearn.load_model(f"models:/{name}@champion")
    champion.predict(pd.DataFrame([[6.1, 2.8, 4.7, 1.2]], columns=columns))

    # Score 200 new flowers into a Delta table.
    rng = np.random.default_rng(0)
    flowers = pd.DataFrame(rng.normal(4.0, 1.5, size=(ROWS, 4)).clip(0.1), columns=columns)
    flowers.insert(0, "flower_id", np.arange(ROWS, dtype=np.int64))
    proba = champion.predict_proba(flowers[columns])
    flowers["prediction"] = proba.argmax(axis=1)
    flowers["probability"] = proba.max(axis=1)
    flowers["model_version"] = version
    write_deltalake(str(home / "iris_inferences"), flowers, mode="append")

    # Labels arrive for half of them (a landing file); live accuracy of the day into a table.
    labels = flowers[["flower_id"]].sample(frac=0.5, random_state=0)
    labels["species"] = rng.integers(0, 3, len(labels))
    labels.to_parquet(home / "labels.parquet", index=False)
    scored = DeltaTable(str(home / "iris_inferences")).to_pandas()
    joined = scored.merge(pd.read_parquet(home / "labels.parquet"), on="flower_id")
    performance = pd.DataFrame(
        {
            "labelled_rows": [len(joined)],
            "scored_rows": [len(scored)],
            "accuracy": [float((joined["prediction"] == joined["species"]).mean())],
            "model_version": [version],
        }
    )
    write_deltalake(str(home / "model_performance"), performance, mode="append")


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return seconds


def demo_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IRIS_", "MLFLOW_", "DAGSTER_"))
    }
    env.update({"IRIS_HOME": str(home), "IRIS_SERVING_PORT": str(free_port())})
    return env


def iris(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("iris")), *args]


def run_demo(home: Path, profile: Path | None = None) -> float:
    env = demo_env(home)
    try:
        if profile is None:
            return timed(iris("demo"), env)
        return timed([sys.executable, __file__, "--profile-demo", str(profile)], env)
    finally:
        subprocess.run(iris("stop"), env=env, capture_output=True, check=False)


TICKS = os.sysconf("SC_CLK_TCK")


def process_kind(command: str) -> str:
    for marker, kind in (
        ("warm_worker", "warm step worker and the steps forked from it"),
        ("iris_assets.serving.server", "model server"),
        ("iris demo", "iris demo (orchestrator: Dagster, sensor, gate, summary)"),
        ("watch_orphans", "Dagster compute-log helpers (tail, watch_orphans)"),
        ("tail -F", "Dagster compute-log helpers (tail, watch_orphans)"),
    ):
        if marker in command:
            return kind
    return command.split(" ")[0].rsplit("/", 1)[-1] or "short-lived processes"


def cpu_of(pid: int) -> tuple[str, float] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return command, (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def tree(roots: set[int], known: set[int]) -> set[int]:
    """``roots`` and their descendants now, plus those seen before (the server outlives the
    demo)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    found, frontier = set(known), list(roots)
    while frontier:
        pid = frontier.pop()
        found.add(pid)
        frontier += [child for child, parent in parents.items() if parent == pid]
    return found


def sample(pids: set[int], seen: dict[int, tuple[str, float]]) -> None:
    for pid in pids:
        if (measured := cpu_of(pid)) is not None:
            command, seconds = measured
            # An exited, unreaped process (a zombie) has no command line left: keep the last.
            seen[pid] = (command or seen.get(pid, ("", 0.0))[0], seconds)


def recorded_servers(home: Path) -> set[int]:
    found = set()
    for state in home.glob("*/serving/server.json"):
        try:
            found.add(int(json.loads(state.read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            continue  # being written
    return found


def demo_cpu(home: Path) -> tuple[float, dict[str, float]]:
    """One demo with the CPU seconds of each of its processes, sampled from /proc (a process
    that lives less than a sample interval is missed, so this is a lower bound)."""
    env = demo_env(home)
    started = time.perf_counter()
    process = subprocess.Popen(iris("demo"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    seen: dict[int, tuple[str, float]] = {}
    pids: set[int] = set()
    try:
        servers: set[int] = set()
        while process.poll() is None:
            # A server forked from the warm worker is reparented to init at once (and has the
            # demo's command line): server.json names it.
            servers |= recorded_servers(home)
            pids = tree({process.pid, *servers}, pids)
            sample(pids, seen)
            time.sleep(0.05)
        wall = time.perf_counter() - started
        sample(pids, seen)  # what is still alive (the server) once more
    finally:
        subprocess.run(iris("stop"), env=env, capture_output=True, check=False)
    kinds: dict[str, float] = {}
    for pid, (command, seconds) in seen.items():
        kind = "model server" if pid in servers else process_kind(command)
        if pid != process.pid and kind.startswith("iris demo"):
            # The worker the demo forks from itself, and its steps, have the demo's command line.
            kind = "warm step worker and the steps forked from it"
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    return wall, kinds


def floor_cpu(home: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_floor(home)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_floor(home: Path) -> float:
    return timed([sys.executable, __file__, "--floor", str(home)], demo_env(home))


def profile_demo(report: Path) -> None:
    """`iris demo` in this process under a profiler (pyinstrument when installed)."""
    from iris_assets.cli import main

    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(main, ["demo"])
        with report.open("w") as out:
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
        return
    profiler = Profiler(interval=0.005)
    with profiler:
        main(["demo"])
    report.write_text(profiler.output_text(unicode=False, color=False, show_all=False))


def step_table(home: Path) -> tuple[list[str], float]:
    """Each Dagster run of the demo in ``home`` and its steps, as Dagster recorded them."""
    code = f"""
import json, os
os.environ["DAGSTER_HOME"] = {str(home / "dev" / "dagster")!r}
import dagster as dg
from dagster._core.events import DagsterEventType as T
instance = dg.DagsterInstance.get()
out = []
for run in reversed(instance.get_runs()):
    events = [e for e in instance.all_logs(run.run_id) if e.dagster_event]
    times = [e.timestamp for e in events]
    steps, started = [], {{}}
    for e in events:
        kind, key = e.dagster_event.event_type, e.dagster_event.step_key
        if kind == T.STEP_START:
            started[key] = e.timestamp
        elif kind in (T.STEP_SUCCESS, T.STEP_FAILURE) and key in started:
            steps.append([key, e.timestamp - started[key]])
    out.append({{"job": run.job_name, "seconds": max(times) - min(times), "steps": steps}})
print(json.dumps(out))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    lines = ["| Dagster run / step | seconds |", "|---|---:|"]
    for run in runs:
        lines.append(f"| **{run['job']}** (first to last event) | **{run['seconds']:.2f}** |")
        lines += [f"| &nbsp; {key} | {seconds:.2f} |" for key, seconds in run["steps"]]
    return lines, sum(run["seconds"] for run in runs)


def machine_load() -> str:
    """``uptime``'s load averages (1, 5, 15 min): the machine is shared, so say how busy it was."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs of each (median)")
    parser.add_argument("--profile", action="store_true", help="also profile one demo")
    parser.add_argument("--floor", metavar="HOME", help=argparse.SUPPRESS)
    parser.add_argument("--profile-demo", metavar="REPORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor:
        floor(Path(args.floor))
        return 0
    if args.profile_demo:
        profile_demo(Path(args.profile_demo))
        return 0

    demos, floors = [], []
    load_before = machine_load()
    with tempfile.TemporaryDirectory(prefix="iris-bench-lifecycle-") as folder:
        for i in range(args.runs + 1):
            demo = run_demo(Path(folder) / f"demo-{i}")
            low = run_floor(Path(folder) / f"floor-{i}")
            print(f"run {i}{' (warm-up)' if i == 0 else ''}: demo {demo:.1f} s, floor {low:.1f} s")
            if i:
                demos.append(demo)
                floors.append(low)
        steps, in_runs = step_table(Path(folder) / f"demo-{args.runs}")
        last_demo = demos[-1]
        cpu_wall, cpu = demo_cpu(Path(folder) / "demo-cpu")
        low_cpu = floor_cpu(Path(folder) / "floor-cpu")
        if args.profile:
            run_demo(Path(folder) / "profiled", profile=PROFILE)
    demo, low = statistics.median(demos), statistics.median(floors)
    ratio = demo / low
    lines = [
        f"Measured under load: {load_before} (before), {machine_load()} (after); 2 cores.",
        "",
        "| what | median s | runs s |",
        "|---|---:|---|",
        f"| `iris demo`, fresh home | {demo:.1f} | {', '.join(f'{d:.1f}' for d in demos)} |",
        f"| floor: the same ML work in one process | {low:.1f} | "
        f"{', '.join(f'{f:.1f}' for f in floors)} |",
        f"| ratio demo / floor | **{ratio:.2f}** | target <= {MAX_RATIO} |",
        "",
        f"Where the last demo's {last_demo:.1f} s went:",
        "",
        *steps,
        f"| outside any run (start-up, imports, sensor, summary) | {last_demo - in_runs:.2f} |",
        "",
        f"CPU seconds by process, one more demo ({cpu_wall:.1f} s wall) and floor (sampled from "
        "/proc: less sensitive to the machine's load than wall time):",
        "",
        "| process | CPU s |",
        "|---|---:|",
        *[
            f"| {kind} | {seconds:.1f} |"
            for kind, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])
        ],
        f"| **demo, all processes** | **{sum(cpu.values()):.1f}** |",
        f"| **floor** | **{low_cpu:.1f}** |",
        f"| CPU ratio demo / floor | {sum(cpu.values()) / low_cpu:.2f} |",
    ]
    table = "\n".join(lines)
    record(RESULTS, "Lifecycle benchmark", table, git_version(ROOT) or "unknown")
    print("\n" + table)
    if args.profile:
        print(f"\nprofile of one demo: {PROFILE}")
    if ratio > MAX_RATIO:
        print(f"\nMISSED: demo/floor {ratio:.2f} > {MAX_RATIO}", file=sys.stderr)
        return 1
    print(f"\ntarget met (demo/floor <= {MAX_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
