"""The suite's copied templates (tests/conftest.py) give each test a store of its own: what one
test's Dagster instance records is not seen by the next one, nor left in the template."""

from __future__ import annotations

import sqlite3

import dagster as dg

from tests.conftest import new_instance


def test_a_copied_instance_is_empty_and_its_runs_stay_its_own(tmp_path, dagster_instance_template):
    one = dg.asset(name="one")(lambda: 1)
    with new_instance(dagster_instance_template, tmp_path / "first") as first:
        assert first.get_runs() == []
        assert dg.materialize([one], instance=first).success
        assert len(first.get_runs()) == 1
        assert first.get_latest_materialization_event(dg.AssetKey("one")) is not None
    with new_instance(dagster_instance_template, tmp_path / "second") as second:
        assert second.get_runs() == []
        assert second.get_latest_materialization_event(dg.AssetKey("one")) is None
    runs = dagster_instance_template / "history" / "runs.db"
    # immutable: read without locks or a -shm file, as other workers may be copying it now
    with sqlite3.connect(f"file:{runs}?immutable=1", uri=True) as template:
        assert template.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    template.close()
