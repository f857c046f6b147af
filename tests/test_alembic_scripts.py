"""The suite's shared alembic revision maps (tests/alembic_scripts.py) change what is parsed
once, never what a database is checked against or stamped with."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import dagster as dg
import pytest
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionMap
from dagster._core.storage.sql import get_alembic_config

from tests.conftest import ROOT


def dagster_scripts() -> ScriptDirectory:
    from dagster._core.storage.event_log.sqlite import sqlite_event_log

    return ScriptDirectory.from_config(get_alembic_config(sqlite_event_log.__file__))


def mlflow_scripts() -> ScriptDirectory:
    from mlflow.store.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config(db_url=""))


def lineage(revisions: RevisionMap) -> list[str]:
    return [script.revision for script in revisions.iterate_revisions("heads", "base")]


def test_the_suite_runs_with_shared_maps():
    # Without it every asset test pays the parse again: slower, and nothing else says so.
    assert getattr(ScriptDirectory.__init__, "_iris_shared", False)


def test_the_maps_are_shared_from_alembics_import_on_and_it_is_not_imported_for_them():
    """Sharing waits for alembic's import (an inner pytest run that never needs it does not
    pay for it), and takes effect as it is imported, however it is reached."""
    code = (
        "import sys; from tests.alembic_scripts import share_revision_maps; "
        "assert share_revision_maps() and 'alembic' not in sys.modules, sorted(sys.modules); "
        "import mlflow.store.db.utils; from alembic.script import ScriptDirectory; "
        "assert ScriptDirectory.__init__._iris_shared; print('shared')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "shared", out.stderr[-2000:]


@pytest.mark.parametrize("scripts", [dagster_scripts, mlflow_scripts])
def test_a_shared_map_holds_exactly_what_a_fresh_parse_finds(scripts):
    first, second = scripts(), scripts()
    assert first.revision_map is second.revision_map
    fresh = RevisionMap(second._load_revisions)  # the folder read again, now
    assert lineage(fresh) and lineage(second.revision_map) == lineage(fresh)
    assert second.get_heads() == list(fresh.heads)


def test_folders_do_not_share_one_map():
    assert dagster_scripts().revision_map is not mlflow_scripts().revision_map
    assert set(lineage(dagster_scripts().revision_map)).isdisjoint(
        lineage(mlflow_scripts().revision_map)
    )


def test_a_new_run_database_is_still_stamped_with_the_head(tmp_path):
    """Each run's own event database is created and stamped by Dagster itself, with the head
    revision a fresh parse of its scripts finds."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize([dg.asset(name="one")(lambda: 1)], instance=instance)
        assert result.success
    [shard] = (tmp_path / "history" / "runs").glob(f"{result.run_id}.db")
    with sqlite3.connect(shard) as connection:
        [(stamped,)] = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    connection.close()
    assert [stamped] == list(RevisionMap(dagster_scripts()._load_revisions).heads)


def test_one_relative_location_in_two_working_directories_is_two_folders(tmp_path, monkeypatch):
    for name in ("a", "b"):
        versions = tmp_path / name / "migrations" / "versions"
        versions.mkdir(parents=True)
        (versions / f"rev_{name}.py").write_text(
            f"revision = 'rev_{name}'\ndown_revision = None\n"
            "def upgrade():\n    pass\ndef downgrade():\n    pass\n"
        )
    heads = {}
    for name in ("a", "b"):
        monkeypatch.chdir(tmp_path / name)
        heads[name] = ScriptDirectory("migrations").get_heads()
    assert heads == {"a": ["rev_a"], "b": ["rev_b"]}
