"""Shared fixtures and the suite's schedule: a private IRIS_HOME per test with a real sqlite
MLflow registry, and the order and grouping `make test` deals the tests to its workers in.

A fresh sqlite registry spends about a second migrating its schema, so one migrated template is
made per session (shared by the workers) and copied into each test's home.

`make test` runs ``pytest -n TEST_WORKERS --dist loadgroup``: every test is dealt on its own to
the next free worker, except the tests of a file that uses a fixture made once per file (a
module-scoped fixture, or a session fixture defined in that file: `mlflow models serve`, say),
which stay together on one worker so that fixture is still made once, and the Spark files, which
share one JVM on one worker (``tests/local_spark.py``). ``pytest_collection_modifyitems`` marks
them ``xdist_group``; ``GroupedNodeIds`` makes the marks count under pytest 9. Dealing single
tests means no long file runs alone at the end while the other workers idle.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from iris_assets.settings import Settings, load_settings

if TYPE_CHECKING:
    from dagster._core.debug import DebugRunPayload

try:
    from tests.alembic_scripts import share_revision_maps
except ModuleNotFoundError as missing:
    # The env-5 run of the core tests loads this file without ``tests``; nothing else is skipped.
    if missing.name not in ("tests", "tests.alembic_scripts"):
        raise
else:
    share_revision_maps()  # each migration folder parsed once per process, not per database

ROOT = Path(__file__).resolve().parents[1]
# The mark of a test whose Dagster instance (the ``graph`` fixture's) is kept on disk in sqlite,
# as ``dagster dev`` keeps it, instead of in memory (``new_instance``).
SQLITE_INSTANCE = "sqlite_instance"
SETTINGS_VARS = ("IRIS_ENV", "IRIS_TARGET", "IRIS_CATALOG", "IRIS_SCHEMA", "IRIS_SERVING_HOST")

# The files with the longest tests (wall and CPU, bench/results/tests.md), longest first, and the
# files kept whole whose tests add up to minutes: they are dealt first, so the short tests fill
# the workers at the end.
SLOW_FILES_FIRST = (
    "tests/ui/test_browser.py",
    "tests/assets/test_promotion.py",
    "tests/steps/test_spark_scoring.py",
    "tests/assets/test_mlflow_link_targets.py",
    "tests/test_cli.py",
    "tests/ui/test_dev_orphans.py",
    "tests/assets/test_lifecycle.py",
    "tests/test_mlflow_ui.py",
    "tests/assets/test_monitoring_retraining.py",
    "tests/serving/test_serving_request_log.py",
    "tests/assets/test_check_targets.py",
    "tests/test_definitions.py",
    "tests/steps/test_kill_safety.py",
    "tests/steps/test_warm_steps.py",
    "tests/assets/test_inference_served_drift.py",
    "tests/serving/test_serving_http.py",
    "tests/serving/test_serving_parity.py",
    "tests/serving/test_serving_lifecycle.py",
    "tests/assets/test_monitoring.py",
    "tests/assets/test_inference_assets.py",
    "tests/assets/test_training_assets.py",
    "tests/assets/test_faults.py",
    "tests/serving/test_serving_databricks_path.py",
)
# The files whose tests run step code in the cached serverless environment venv go last: on a
# cold cache the venv is built meanwhile, from the session's start (``prebuild``), instead of
# the workers waiting for it; warm, the runner's tests are dealt one by one like the rest, after
# the environment's own file (kept whole), so its short tests fill the end.
ENVIRONMENT_VENV_FILES = (
    "tests/databricks/test_serverless_env.py",
    "tests/databricks/test_databricks_runner.py",
)
PER_FILE_SCOPES = ("package", "module", "class")
# The files that share one local SparkSession, and so one JVM, on one worker (tests/local_spark.py).
SPARK_FILES = (
    "tests/steps/test_spark_scoring.py",
    "tests/steps/test_spark_performance.py",
    "tests/steps/test_spark_label_evidence.py",
    "tests/core/test_spark_whole_source.py",
)


def schedule_rank(path: str) -> tuple[int, int]:
    if path in ENVIRONMENT_VENV_FILES:
        return (2, ENVIRONMENT_VENV_FILES.index(path))
    if path in SLOW_FILES_FIRST:
        return (0, SLOW_FILES_FIRST.index(path))
    return (1, 0)


def made_once_per_file(item: pytest.Item) -> bool:
    """Whether the test uses a fixture made once for its file (see the module docstring)."""
    module = item.nodeid.partition("::")[0]
    for definitions in item._fixtureinfo.name2fixturedefs.values():
        fixture = definitions[-1]
        if fixture.scope in PER_FILE_SCOPES:
            return True
        if fixture.scope == "session" and fixture.baseid == module:
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    # A stable sort: each file keeps its tests in order, the other files keep theirs.
    items.sort(key=lambda item: schedule_rank(item.nodeid.partition("::")[0]))
    for item in items:
        path = item.nodeid.partition("::")[0]
        if path in SPARK_FILES:  # one worker, one JVM (tests/local_spark.py)
            item.add_marker(pytest.mark.xdist_group("local-spark"))
        elif made_once_per_file(item):
            item.add_marker(pytest.mark.xdist_group(path))


class GroupedNodeIds:
    """Makes ``xdist_group`` marks take effect under pytest 9. pytest-xdist 3.8 groups a worker's
    tests by appending ``@<group>`` to ``item._nodeid``, which pytest 9 no longer reads (a node's
    id is ``item._id``): the ids the workers reported had no group, so ``--dist loadgroup`` dealt
    every test on its own and each worker made a file's module fixtures again."""

    @pytest.hookimpl(trylast=True)  # after xdist's worker set ``_nodeid``
    def pytest_collection_modifyitems(self, items):
        from _pytest.nodeid import coerce_node_id

        for item in items:
            grouped = getattr(item, "_nodeid", None)
            if isinstance(grouped, str) and "@" in grouped and grouped != item.nodeid:
                item._id = coerce_node_id(grouped)


