"""Benchmark: the serving request parser of this checkout against earlier commits', same run.

Owns ``make bench-parse``: it loads ``iris_assets/serving/protocol.py`` of each ``--commit``
(``git show``) beside this checkout's, and times ``parse_request`` on the body shapes clients
send (1 to 1,000 ``dataframe_records``, a 1,000-row ``dataframe_split``) in this process: the
best of 5 CPU-time (``time.process_time``) runs of each, so the load of a shared machine moves it
little. ``make bench-serving`` measures the whole server, but only 1-row requests against the
earlier server; a parser change that costs batches (a body decoded twice, say) shows here. It
exits 1 when this checkout is more than ``--max-ratio`` (1.10) times slower than any commit on
any shape.

    .venv/bin/python bench/bench_parse.py [--commit 9b77266 ...] [--max-ratio 1.10]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
PROTOCOL = "iris_assets/serving/protocol.py"
# The session-1 server (a7c71b6) and the last one before the short cut (9b77266).
DEFAULT_COMMITS = ("a7c71b6", "9b77266")
RECORD_COUNTS = (1, 4, 16, 17, 65, 1000)
RUNS = 5


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bodies(columns: list[str]) -> dict[str, bytes]:
    row = dict(zip(columns, [5.1, 3.5, 1.4, 0.2], strict=True))
    shapes = {f"{n} records": {"dataframe_records": [row] * n} for n in RECORD_COUNTS}
    shapes["1000-row split"] = {
        "dataframe_split": {"columns": columns, "data": [list(row.values())] * 1000}
    }
    return {name: json.dumps(document).encode() for name, document in shapes.items()}


def cpu_per_call(module: ModuleType, body: bytes, columns: list[str]) -> float:
    calls = max(20, 20_000 * 100 // len(body))
    best = float("inf")
    for _ in range(RUNS):
        started = time.process_time()
        for _ in range(calls):
            module.parse_request(body, "application/json", columns)
        best = min(best, (time.process_time() - started) / calls)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", action="append", dest="commits")
    parser.add_argument("--max-ratio", type=float, default=1.10)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from iris_assets.core.schema import FEATURE_COLUMNS

    columns = list(FEATURE_COLUMNS)
    modules = {"this checkout": load(REPO / PROTOCOL, "protocol_here")}
    with tempfile.TemporaryDirectory() as tmp:
        for commit in args.commits or DEFAULT_COMMITS:
            source = subprocess.run(
                ["git", "-C", str(REPO), "show", f"{commit}:{PROTOCOL}"],
                capture_output=True,
                text=True,
            )
            if source.returncode != 0:
                print(
                    f"bench-parse: commit {commit} is not in this clone's history", file=sys.stderr
                )
                return 2
            path = Path(tmp) / f"protocol_{commit}.py"
            path.write_text(source.stdout)
            modules[commit] = load(path, f"protocol_{commit}")
        names = list(modules)
        print("| body | " + " | ".join(f"{n} (us)" for n in names) + " | worst ratio |")
        print("|---|" + "---:|" * (len(names) + 1))
        missed = []
        for shape, body in bodies(columns).items():
            costs = {n: cpu_per_call(m, body, columns) for n, m in modules.items()}
            here = costs["this checkout"]
            worst = max(here / cost for n, cost in costs.items() if n != "this checkout")
            cells = " | ".join(f"{costs[n] * 1e6:.1f}" for n in names)
            print(f"| {shape} | {cells} | {worst:.2f}x |")
            if worst > args.max_ratio:
                missed.append(f"{shape}: {worst:.2f}x")
    for item in missed:
        print(f"MISSED: {item} (> {args.max_ratio:.2f}x)", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
