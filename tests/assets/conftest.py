"""Fixtures for the asset tests: the real definitions over a test's settings, and a champion.

Training the champion (``iris_features`` and ``challenger_model`` through the real Pipes steps)
costs seconds of CPU, and dozens of tests start from one, so it is trained once per session
(by the first worker that needs it, shared by the others) into a home and a Dagster instance
that each test then gets its own copy of: a test may change its home and instance as it likes.
A test's instance is in memory (``tests.conftest.new_instance``), holding the template's runs
and events, or, for a test marked ``sqlite_instance``, a copy of the template's sqlite files.
Most retraining tests start one or two runs further, from the champion with a day scored
(``scored_day_of_120``) or scored and judged (``judged_day``): those are templates too, made
from the champion's by the real runs.
What the preload does not carry: the run records' ``start_time`` and ``end_time`` (None) and
their create and update times (the load's); the project reads only ``create_timestamp``, of
runs still in flight, which a preloaded run never is.
"""

import json
import shutil
import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from iris_assets.definitions import build_definitions
from tests.assets.helpers import materialize, run_job, step_failure_messages
from tests.conftest import SQLITE_INSTANCE, new_instance, session_folder, sqlite_instance

HOME = "iris-home"  # under a test's tmp_path, as the ``settings`` fixture makes it
INSTANCE = "dagster"
RUNS = "dagster-runs.json"  # the template instance's runs and events, as Dagster serializes them
TRAINER = "tess"  # who trained ``trained_home``'s version 1
# The fixtures of a test that starts from a scored (and judged) day: (its flowers, judged).
DAY_TEMPLATES = {
    "scored_day_of_120": (120, False),
    "scored_day_of_150": (150, False),
    "judged_day": (120, True),
    "judged_day_of_150": (150, True),
}


@pytest.fixture(scope="session")
def champion_template(tmp_path_factory, mlflow_db_template) -> Path:
    """A home and Dagster instance after the real steps trained version 1 and it was aliased
    champion directly, made as the ``settings`` fixture makes a test's home."""
    from iris_assets.core.registry import ModelRegistry
    from iris_assets.settings import CHAMPION_ALIAS
    from tests.databricks.serverless_env import locked

    root = session_folder(tmp_path_factory) / "champion"
    with locked(root.with_suffix(".lock")):
        if (root / ".complete").exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        (root / INSTANCE).mkdir(parents=True)
        with pytest.MonkeyPatch.context() as env:
            settings = template_settings(env, root / HOME)
            settings.env_home.mkdir(parents=True)
            shutil.copy(mlflow_db_template, settings.mlflow_db)
            with dg.instance_for_test(temp_dir=str(root / INSTANCE)) as instance:
                defs = build_definitions(settings)
                result = materialize(defs, instance, "iris_features", "challenger_model")
                assert result.success, step_failure_messages(result)
                (root / RUNS).write_text(export_runs(instance))
            ModelRegistry(settings).set_alias(CHAMPION_ALIAS, "1")
        (root / ".complete").touch()
    return root


@pytest.fixture(scope="session")
def day_templates(tmp_path_factory, champion_template):
    """``template(rows, judged)``: a home and instance (as ``champion_template``'s) after the
    real runs of ``tests.assets.test_monitoring_retraining``: ``score`` scored ``rows`` flowers of
    its ``DAY``, then, if ``judged``, ``label_and_judge`` landed 60 labels as scored and judged
    them (in a copy of the scored template). Made by the first worker that needs it."""
    from tests.assets.test_monitoring_retraining import DAY, label_and_judge, score, scored_rows
    from tests.databricks.serverless_env import locked

    def template(rows: int, judged: bool) -> Path:
        start = template(rows, judged=False) if judged else champion_template
        root = session_folder(tmp_path_factory) / f"{'judged' if judged else 'scored'}-day-{rows}"
        with locked(root.with_suffix(".lock")):
            if (root / ".complete").exists():
                return root
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(start / HOME, root / HOME)
            rehome(root, start, root)
            runs = import_runs(rehomed((start / RUNS).read_text(), start, root))
            with pytest.MonkeyPatch.context() as env:
                env.delenv("IRIS_NOTIFY_URL", raising=False)  # as the tests it stands for do
                settings = template_settings(env, root / HOME)
                with new_instance(root / INSTANCE, preload=runs) as instance:
                    graph = (build_definitions(settings), instance)
                    if judged:
                        label_and_judge(graph, settings, scored_rows(settings), 60, 0.0)
                    else:
                        score(graph, settings, DAY, rows)
                    (root / RUNS).write_text(export_runs(instance))
            (root / ".complete").touch()
        return root

    return template