@pytest.hookimpl(trylast=True)  # after the test's own fixtures were torn down
def pytest_runtest_teardown(item, nextitem):
    """End the shared JVM after the last Spark test this worker runs, not at the worker's end."""
    if item.nodeid.partition("::")[0] in SPARK_FILES and (
        nextitem is None or nextitem.nodeid.partition("::")[0] not in SPARK_FILES
    ):
        # Imported here: the env-5 run of the core tests loads this file without ``tests``.
        from tests import local_spark

        local_spark.stop()


def session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this pytest session shared by all its workers (xdist puts each worker's
    basetemp inside the session's), for what is made once per session, not once per worker."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    folder.mkdir(exist_ok=True)
    return folder


def runs_environment_venv_tests(config: pytest.Config) -> bool:
    """Whether the paths this session was given hold the tests that need the environment venv."""
    needed = [ROOT / path for path in ENVIRONMENT_VENV_FILES]
    for arg in config.args or [str(ROOT / "tests")]:
        path = Path(config.invocation_params.dir, arg.partition("::")[0]).resolve()
        if any(path == file or path in file.parents for file in needed):
            return True
    return False


# The test processes' cyclic garbage collector runs less often than Python's default (700, 10,
# 10): a worker holds the objects of Dagster, MLflow and scikit-learn, which each full
# collection walks. Measured in tests/assets and tests/core on three workers, the collector took
# 1.9-2.9 CPU s of a worker's 15-28; with these, 1.0-1.4 s (bench/results/tests.md). Garbage
# without cycles is still freed at once; only cycles wait longer. The processes the tests start
# keep Python's default.
TEST_GC_THRESHOLDS = (20_000, 20, 20)


def interrupt_as_in_a_terminal() -> None:
    """SIGINT as an interactive shell gives it, even when the suite was started in the background.

    A shell starts a background job (``make test &``, ``nohup make test &``) with SIGINT ignored,
    and Dagster copies SIGINT's disposition onto SIGTERM when it executes a run in this process
    (``setup_interrupt_handlers``, "for k8s"). From then on every process a test starts (a Pipes
    step, the shared Spark JVM) inherited an ignored SIGTERM across ``exec`` and outlived its
    ``terminate()``: in the background, the suite's terminate tests failed after 30 s.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(trylast=True)  # after pytest's own configure made config._tmp_path_factory
def pytest_configure(config):
    """The controlling process starts ``prebuild`` (the session's wheel and the environment
    venv) in the background when the session runs the tests that need them."""
    interrupt_as_in_a_terminal()
    # Registered here too, so that a run without xdist (``-p no:xdist``) still accepts the
    # marks ``pytest_collection_modifyitems`` sets under ``--strict-markers``.
    config.addinivalue_line("markers", "xdist_group(name): tests xdist runs on one worker")
    gc.set_threshold(*TEST_GC_THRESHOLDS)
    if hasattr(config, "workerinput"):
        config.pluginmanager.register(GroupedNodeIds(), "iris-grouped-node-ids")
    if hasattr(config, "workerinput") or not runs_environment_venv_tests(config):
        return
    if config.option.collectonly:
        return
    from tests.databricks.serverless_env import deployed_sha

    folder = session_folder(config._tmp_path_factory)
    with open(folder / "prebuild.log", "wb") as log:
        config._iris_prebuild = subprocess.Popen(
            [sys.executable, "-m", "tests.databricks.serverless_env", str(folder), deployed_sha()],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its pip too can be stopped as one group
        )


def pytest_unconfigure(config):
    prebuild = getattr(config, "_iris_prebuild", None)
    if prebuild is not None and prebuild.poll() is None:
        # Cut short (an interrupted or -x session): a venv left without .complete is rebuilt.
        with contextlib.suppress(ProcessLookupError):  # it may end in between
            os.killpg(prebuild.pid, signal.SIGTERM)
        prebuild.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The folders whose tests fork local steps or servers from this process's warm worker.
STEP_FOLDERS = ("tests/assets/", "tests/steps/", "tests/serving/")


@pytest.fixture(scope="session", autouse=True)
def warm_worker_with_every_library(request):
    """This process's warm worker, which the steps of its in-process runs fork from
    (``WarmWorker.for_python``), started at its first test with every step's libraries
    (``--preload all``) when the session runs tests that fork steps: over the whole suite it
    loads them all anyway, one step's at a time. The files that need such a worker fork from
    this one instead of starting their own (about 4 CPU s each). So not in the env-5 run of
    the core tests, which has no orchestrator's libraries to import it with."""
    if not any(item.nodeid.startswith(STEP_FOLDERS) for item in request.session.items):
        return
    from iris_assets.resources.warm_steps import WarmWorker, warm_steps_enabled

    if warm_steps_enabled():
        WarmWorker.for_python(sys.executable, preload_all=True)


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory) -> Path:
    """A migrated registry, made by the first worker that needs it; tests only copy it."""
    from tests.databricks.serverless_env import locked

    folder = session_folder(tmp_path_factory) / "mlflow-template"
    db = folder / "mlflow.db"
    with locked(folder.with_suffix(".lock")):
        if not (folder / ".complete").exists():
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            SqlAlchemyStore(f"sqlite:///{db}", str(folder / "artifacts")).engine.dispose()
            (folder / ".complete").touch()
    return db


