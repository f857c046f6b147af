"""Where the inference_table step's time goes, phase by phase, in one fresh process.

Runs what ``steps/score.py`` does for one day of a home that has a champion and landing files
(minus the Pipes transport), with the phases' functions wrapped in timers; prints one JSON line
of wall and CPU seconds (``time.process_time``: every thread) per phase. ``--warm`` first
imports what the warm worker preloads for the score step, untimed, as a step forked from it
finds them. Used for the per-phase table in docs/batch.md:

    python bench/score_phases.py HOME [--warm] [--read-ahead] [--day 2026-11-26]

The step reads the next chunk while it scores the current one (``core.read_ahead``) and loads
the model while it inspects the files; here both run in line, so that each phase's CPU seconds
are its own, unless ``--read-ahead`` (then phases overlap and their CPU counts each other's).
"""

# ruff: noqa: E402  (the imports are among what is timed)
import json
import sys
import time

WARM = "--warm" in sys.argv
if WARM:
    from iris_assets.steps import warm_worker

    warm_worker.preload(warm_worker.STEP_IMPORTS["iris_assets.steps.score"])
T0W, T0C = time.perf_counter(), time.process_time()
acc = {}


def add(name, w, c):
    a = acc.setdefault(name, [0.0, 0.0])
    a[0] += w
    a[1] += c


class phase:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()

    def __exit__(self, *a):
        add(self.name, time.perf_counter() - self.w, time.process_time() - self.c)


def wrap(mod, attr, name):
    f = getattr(mod, attr)

    def w(*a, **k):
        with phase(name):
            return f(*a, **k)

    setattr(mod, attr, w)


def wrap_iter(mod, attr, name):
    f = getattr(mod, attr)

    def w(*a, **k):
        it = iter(f(*a, **k))
        while True:
            with phase(name):
                try:
                    x = next(it)
                except StopIteration:
                    return
            yield x

    setattr(mod, attr, w)


home = sys.argv[1]
day = sys.argv[sys.argv.index("--day") + 1] if "--day" in sys.argv else "2026-11-26"
with phase("imports: step modules (pandas, pyarrow, deltalake)"):
    import iris_assets.steps.score as score_mod
    from iris_assets.core.registry import configure_mlflow
    from iris_assets.settings import load_settings
import iris_assets.core.batch_scoring as bs
import iris_assets.steps.day_scoring as ds

settings = load_settings({"IRIS_HOME": home})
configure_mlflow(settings)
with phase("model: registry lookup (champion alias)"):
    champion, load = score_mod.champion_loader(settings)
with phase("model: load (skops, or MLflow when the registry is not one it reads)"):
    model = load()
wrap(ds, "scan_day_files", "landing: list + inspect files (read through once, count rows)")
if "--read-ahead" not in sys.argv:
    # The step reads the next chunk in a thread (core.read_ahead); CPU time is the process's,
    # so phases that overlap would each count the other's: read in line unless asked.
    ds.read_ahead = lambda items, depth=1: iter(items)
wrap_iter(ds, "iter_files", "read: Parquet batches -> pandas")
wrap(bs, "validate_measurements", "validate")
wrap(bs, "predict_frame", "predict")
SC = bs.score_batch


def sb(*a, **k):
    w, c = time.perf_counter(), time.process_time()
    before = {n: list(v) for n, v in acc.items()}
    r = SC(*a, **k)
    dw, dc = time.perf_counter() - w, time.process_time() - c
    for n in ("validate", "predict"):
        b = before.get(n, [0, 0])
        dw -= acc[n][0] - b[0]
        dc -= acc[n][1] - b[1]
    add("build inference frame (observed_at parse, columns)", dw, dc)
    return r


bs.score_batch = sb
wrap(bs.SeenIds, "contains", "duplicates across chunks (SeenIds)")
wrap(bs.SeenIds, "add", "duplicates across chunks (SeenIds)")
wrap(ds.Tally, "add", "tally: counts + drift sample")
wrap(ds, "rejects_rows", "rejects: rows + spool")
wrap(ds.RejectSpool, "write", "rejects: rows + spool")
wrap(ds, "partition_stats", "accounting: partition stats read back")
wrap(ds, "audit_day", "accounting: audit_day read back")
wrap(ds, "written_row_rejects", "accounting: rejects count read back")
wrap(ds, "day_lock", "other")
store = score_mod.table_store(settings)
RP = store.replace_partition


def rp(*a, **k):
    w, c = time.perf_counter(), time.process_time()
    snap = {n: list(v) for n, v in acc.items()}
    DEPTH[0] += 1
    try:
        r = RP(*a, **k)
    finally:
        DEPTH[0] -= 1
    dw, dc = time.perf_counter() - w, time.process_time() - c
    for n, v in acc.items():
        b = snap.get(n, [0, 0])
        dw -= v[0] - b[0]
        dc -= v[1] - b[1]
    add("delta: partition write (conform + commit)", dw, dc)
    return r


store.replace_partition = rp
RW = store.replace_where
DEPTH = [0]


def rw(*a, **k):
    if DEPTH[0]:
        return RW(*a, **k)
    with phase("rejects: replace_where commit"):
        return RW(*a, **k)


store.replace_where = rw
CI = store.compact_if_fragmented


def ci(*a, **k):
    with phase("compact_if_fragmented"):
        return CI(*a, **k)


store.compact_if_fragmented = ci
ds.INFERENCE_TABLE.ensure  # noqa
with phase("score_day_locally (total)"):
    result = ds.score_day_locally(store, settings, day, champion, model, run_id="prof.1")


class P:
    def report_asset_check(self, *a, **k):
        pass

    def report_asset_materialization(self, *a, **k):
        pass

    class log:
        info = staticmethod(lambda m: None)


class S:
    pipes = P()


from iris_assets.core.schema import TRAIN
from iris_assets.core.serving_log import served_features, served_table

with phase("drift: read training + served + PSI"):
    training = store.read(settings.feature_table, predicate=f"split = '{TRAIN}'")
    served = served_features(store, served_table(settings), day)
    score_mod.report_drift_check(S, training, result.features_sample, served)
total_w, total_c = time.perf_counter() - T0W, time.process_time() - T0C
print(json.dumps({"phases": acc, "total": [total_w, total_c], "rows": result.rows_scored}))