def template_settings(env: pytest.MonkeyPatch, home: Path):
    """The settings of a template's ``home``, set in ``env`` as the ``settings`` fixture sets a
    test's (its own serving port, the step environment)."""
    from iris_assets.settings import load_settings
    from tests.conftest import SETTINGS_VARS, free_port

    for name in SETTINGS_VARS:
        env.delenv(name, raising=False)
    env.setenv("IRIS_HOME", str(home))
    env.setenv("IRIS_SERVING_PORT", str(free_port()))
    settings = load_settings()
    for key, value in settings.step_env().items():
        env.setenv(key, value)
    return settings


def export_runs(instance: dg.DagsterInstance) -> str:
    """Every run of ``instance`` with its events and snapshots, as ``dagster debug export``
    writes one, oldest first."""
    from dagster._core.debug import DebugRunPayload
    from dagster._serdes import serialize_value

    runs = reversed(instance.get_runs())
    return serialize_value([DebugRunPayload.build(instance, run) for run in runs])


def import_runs(text: str) -> list:
    # Imported for what it registers: Dagster deserializes only classes whose modules are
    # loaded, and a worker that did not make the template may not have loaded these yet.
    from dagster._core.debug import DebugRunPayload  # noqa: F401
    from dagster._serdes import deserialize_value

    return deserialize_value(text)


def path_spellings(path: Path) -> list[str]:
    """How ``path`` is written in stored text, most escaped first: inside a JSON string inside
    a JSON string (Dagster's resource defaults), inside a JSON string, and as it is (MLflow's
    columns). The escaped spellings first, since a raw replace would break them: JSON
    writes a non-ASCII name as ``\\uXXXX`` and a quote or backslash escaped."""
    once = json.dumps(str(path))[1:-1]
    return [json.dumps(once)[1:-1], once, str(path)]


def spelling_pairs(old: Path, new: Path) -> list[tuple[str, str]]:
    """Each spelling of ``old`` with the same spelling of ``new``, each spelling once (a plain
    ASCII path is spelled alike all three ways, and is replaced once)."""
    pairs: dict[str, str] = {}
    for before, after in zip(path_spellings(old), path_spellings(new), strict=True):
        pairs.setdefault(before, after)
    return list(pairs.items())


def rehomed(text: str, old: Path, new: Path) -> str:
    """``text`` with every spelling of ``old`` replaced by the same spelling of ``new``."""
    for before, after in spelling_pairs(old, new):
        text = text.replace(before, after)
    return text


def rehome(folder: Path, old: Path, new: Path) -> None:
    """Point every path under ``old`` that the sqlite databases in ``folder`` hold (MLflow's
    artifact locations and sources, Dagster's event metadata) at the same path under ``new``,
    so that a copy reads and writes only its own files."""
    for db in folder.rglob("*.db"):
        with sqlite3.connect(db) as connection:
            tables = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            for (table,) in tables.fetchall():
                columns = connection.execute(f'PRAGMA table_info("{table}")').fetchall()
                for column in (c[1] for c in columns if textual(c[2])):
                    for before, after in spelling_pairs(old, new):
                        connection.execute(
                            f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                            f'WHERE instr("{column}", ?) > 0',
                            (before, after, before),
                        )
        connection.close()


def textual(declared: str) -> bool:
    kind = declared.upper()
    return not kind or any(word in kind for word in ("CHAR", "TEXT", "CLOB"))