@pytest.fixture(scope="session")
def dagster_instance_template(tmp_path_factory) -> Path:
    """An empty on-disk Dagster instance's folder (its sqlite run, event index and schedule
    databases, created and stamped by Dagster itself), made by the first worker that needs it;
    ``sqlite_instance`` copies it rather than create and migrate each database again."""
    import dagster as dg

    from tests.databricks.serverless_env import locked

    folder = session_folder(tmp_path_factory) / "dagster-template"
    with locked(folder.with_suffix(".lock")):
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "instance").mkdir(parents=True)
            with dg.instance_for_test(temp_dir=str(folder / "instance")):
                pass
            (folder / ".complete").touch()
    return folder / "instance"


@contextlib.contextmanager
def sqlite_instance(template: Path, folder: Path):
    """A new, empty on-disk Dagster instance in ``folder`` (which must not exist), as
    ``dg.instance_for_test()`` and ``dagster dev`` keep one (a sqlite database per run, an index
    database, compute logs), from a copy of ``template``. For the tests that check the project
    against the storage users run (``SQLITE_INSTANCE``) or that need one on disk."""
    import dagster as dg

    shutil.copytree(template, folder)
    with dg.instance_for_test(temp_dir=str(folder)) as instance:
        yield instance


@contextlib.contextmanager
def new_instance(folder: Path, preload: Sequence[DebugRunPayload] = ()):
    """A new Dagster instance for a test's in-process runs, holding only ``preload``'s runs.

    It is Dagster's ephemeral instance: its runs and events are kept by Dagster's in-memory
    storages, which are the same SQL storage code on an in-memory sqlite database, without the
    on-disk storage's split into one database per run (and without compute logs). A run
    recorded there costs about a fifth of the CPU of one in sqlite files (0.07 against 0.33 CPU s
    for a three-asset run here, bench/results/tests.md); the project's own queries of the
    instance are checked on the on-disk storage by the tests marked ``SQLITE_INSTANCE``. Its local
    artifact storage (what an IO manager writes) is ``folder``, created here."""
    import dagster as dg

    folder.mkdir(parents=True)
    with dg.DagsterInstance.ephemeral(tempdir=str(folder), preload=list(preload)) as instance:
        yield instance


@pytest.fixture
def settings(tmp_path, monkeypatch, mlflow_db_template) -> Settings:
    """This test's environment: IRIS_HOME in tmp, a free serving port, a migrated registry."""
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IRIS_HOME", str(tmp_path / "iris-home"))
    monkeypatch.setenv("IRIS_SERVING_PORT", str(free_port()))
    current = load_settings()
    current.env_home.mkdir(parents=True)
    shutil.copy(mlflow_db_template, current.mlflow_db)
    for key, value in current.step_env().items():
        monkeypatch.setenv(key, value)
    yield current
    from iris_assets.serving.process import ServingProcess

    ServingProcess(current.serving_dir, current.serving_host, current.serving_port).stop()