@pytest.fixture
def graph(request, settings, tmp_path):
    """The real definitions for this test's settings, with a throwaway Dagster instance (for a
    test that asks for ``champion``, a copy of the instance the champion was trained in; for one
    that asks for a scored or judged day, a copy of that template's)."""
    on_disk = request.node.get_closest_marker(SQLITE_INSTANCE) is not None
    days = [day for name, day in DAY_TEMPLATES.items() if name in request.fixturenames]
    for name in DAY_TEMPLATES.keys() & set(request.fixturenames):
        # A file's own fixture of the same name would get a template it does not stand for.
        [*_, chosen] = request.node._fixtureinfo.name2fixturedefs[name]
        assert chosen.baseid == "tests/assets", f"{chosen.baseid} overrides the template {name}"
    if "champion" not in request.fixturenames and not days:
        if on_disk:
            template = request.getfixturevalue("dagster_instance_template")
            with sqlite_instance(template, tmp_path / INSTANCE) as instance:
                yield build_definitions(settings), instance
            return
        with new_instance(tmp_path / INSTANCE) as instance:
            yield build_definitions(settings), instance
        return
    if days:
        assert len(days) == 1 and not on_disk, "one day template, on an in-memory instance"
        template = request.getfixturevalue("day_templates")(*days[0])
    else:
        template = request.getfixturevalue("champion_template")
    assert settings.home == tmp_path / HOME, "the template's layout is the settings fixture's"
    shutil.rmtree(settings.home)
    shutil.copytree(template / HOME, settings.home)
    if on_disk:
        shutil.copytree(template / INSTANCE, tmp_path / INSTANCE)
    rehome(tmp_path, template, tmp_path)
    if on_disk:
        with dg.instance_for_test(temp_dir=str(tmp_path / INSTANCE)) as instance:
            yield build_definitions(settings), instance
        return
    runs = import_runs(rehomed((template / RUNS).read_text(), template, tmp_path))
    with new_instance(tmp_path / INSTANCE, preload=runs) as instance:
        yield build_definitions(settings), instance


@pytest.fixture
def champion(settings, graph):
    """Version 1, trained by the real steps on the bundled Iris, aliased champion directly (in
    a copy of the session's trained home and instance, see ``graph``)."""
    from iris_assets.core.registry import ModelRegistry

    champion = ModelRegistry(settings).champion()
    assert champion is not None and champion.version == "1", champion
    return "1"


@pytest.fixture
def scored_day_of_120(champion):
    """The champion, then ``DAY``'s 120 flowers scored: what ``score(graph, settings, DAY)``
    leaves (``tests.assets.test_monitoring_retraining``; its rows are ``scored_rows(settings)``),
    in a copy of a template made by that run (``day_templates``, ``graph``)."""
    return champion


@pytest.fixture
def scored_day_of_150(champion):
    """As ``scored_day_of_120``, with 150 flowers scored (``score(..., rows=150)``)."""
    return champion


@pytest.fixture
def judged_day(champion):
    """The champion, then ``DAY``'s 120 flowers scored and 60 of them labelled as scored and
    judged: what ``label_and_judge(graph, settings, score(graph, settings, DAY), rows=60,
    drop=0.0)`` leaves (``tests.assets.test_monitoring_retraining``), in a copy of a template
    made by those runs (``day_templates``, ``graph``)."""
    return champion


@pytest.fixture
def judged_day_of_150(champion):
    """As ``judged_day``, with 150 flowers scored (``score(..., rows=150)``)."""
    return champion


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory, mlflow_db_template) -> Path:
    """An environment home after one real training_job: v1 trained by TRAINER and evaluated
    (passed). Made once per session by the first worker that needs it; tests only copy it
    (``test_promotion.py``'s ``home``)."""
    from iris_assets.settings import load_settings
    from tests.databricks.serverless_env import locked

    root = session_folder(tmp_path_factory) / "trained-home"
    with locked(root.with_suffix(".lock")):
        if (root / ".complete").exists():
            return root / "home"
        shutil.rmtree(root, ignore_errors=True)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("IRIS_HOME", str(root / "home"))
            env.setenv("IRIS_USER", TRAINER)
            for name in ("IRIS_ENV", "IRIS_TARGET", "IRIS_CATALOG", "IRIS_SCHEMA"):
                env.delenv(name, raising=False)
            settings = load_settings()
            settings.env_home.mkdir(parents=True)
            shutil.copy(mlflow_db_template, settings.mlflow_db)
            with dg.instance_for_test() as instance:
                result = run_job(build_definitions(settings), instance, "training_job")
                assert result.success, step_failure_messages(result)
        (root / ".complete").touch()
    return root / "home"
